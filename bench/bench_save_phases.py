# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a save from Docker spends its time, beside ``docker save -o`` of the same images, by the core alone.

Builds base, lib and two apps in a private dockerd (as bench/bench_separate.py does, ``--size`` MB of layers), then
runs, ``--rounds`` times and alternating, each in a process of its own after ``sync``: ``docker save -o`` of the two
apps, and a Python process that saves them with the core (``operations.run_save`` into an uncompressed
docker-archive) and prints how long each phase took: the export into the temp file beside the destination
(``DockerStore.export``), our archive written from it (``save_archive``, fsync included) and the fsync alone.
With ``--task``, each round also runs the same save as an ``ansible-playbook`` of one image_save task (in Ansible's
worker, as bench_modules.py runs it) and prints the task's own ``duration_s``.

    make bench-save-phases    # or: python bench/bench_save_phases.py --size 800 --rounds 3 [--task]
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

# bench_separate.py sits beside this script; importing it also puts the collection on sys.path
import bench_separate as BENCH_SEPARATE  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.airgap.images.tests.system.engines import DOCKER_CLI, Engines  # noqa: E402  pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The saving process: the phases are timed by wrapping the functions that do them.
CORE = r'''
import os, sys, time
spent = {}

def timed(owner, name, label):
    function = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0) + time.time() - started
    setattr(owner, name, wrapper)

from ansible_collections.airgap.images.plugins.module_utils import operations
from ansible_collections.airgap.images.plugins.module_utils.stores import docker, store
timed(docker.DockerStore, "export", "export")
timed(operations, "save_archive", "archive written")
timed(os, "fsync", "of which fsync")
engine = store.open_store("docker", sys.argv[1])
started = time.time()
operations.run_save(engine, operations.find_wanted(engine, sys.argv[3:]), sys.argv[2], "docker-archive", "none", None)
print("save %.2f s: " % (time.time() - started) + ", ".join("%s %.2f s" % item for item in spent.items()))
'''


def task_command(work, host, dest):
    """ansible-playbook of one image_save task, then a debug task printing its ``duration_s``."""
    play = os.path.join(work, "save.yml")
    with open(play, "w", encoding="utf-8") as out:
        json.dump([{"hosts": "localhost", "gather_facts": False, "vars": {"ansible_python_interpreter": sys.executable},
                    "tasks": [{"airgap.images.image_save": {"images": list(BENCH_SEPARATE.APPS), "dest": dest,
                                                            "engine": "docker", "engine_host": host}, "register": "saved"},
                              {"ansible.builtin.debug": {"msg": "task duration_s {{ saved.duration_s }}"}}]}], out)
    return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local", play]


def collection_path(tree, work):
    """A directory whose ansible_collections/airgap/images is ``tree``, for PYTHONPATH."""
    top = os.path.join(work, "collections-%s" % abs(hash(tree)))
    link = os.path.join(top, "ansible_collections", "airgap", "images")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link))
        os.symlink(tree, link)
    return top


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=800, help="the images' layers in MB (default 800)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each (default 3)")
    parser.add_argument("--task", action="store_true", help="also run the save as an image_save task of ansible-playbook")
    parser.add_argument("--tree", action="append", default=[],
                        help="a checkout of the collection to time (repeatable; default this one): every round runs "
                             "each, to compare two versions in one run")
    args = parser.parse_args()
    trees = [os.path.abspath(tree) for tree in args.tree] or [ROOT]
    work = tempfile.mkdtemp(prefix="airgap-bench-save-phases-", dir="/var/tmp")
    engines = Engines()
    try:
        dockerd = engines.dockerd()
        BENCH_SEPARATE.build_images(dockerd, work, args.size)
        dest = os.path.join(work, "out.tar")
        runs = [("docker save -o", [DOCKER_CLI, "-H", dockerd.host, "save", "-o", dest] + list(BENCH_SEPARATE.APPS), None)]
        for tree in trees:
            runs.append(("core of " + os.path.basename(tree), [sys.executable, "-c", CORE, dockerd.host, dest] + list(BENCH_SEPARATE.APPS),
                         dict(os.environ, PYTHONPATH=collection_path(tree, work))))
            if args.task:
                runs.append(("task of " + os.path.basename(tree), task_command(work, dockerd.host, dest),
                             dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collection_path(tree, work))))
        for round_number in range(1, args.rounds + 1):
            for label, command, env in runs:
                if os.path.exists(dest):
                    os.unlink(dest)
                row = BENCH_SEPARATE.measure(label, label, command, 0, None, env)  # after sync, as bench_modules
                printed = row["stdout_tail"].strip()
                if label.startswith("task of "):
                    printed = " ".join(re.findall(r"task duration_s [0-9.]+", printed))
                print("round %d  %-20s %6.2f s  %s" % (round_number, label, row["seconds"], printed), flush=True)
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
