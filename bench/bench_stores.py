# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Peak memory and throughput of one large image streamed through every store: docker, registry, containerd, OCI, podman.

Starts private engines (tests/system/engines.py), builds one image of
``--size`` MB (four layers of incompressible seeded random data) in a
dockerd, saves it to an archive with the docker store, then loads that
archive into a registry, a containerd, an OCI layout, a podman and a second
dockerd, and saves it back out of each store that can be read.  Every
operation runs in its own process under GNU time; the table gives seconds,
MB/s of the uncompressed image and that process's peak RSS (with the ``ctr``
children it waits for; not the engines' daemons).  The last line checks the
requirement "a 1 GB image streams through each store with peak RSS under
100 MB" and the exit status is non-zero when it fails.

    python bench/bench_stores.py               # --size 1024
    python bench/bench_stores.py --size 200 --json bench/results/stores.json
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


# bench_archive.py sits beside this script (sys.path[0]); importing it also puts the collection on sys.path
import bench_archive as BENCH_ARCHIVE  # noqa: E402  pylint: disable=wrong-import-position
collection_path = BENCH_ARCHIVE.collection_path
measure = BENCH_ARCHIVE.measure
print_table = BENCH_ARCHIVE.print_table

# pylint: disable=wrong-import-position
from ansible_collections.airgap.images.tests.system.engines import Engines  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store  # noqa: E402
# pylint: enable=wrong-import-position

IMAGE = "bench/big:1"
LIMIT_MB = 100

SAVE_FROM_STORE = """
import sys
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import save_archive
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
engine, host, selector, workdir, dest = sys.argv[1:6]
store = open_store(engine, host, insecure_http=True)
with store.open_images([selector], workdir) as images:
    result = save_archive(images, dest)
print(result.size)
"""

LOAD_INTO_STORE = """
import sys
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
engine, host, path = sys.argv[1:4]
print(open_store(engine, host, insecure_http=True).load(path))
"""


class Bench:
    """Runs the measured operations, keeps their rows and the failures (with the store's own message)."""

    def __init__(self, work, image_bytes, diff_ids):
        self.work = work
        self.image_bytes = image_bytes
        self.diff_ids = diff_ids
        self.env = dict(os.environ, PYTHONPATH=collection_path())
        self.rows = []
        self.failures = []

    def _run(self, label, tool, command, output=None):
        try:
            row = measure(label, tool, command, self.image_bytes, output, self.env)
        except SystemExit as exc:  # measure() exits with the command's stderr tail when it fails
            self.failures.append({"operation": label, "tool": tool, "error": str(exc)})
            return None
        self.rows.append(row)
        return row

    def save(self, name, engine, host, dest):
        """``name`` store → archive at ``dest``; the archive is checked to hold the image's layers."""
        row = self._run("%s → archive" % name, "open_images + save_archive", [
            sys.executable, "-c", SAVE_FROM_STORE, engine, host, IMAGE, self.work, dest], dest)
        if row is not None:
            with open_archive(dest) as archive:
                found = [image.diff_ids for image in archive.images]
            if found != [self.diff_ids]:
                self.failures.append({"operation": row["operation"], "tool": row["tool"],
                                      "error": "the archive holds layers %s, not %s" % (found, [self.diff_ids])})
        return row is not None

    def load(self, name, engine, host, archive):
        """archive → ``name`` store; the store is then asked for the image and its DiffIDs compared."""
        row = self._run("archive → %s" % name, "load", [sys.executable, "-c", LOAD_INTO_STORE, engine, host, archive])
        if row is None:
            return False
        found = open_store(engine, host, insecure_http=True).find(IMAGE)
        if found is None or found.diff_ids != self.diff_ids:
            self.failures.append({"operation": row["operation"], "tool": row["tool"],
                                  "error": "after the load the store has %s" % (found.diff_ids if found else "no image %s" % IMAGE)})
            return False
        return True

    def round_trip(self, name, engine, host, archive):
        """Load ``archive`` into a store, then save the image back out of it (and drop that copy)."""
        if self.load(name, engine, host, archive):
            dest = os.path.join(self.work, "from-%s.tar" % engine)
            self.save(name, engine, host, dest)
            if os.path.exists(dest):
                os.remove(dest)


def report(rows, failures, image_bytes, limit_mb):
    """Print the table, the failures and the verdict; return (max peak RSS in MB, passed)."""
    print_table(rows, image_bytes)
    for failure in failures:
        print("\nFAILED %s (%s):\n%s" % (failure["operation"], failure["tool"], failure["error"]))
    peak = max([row["peak_rss_mb"] for row in rows] or [0.0])
    passed = not failures and peak < limit_mb
    print("\nmax peak RSS: %.0f MB (limit %d MB): %s" % (peak, limit_mb, "PASS" if passed else "FAIL"))
    return peak, passed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=1024, help="image size in MB (default 1024)")
    parser.add_argument("--limit", type=int, default=LIMIT_MB, help="peak RSS limit in MB (default %d)" % LIMIT_MB)
    parser.add_argument("--json", help="also write the rows and the verdict as JSON to this file")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="airgap-bench-")
    engines = Engines()
    try:
        dockerd = engines.dockerd()
        image_bytes = BENCH_ARCHIVE.build_image(dockerd, work, args.size, IMAGE, text_like=False)
        diff_ids = dockerd.inspect(IMAGE)[0]["RootFS"]["Layers"]
        bench = Bench(work, image_bytes, diff_ids)
        archive = os.path.join(work, "docker.tar")
        if bench.save("docker", "docker", dockerd.host, archive):
            registry = engines.registry()
            bench.round_trip("registry", "registry", registry.host, archive)
            bench.round_trip("containerd", "containerd", engines.containerd().address, archive)
            bench.round_trip("OCI layout", "oci", os.path.join(work, "layout"), archive)
            bench.round_trip("podman", "podman", "unix://" + engines.podman().service(), archive)
            bench.load("fresh dockerd", "docker", engines.dockerd().host, archive)
        peak, passed = report(bench.rows, bench.failures, image_bytes, args.limit)
        if args.json:
            with open(args.json, "w") as out:
                json.dump({"image_bytes": image_bytes, "rows": bench.rows, "failures": bench.failures,
                           "max_peak_rss_mb": peak, "limit_mb": args.limit, "passed": passed}, out, indent=1)
        if not passed:
            sys.exit(1)
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
