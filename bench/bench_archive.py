# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throughput and peak memory of the archive core beside docker save/load, skopeo and a shell pipeline.

Starts a private dockerd (tests/system/engines.py), builds one image of
``--size`` MB (half incompressible, half text-like, in four layers), then
times each operation in its own process and prints a table: seconds, MB/s
of the uncompressed image, output bytes and the process's peak RSS (for the
docker CLI that is the client only; the daemon does the work).

    make bench            # or: python bench/bench_archive.py --size 400
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

GNU_TIME = "/usr/bin/time"  # Debian package "time": the peak RSS of the command, not of this process
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def collection_path():
    """The directory that holds ``ansible_collections/`` for this checkout."""
    parts = ROOT.split(os.sep)
    if len(parts) > 3 and parts[-3] == "ansible_collections":
        return os.sep.join(parts[:-3])
    return os.path.join(ROOT, ".build")


sys.path.insert(0, collection_path())
from ansible_collections.airgap.images.tests.system.engines import DOCKER_CLI, Engines  # noqa: E402  pylint: disable=wrong-import-position

OUR_READ = """
import sys
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.digest import drain
total = 0
with open_archive(sys.argv[1]) as archive:
    for image in archive.images:
        for layer in image.layers:
            with layer.open() as stream:
                total += drain(stream)
print(total)
"""

OUR_WRITE = """
import sys
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
with open_archive(sys.argv[1]) as archive:
    result = save_archive(archive.images, sys.argv[2], compression=sys.argv[3])
print(result.compressor)
"""


def make_layers(context, size_mb, text_like=True):
    """Four files, ``size_mb`` in all, written 1 MB at a time, and a Dockerfile copying each into its own layer.

    Seeded, so every run writes the same bytes; the second and fourth file are text-like unless ``text_like`` is false.
    """
    rng = random.Random(42)
    quarter = size_mb * 1024 * 1024 // 4
    words = [("%x" % rng.getrandbits(24)).encode() for _word in range(4096)]
    for index in range(4):
        with open(os.path.join(context, "part%d" % index), "wb") as out:
            left = quarter
            while left > 0:
                if text_like and index % 2:
                    block = b" ".join(rng.choice(words) for _word in range(180000))[:1 << 20]
                else:
                    block = rng.randbytes(1 << 20)
                out.write(block[:left])
                left -= len(block[:left])
    with open(os.path.join(context, "Dockerfile"), "w") as out:
        out.write("FROM scratch\n" + "".join("COPY part%d /part%d\n" % (i, i) for i in range(4)))


def build_image(dockerd, work, size_mb, name, text_like=True):
    """Build ``name`` of ``size_mb`` MB in four layers in ``dockerd``; returns the bytes of its files."""
    context = os.path.join(work, "context")
    os.makedirs(context)
    make_layers(context, size_mb, text_like)
    dockerd.cli("build", "-q", "-t", name, context, timeout=1800)
    image_bytes = sum(os.path.getsize(os.path.join(context, "part%d" % i)) for i in range(4))
    shutil.rmtree(context)
    return image_bytes


def measure(label, tool, command, image_bytes, output=None, env=None):
    """Run ``command`` under GNU time; a result row with wall time and the peak RSS of it and its children. The page
    cache is written back first (``sync``), so that no command pays for the dirty pages the one before it left (a tool
    that does not fsync, such as ``docker save -o``, would otherwise hand its write-back to whatever runs next)."""
    os.sync()
    started = time.time()
    done = subprocess.run([GNU_TIME, "-f", "%M"] + command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    elapsed = time.time() - started
    if done.returncode != 0:
        raise SystemExit("%s (%s) failed: %s" % (label, tool, (done.stdout + done.stderr).decode()[-3000:]))
    peak_kb = int(done.stderr.decode().strip().splitlines()[-1])
    size = os.path.getsize(output) if output and os.path.exists(output) else None
    return {"operation": label, "tool": tool, "seconds": elapsed, "mb_s": image_bytes / elapsed / 1e6,
            "output_bytes": size, "peak_rss_mb": peak_kb / 1024.0, "note": done.stdout.decode().strip()[-40:],
            "stdout_tail": done.stdout.decode()[-2000:]}


def print_table(rows, image_bytes):
    print("\nimage: %.0f MB uncompressed, 4 layers; MB/s are of the uncompressed image" % (image_bytes / 1e6))
    header = "%-30s %-34s %8s %8s %14s %9s" % ("operation", "tool", "seconds", "MB/s", "output bytes", "RSS MB")
    print(header)
    print("-" * len(header))
    for row in rows:
        output = row["output_bytes"] if row["output_bytes"] is not None else "-"
        print("%-30s %-34s %8.2f %8.1f %14s %9.1f" % (row["operation"], row["tool"], row["seconds"], row["mb_s"], output, row["peak_rss_mb"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=400, help="image size in MB (default 400)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="airgap-bench-")
    engines = Engines()
    try:
        dockerd = engines.dockerd()
        image_bytes = build_image(dockerd, work, args.size, "bench/big:1")
        env = dict(os.environ, PYTHONPATH=collection_path())
        docker = [DOCKER_CLI, "-H", dockerd.host]
        saved, ours = os.path.join(work, "docker.tar"), os.path.join(work, "ours.tar")
        rows = [measure("save (engine → file)", "docker save", docker + ["save", "-o", saved, "bench/big:1"], image_bytes, saved)]
        rows.append(measure("read + verify every layer", "airgap.images", [sys.executable, "-c", OUR_READ, saved], image_bytes, None, env))
        for compression, suffix in (("none", ""), ("gzip", ".gz"), ("zstd", ".zst")):
            dest = ours + suffix
            rows.append(measure("convert to archive (%s)" % compression, "airgap.images",
                                [sys.executable, "-c", OUR_WRITE, saved, dest, compression], image_bytes, dest, env))
            rows[-1]["tool"] += " (%s)" % rows[-1]["note"]
        skopeo_out = os.path.join(work, "skopeo.tar")
        rows.append(measure("convert to archive (none)", "skopeo copy", [
            "skopeo", "--insecure-policy", "copy", "docker-archive:%s:bench/big:1" % saved,
            "docker-archive:%s:bench/big:1" % skopeo_out], image_bytes, skopeo_out))
        pipeline_out = os.path.join(work, "pipeline.tar.gz")
        rows.append(measure("save (engine → file, gzip -1)", "docker save | gzip -1", [
            "bash", "-c", "set -o pipefail; %s save bench/big:1 | gzip -1 > %s" % (" ".join(docker), pipeline_out)],
            image_bytes, pipeline_out))
        for label, archive in (("docker save's archive", saved), ("our archive", ours), ("our archive, gzip", ours + ".gz")):
            dockerd.cli("rmi", "bench/big:1")
            rows.append(measure("load (file → engine)", "docker load < %s" % label, docker + ["load", "-i", archive], image_bytes))
        print_table(rows, image_bytes)
        if args.json:
            with open(args.json, "w") as out:
                json.dump(rows, out, indent=1)
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
