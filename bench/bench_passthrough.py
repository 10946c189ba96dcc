# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archives from sources that have manifests: the core copies their blobs as they are, beside skopeo.

Builds one image of ``--size`` MB (four layers, half incompressible, half text-like) with the core, as two sources:
``classic.tar`` (no compression: what Docker's classic store gives) and an OCI layout with gzip layers (what a
registry or containerd gives). Each is converted to a docker-archive and an oci-archive by the core, in its own
process under GNU time, ``--repeat`` times (the median is printed), beside ``skopeo copy`` of the gzip layout to an
oci-archive. ``--baseline DIR`` also runs the core of another checkout (e.g. a worktree of the previous commit) on
the same inputs, for a before/after table.

    make bench-passthrough      # or: python bench/bench_passthrough.py --size 200 --baseline /tmp/previous
"""

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GNU_TIME = "/usr/bin/time"

CONVERT = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
try:
    from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
except ImportError:  # before module_utils had folders
    from ansible_collections.airgap.images.plugins.module_utils.archive import open_archive, save_archive
start = time.time()
with open_archive(sys.argv[2]) as archive:
    result = save_archive(archive.images, sys.argv[3], sys.argv[4])
print("%.3f %d" % (time.time() - start, result.size))
'''


def collection_path(checkout):
    parts = checkout.rstrip(os.sep).split(os.sep)
    if len(parts) > 3 and parts[-3] == "ansible_collections":
        return os.sep.join(parts[:-3])
    return os.path.join(checkout, ".build")


def make_inputs(work, size_mb):
    sys.path.insert(0, collection_path(ROOT))
    from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_file  # noqa: E402  pylint: disable=import-outside-toplevel
    from ansible_collections.airgap.images.plugins.module_utils.formats.archive import save_archive  # noqa: E402  pylint: disable=import-outside-toplevel
    from ansible_collections.airgap.images.plugins.module_utils.formats.tarwriter import TarWriter  # noqa: E402  pylint: disable=import-outside-toplevel
    from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference  # noqa: E402  pylint: disable=import-outside-toplevel
    from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore  # noqa: E402  pylint: disable=import-outside-toplevel
    layers = []
    each = size_mb * 1024 * 1024 // 4
    for index in range(4):
        path = os.path.join(work, "layer%d.tar" % index)
        data = os.urandom(each) if index % 2 == 0 else (b"line %d of text-like data\n" % index) * (each // 26)
        with open(path, "wb") as out:
            tar = TarWriter(out)
            tar.add_stream("file%d" % index, len(data), io.BytesIO(data), "file")
            tar.close()
        layers.append(layer_from_file(path))
    image = build_image(layers, [parse_reference("bench/passthrough:1")])
    save_archive([image], os.path.join(work, "classic.tar"))
    LayoutStore(os.path.join(work, "gzip-layout")).import_images([image], "gzip")


def timed(command):
    """(seconds the command reports or its wall time, output size, peak RSS MB)."""
    done = subprocess.run([GNU_TIME, "-f", "%e %M"] + command, capture_output=True, text=True, check=True)
    wall, rss = done.stderr.strip().splitlines()[-1].split()
    return float(done.stdout.split()[0]) if done.stdout.strip() else float(wall), int(rss) / 1024.0


def run(work, label, command, dest, repeat):
    runs = []
    for _run in range(repeat):
        if os.path.exists(dest):
            os.unlink(dest)
        seconds, rss = timed(command)
        runs.append((seconds, os.path.getsize(dest), rss))
    seconds = statistics.median(r[0] for r in runs)
    os.unlink(dest)
    return label, seconds, runs[0][1], max(r[2] for r in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=200, help="image size in MB (default 200)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="another checkout whose core runs on the same inputs")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="airgap-bench-passthrough-")
    try:
        make_inputs(work, args.size)
        cores = [("airgap.images", collection_path(ROOT))]
        if args.baseline:
            cores.append(("airgap.images at %s" % os.path.basename(args.baseline.rstrip("/")), collection_path(args.baseline)))
        rows = []
        for source in ("classic.tar", "gzip-layout"):
            for archive_format in ("docker-archive", "oci-archive"):
                for name, path in cores:
                    dest = os.path.join(work, "out.tar")
                    command = [sys.executable, "-c", CONVERT, path, os.path.join(work, source), dest, archive_format]
                    rows.append((source, archive_format) + run(work, name, command, dest, args.repeat))
        skopeo = shutil.which("skopeo")
        if skopeo:
            dest = os.path.join(work, "out.tar")
            command = [skopeo, "--insecure-policy", "copy", "-q", "oci:%s/gzip-layout:docker.io/bench/passthrough:1" % work,
                       "oci-archive:%s" % dest]
            rows.append(("gzip-layout", "oci-archive") + run(work, "skopeo copy", command, dest, args.repeat))
        print("image: %d MB uncompressed, 4 layers; median of %d runs" % (args.size, args.repeat))
        print("| source | to | tool | seconds | MB/s | output bytes | RSS MB |")
        print("|---|---|---|---:|---:|---:|---:|")
        for source, archive_format, tool, seconds, size, rss in rows:
            rate = args.size / seconds if seconds else 0
            print("| %s | %s | %s | %.2f | %.0f | %d | %.1f |" % (source, archive_format, tool, seconds, rate, size, rss))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
