# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An image_load re-run with nothing to do against Podman's API service, for one or more checkouts, alternating.

Starts a private Podman of ``--generation`` (podman43, the default, or podman58: tests/system/matrix.py), loads a
100 KB image into it with the core, then runs ``--rounds`` times, for each ``--tree`` in turn, one
``ansible-playbook -i localhost, -c local`` of an image_load task of that image (in Ansible's worker, after ``sync``,
under GNU time), and prints the whole run's wall seconds and the task's own ``duration_s``. Every run must report ``changed=False``.

    python bench/bench_podman_rerun.py --generation podman43 --tree /tmp/base --tree .
"""

import argparse
import os
import re
import shutil
import tempfile

# bench_save_phases.py and bench_separate.py sit beside this script; importing them also puts the collection on sys.path
import bench_save_phases as BENCH_SAVE_PHASES  # noqa: E402  pylint: disable=wrong-import-position
import bench_separate as BENCH_SEPARATE  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import save_archive  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.airgap.images.tests.system.engines import Engines  # noqa: E402  pylint: disable=wrong-import-position


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--generation", default="podman43", help="podman43 (default) or podman58")
    parser.add_argument("--rounds", type=int, default=4, help="alternating runs of each tree (default 4)")
    parser.add_argument("--tree", action="append", default=[], help="a checkout of the collection (repeatable; default this one)")
    args = parser.parse_args()
    trees = [os.path.abspath(tree) for tree in args.tree] or [BENCH_SAVE_PHASES.ROOT]
    work = tempfile.mkdtemp(prefix="airgap-bench-podman-rerun-", dir="/var/tmp")
    engines = Engines()
    try:
        podman = engines.podman(generation=args.generation)
        host = "unix://" + podman.service()
        image = build_image([layer_from_bytes(layer_tar({"app/data": b"x" * 100000}), "app")], [parse_reference("site/app:1")])
        src = os.path.join(work, "app.tar")
        save_archive([image], src)
        store = open_store("podman", host)
        store.load(src)
        store.close()
        command = BENCH_SAVE_PHASES.task_command(work, "image_load", {"src": src, "engine": "podman", "engine_host": host})
        for round_number in range(1, args.rounds + 1):
            for tree in trees:
                env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=BENCH_SAVE_PHASES.collection_path(tree, work))
                row = BENCH_SEPARATE.measure("re-run of " + tree, "image_load", command, 0, None, env)  # after sync, as every bench
                printed = re.findall(r"task duration_s [0-9.]+ changed \w+", row["stdout_tail"])
                if not printed or not printed[0].endswith("changed False"):
                    raise SystemExit("%s: the re-run changed something:\n%s" % (tree, row["stdout_tail"]))
                print("round %d  %-30s %5.2f s  %s" % (round_number, tree, row["seconds"], printed[0]), flush=True)
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
