# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Separated images (base, lib and app tarballs): our one-pass writer beside isula-build's untar-and-repack pipeline.

Starts a private dockerd (tests/system/engines.py) and builds, with the legacy
builder, a base image of one layer (40% of ``--size`` MB), a lib image = base +
one layer (30%) and two apps = lib + one layer each (15% each); every layer is
half seeded random bytes, half text-like, written 1 MB at a time.  Then, each
operation in its own process under GNU time (wall seconds, MB/s of the
uncompressed image bytes, output bytes = the sum of the tarballs, peak RSS):

1. ``docker save`` of the two apps to one plain archive: the floor; and of the
   apps with base and lib (the same layers), which is what our module exports
   and what it needs as ``src`` (base and lib are picked from the archive);
2. the isula-build pipeline on the apps' archive, stage by stage: ``tar xf`` of
   the whole archive, moving the layer dirs into base/lib/app dirs (by
   ``manifest.json`` and the DiffIDs ``docker inspect`` gives, as isula-build
   does), ``tar | gzip -6`` of each part, sha256 of each tarball and the
   ``manifest``;
3. ours from an existing archive: ``open_archive``, ``separated.plan`` and
   ``separated.write`` with gzip (isal), then zstd;
4. ours from docker: what ``image_separate`` does without ``src``
   (``open_store("docker").open_images(...)``, then plan and write), gzip, then zstd.

The targets checked at the end (PASS/FAIL; exit status 1 when one fails):
(a) ours from an archive at least 8x faster than the pipeline's untar+repack
stages, (b) with at most 1.15x their output bytes, (c) ours from docker at
most 1.3x the wall time of ``docker save`` of the same images, (d) peak RSS
under 100 MB for each of our runs.

    python bench/bench_separate.py                 # --size 1024
    python bench/bench_separate.py --size 200 --repeat 3 --json bench/results/separate.json
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MB = 1024 * 1024


# bench_archive.py sits beside this script (sys.path[0]); importing it also puts the collection on sys.path
import bench_archive as BENCH_ARCHIVE  # noqa: E402  pylint: disable=wrong-import-position
collection_path = BENCH_ARCHIVE.collection_path
measure = BENCH_ARCHIVE.measure
print_table = BENCH_ARCHIVE.print_table

# pylint: disable=wrong-import-position
from ansible_collections.airgap.images.tests.system.engines import DOCKER_CLI, Engines  # noqa: E402
# pylint: enable=wrong-import-position

BASE, LIB = "bench/base:1", "bench/lib:1"
APPS = ("bench/app-a:1", "bench/app-b:1")
# name -> (parent, share of --size in percent, folder in the image)
IMAGES = (
    (BASE, None, 40, "base"),
    (LIB, BASE, 30, "lib"),
    (APPS[0], LIB, 15, "app-a"),
    (APPS[1], LIB, 15, "app-b"),
)
SPEEDUP = 8.0
SIZE_RATIO = 1.15
DOCKER_RATIO = 1.3
LIMIT_MB = 100

# Pipeline stage 2: isula-build's daemon/save.go moves each app's layer dirs into base, lib and app dirs
# (resolving layer.tar symlinks so the physical file moves) and writes the app dir's manifest.json,
# repositories and config.  The lib's layers are the lib chain beyond the base, as upstream slices them.
PIPELINE_MOVE = """
import json, os, sys
untar, stage, plan_file = sys.argv[1:4]
with open(plan_file) as handle:
    plan = json.load(handle)
with open(os.path.join(untar, "manifest.json")) as handle:
    items = {item["RepoTags"][0]: item for item in json.load(handle) if item.get("RepoTags")}
folders = {}
for tag, diff_ids in plan["apps"].items():
    for path, diff_id in zip(items[tag]["Layers"], diff_ids):
        full = os.path.join(untar, path)
        if diff_id not in folders and os.path.islink(full):
            target = os.path.realpath(full)
            os.unlink(full)
            os.rename(target, full)
        folders.setdefault(diff_id, os.path.dirname(path))
done = {}
for tag in sorted(plan["apps"]):
    diff_ids = plan["apps"][tag]
    if any(d not in diff_ids for d in plan["base"] + plan["lib"]) or len(plan["lib"]) >= len(diff_ids):
        raise SystemExit("dismatch checksum for base or lib image of %s" % tag)
    stem = tag.split("/")[-1].replace(":", "_")
    cut_base, cut_lib = len(plan["base"]), len(plan["lib"])
    for kind, ids in (("base", diff_ids[:cut_base]), ("lib", diff_ids[cut_base:cut_lib]), ("app", diff_ids[cut_lib:])):
        if kind in done and kind != "app":
            continue
        part = os.path.join(stage, "%s_%s_image" % (stem, kind))
        os.makedirs(part)
        for diff_id in ids:
            os.rename(os.path.join(untar, folders[diff_id]), os.path.join(part, folders[diff_id]))
        done[kind] = part
    item = items[tag]
    os.rename(os.path.join(untar, item["Config"]), os.path.join(done["app"], item["Config"]))
    layers = [folders[d] + "/layer.tar" for d in diff_ids]
    with open(os.path.join(done["app"], "manifest.json"), "w") as out:
        json.dump([{"Config": item["Config"], "RepoTags": [tag], "Layers": layers}], out)
    name, version = tag.rsplit(":", 1)
    with open(os.path.join(done["app"], "repositories"), "w") as out:
        json.dump({name: {version: folders[diff_ids[-1]]}}, out)
print(len(os.listdir(stage)))
"""

# Pipeline stage 4: sha256 of every tarball, then the manifest (isula-build's fields).
PIPELINE_MANIFEST = """
import hashlib, json, os, sys
dest, plan_file = sys.argv[1:3]
with open(plan_file) as handle:
    plan = json.load(handle)
hashes = {}
for name in sorted(os.listdir(dest)):
    hasher = hashlib.sha256()
    with open(os.path.join(dest, name), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    hashes[name] = hasher.hexdigest()
first = None
manifest = {}
for tag in sorted(plan["apps"]):
    stem = tag.split("/")[-1].replace(":", "_")
    first = first or stem
    diff_ids = [d.split(":", 1)[1] for d in plan["apps"][tag]]
    cut_base, cut_lib = len(plan["base"]), len(plan["lib"])
    files = {kind: "%s_%s_image.tar.gz" % (stem if kind == "app" else first, kind) for kind in ("base", "lib", "app")}
    manifest[tag] = {"app": files["app"], "appHash": hashes[files["app"]], "appLayers": diff_ids[cut_lib:],
                     "lib": files["lib"], "libHash": hashes[files["lib"]], "libImageName": plan["lib_name"],
                     "libLayers": diff_ids[cut_base:cut_lib], "base": files["base"], "baseHash": hashes[files["base"]],
                     "baseImageName": plan["base_name"], "baseLayer": diff_ids[:cut_base]}
with open(os.path.join(dest, "manifest"), "w") as out:
    json.dump(manifest, out, indent=2)
print(len(hashes))
"""

# Ours: the module's from_images() and _write(), from an archive or from the docker store.
OURS_COMMON = """
import os, sys
from ansible_collections.airgap.images.plugins.module_utils.formats import separated
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_image_selector, parse_reference, resolve_selector

def pick(candidates, selectors):
    chosen = []
    for selector in selectors:
        found = resolve_selector(parse_image_selector(selector), candidates)
        if found is None:
            raise SystemExit("no image %s" % selector)
        tags = separated.selected_tags(selector, found.repo_tags)
        chosen.append(found.with_references([parse_reference(tag) for tag in tags]))
    return chosen

def separate(images, dest, compression, count):
    apps, base, lib = images[:count], images[count], images[count + 1]
    parts, entries = separated.plan(apps, base, lib, compression, None)
    separated.write(dest, parts, entries, base, lib, compression)
    print("%d parts" % len(parts))

source, dest, compression = sys.argv[1:4]
selectors = sys.argv[4:]
"""

OURS_FROM_ARCHIVE = OURS_COMMON + """
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
with open_archive(source) as archive:
    separate(pick(archive.images, selectors), dest, compression, len(selectors) - 2)
"""

OURS_FROM_DOCKER = OURS_COMMON + """
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
store = open_store("docker", source)
for selector in selectors:
    if store.find(selector) is None:
        raise SystemExit("no image %s" % selector)
with store.open_images(selectors, os.path.dirname(os.path.abspath(dest))) as images:
    separate(pick(images, selectors), dest, compression, len(selectors) - 2)
"""


def write_half_and_half(folder, name, size, rng, words):
    """``size`` bytes in two files: seeded random (``.bin``) and text-like (``.txt``), 1 MB at a time."""
    halves = ((name + ".bin", size // 2), (name + ".txt", size - size // 2))
    for index, (filename, length) in enumerate(halves):
        with open(os.path.join(folder, filename), "wb") as out:
            left = length
            while left > 0:
                if index == 0:
                    block = rng.randbytes(min(left, MB))
                else:
                    block = b" ".join(rng.choices(words, k=180000))[:min(left, MB)]
                out.write(block)
                left -= len(block)


def build_images(dockerd, work, size_mb):
    """Build base, lib and the two apps; return the uncompressed bytes of their layers' files."""
    rng = random.Random(42)
    words = [("%x" % rng.getrandbits(24)).encode() for _word in range(4096)]
    total = size_mb * MB
    written = 0
    for index, (name, parent, percent, folder) in enumerate(IMAGES):
        size = total - written if index == len(IMAGES) - 1 else total * percent // 100
        context = os.path.join(work, "context-" + folder)
        os.makedirs(os.path.join(context, "layer"))
        write_half_and_half(os.path.join(context, "layer"), folder, size, rng, words)
        with open(os.path.join(context, "Dockerfile"), "w") as out:
            out.write("FROM %s\nCOPY layer/ /%s/\n" % (parent or "scratch", folder))
        dockerd.cli("build", "-q", "--network", "none", "-t", name, context, timeout=1800)
        shutil.rmtree(context)
        written += size
    return written


def tarball_bytes(folder):
    """Sum of the tarballs' sizes in ``folder`` (not the manifest)."""
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
               if name != "manifest" and not name.startswith("."))


class Bench:
    """Measures operations and keeps, for each, its fastest run (rounds of every operation are interleaved by main())."""

    def __init__(self, work, image_bytes):
        self.work = work
        self.image_bytes = image_bytes
        self.env = dict(os.environ, PYTHONPATH=collection_path())
        self.best = {}  # first label of a group of rows -> the fastest group so far

    def keep(self, rows):
        """Keep ``rows`` (one operation, or the stages of one) when they are faster than the runs kept before."""
        held = self.best.get(rows[0]["operation"])
        if held is None or sum(row["seconds"] for row in rows) < sum(row["seconds"] for row in held):
            self.best[rows[0]["operation"]] = rows

    def rows(self):
        """Every kept row, in the order the operations first ran."""
        return [row for group in self.best.values() for row in group]

    def run(self, label, tool, command, output=None, fresh=None):
        """One run of ``command``; ``fresh`` (a directory) is emptied first and its tarballs counted after."""
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
            os.makedirs(fresh)
        row = measure(label, tool, command, self.image_bytes, output, self.env)
        if fresh is not None:
            row["output_bytes"] = tarball_bytes(fresh)
        self.keep([row])

    def pipeline(self, archive, plan_file):
        """isula-build's stages on ``archive``, one after the other (each consumes the previous one's output)."""
        untar, stage, dest = (os.path.join(self.work, name) for name in ("untar", "stage", "pipeline-out"))
        for folder in (untar, stage, dest):
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
        pack = "set -eo pipefail; cd %s; for part in *; do tar --mtime=2017-01-01 -cf - -C \"$part\" . | gzip -6 > %s/\"$part\".tar.gz; done" % (
            stage, dest)
        stages = [
            measure("pipeline 1: untar", "tar xf", ["tar", "-xf", archive, "-C", untar], self.image_bytes),
            measure("pipeline 2: move layer dirs", "python (os.rename, json)",
                    [sys.executable, "-c", PIPELINE_MOVE, untar, stage, plan_file], self.image_bytes),
            measure("pipeline 3: pack each part", "tar | gzip -6 (4 tarballs)", ["bash", "-c", pack], self.image_bytes),
            measure("pipeline 4: sha256 + manifest", "python (hashlib)", [sys.executable, "-c", PIPELINE_MANIFEST, dest, plan_file],
                    self.image_bytes),
        ]
        stages[2]["output_bytes"] = tarball_bytes(dest)
        for folder in (untar, stage, dest):
            shutil.rmtree(folder, ignore_errors=True)
        self.keep(stages)

    def total(self, label, tool, rows, output_bytes):
        """A row summing ``rows``' seconds; its peak RSS is the largest of theirs."""
        seconds = sum(row["seconds"] for row in rows)
        row = {"operation": label, "tool": tool, "seconds": seconds, "mb_s": self.image_bytes / seconds / 1e6,
               "output_bytes": output_bytes, "peak_rss_mb": max(row["peak_rss_mb"] for row in rows), "note": ""}
        return row


def verdicts(save_all, stages, ours_archive, ours_docker, ours_rows):
    """The four targets: (name, measured, limit, passed, text)."""
    speedup = stages["seconds"] / ours_archive["seconds"]
    size_ratio = ours_archive["output_bytes"] / float(stages["output_bytes"])
    docker_ratio = ours_docker["seconds"] / save_all["seconds"]
    peak = max(ours_rows, key=lambda row: row["peak_rss_mb"])
    return [
        ("a", speedup, SPEEDUP, speedup >= SPEEDUP,
         "ours from archive %.2fs vs pipeline untar+repack %.2fs: %.1fx faster (target >= %.0fx)"
         % (ours_archive["seconds"], stages["seconds"], speedup, SPEEDUP)),
        ("b", size_ratio, SIZE_RATIO, size_ratio <= SIZE_RATIO,
         "ours from archive %d bytes vs pipeline %d bytes: %.3fx (target <= %.2fx)"
         % (ours_archive["output_bytes"], stages["output_bytes"], size_ratio, SIZE_RATIO)),
        ("c", docker_ratio, DOCKER_RATIO, docker_ratio <= DOCKER_RATIO,
         "ours from docker %.2fs vs docker save of the same images %.2fs: %.2fx (target <= %.2fx)"
         % (ours_docker["seconds"], save_all["seconds"], docker_ratio, DOCKER_RATIO)),
        ("d", peak["peak_rss_mb"], LIMIT_MB, peak["peak_rss_mb"] < LIMIT_MB,
         "max peak RSS of our runs %.1f MB, %s (target < %d MB)" % (peak["peak_rss_mb"], peak["operation"], LIMIT_MB)),
    ]


def load_average():
    with open("/proc/loadavg") as handle:
        return handle.read().split()[:3]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=1024, help="total size of the images' layers in MB (default 1024)")
    parser.add_argument("--repeat", type=int, default=1, help="run each operation this many times, keep the fastest (default 1)")
    parser.add_argument("--no-zstd", action="store_true", help="skip our zstd runs")
    parser.add_argument("--json", help="also write the rows and the verdicts as JSON to this file")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="airgap-bench-")
    engines = Engines()
    try:
        started_load = load_average()
        dockerd = engines.dockerd()
        image_bytes = build_images(dockerd, work, args.size)
        inspected = {name: info["RootFS"]["Layers"] for name, info in zip((BASE, LIB) + APPS, dockerd.inspect(BASE, LIB, *APPS))}
        plan_file = os.path.join(work, "plan.json")
        with open(plan_file, "w") as out:
            json.dump({"apps": {app: inspected[app] for app in APPS}, "base": inspected[BASE], "lib": inspected[LIB],
                       "base_name": BASE, "lib_name": LIB}, out)
        bench = Bench(work, image_bytes)
        docker = [DOCKER_CLI, "-H", dockerd.host]
        apps_tar, all_tar = os.path.join(work, "apps.tar"), os.path.join(work, "all.tar")
        selectors = list(APPS) + [BASE, LIB]
        dest = os.path.join(work, "ours-out")
        compressions = ("gzip",) if args.no_zstd else ("gzip", "zstd")
        for _round in range(max(1, args.repeat)):  # rounds, so that load from elsewhere falls on every operation alike
            bench.run("docker save: 2 apps (floor)", "docker save -o", docker + ["save", "-o", apps_tar] + list(APPS), apps_tar)
            bench.run("docker save: apps+base+lib", "docker save -o (same layers)", docker + ["save", "-o", all_tar] + selectors, all_tar)
            bench.pipeline(apps_tar, plan_file)
            for compression in compressions:
                bench.run("ours from archive (%s)" % compression, "open_archive + plan + write", [
                    sys.executable, "-c", OURS_FROM_ARCHIVE, all_tar, dest, compression] + selectors, fresh=dest)
            for compression in compressions:
                bench.run("ours from docker (%s)" % compression, "open_images + plan + write", [
                    sys.executable, "-c", OURS_FROM_DOCKER, dockerd.host, dest, compression] + selectors, fresh=dest)
        save_apps, save_all = bench.best["docker save: 2 apps (floor)"][0], bench.best["docker save: apps+base+lib"][0]
        stage_rows = bench.best["pipeline 1: untar"]
        ours = {(source, compression): bench.best["ours from %s (%s)" % (source, compression)][0]
                for source in ("archive", "docker") for compression in compressions}
        rows = bench.rows()
        at = rows.index(stage_rows[-1]) + 1
        stages = bench.total("pipeline: untar+repack stages", "sum of stages 1-4", stage_rows, stage_rows[2]["output_bytes"])
        whole = bench.total("pipeline total (with save)", "docker save (2 apps) + stages 1-4", [save_apps] + stage_rows, stage_rows[2]["output_bytes"])
        rows[at:at] = [stages, whole]
        print_table(rows, image_bytes)
        shares = (IMAGES[0][2], IMAGES[1][2], IMAGES[2][2], " ".join(started_load), " ".join(load_average()), max(1, args.repeat))
        print("(base %d%%, lib %d%%, two apps %d%% each of the layer bytes; load average %s at the start, %s at the end; "
              "best of %d run(s) each, in interleaved rounds)" % shares)
        checks = verdicts(save_all, stages, ours["archive", "gzip"], ours["docker", "gzip"], list(ours.values()))
        print()
        for name, _value, _limit, passed, text in checks:
            print("(%s) %s: %s" % (name, text, "PASS" if passed else "FAIL"))
        passed = all(check[3] for check in checks)
        if args.json:
            with open(args.json, "w") as out:
                json.dump({"image_bytes": image_bytes, "size_mb": args.size, "repeat": max(1, args.repeat), "rows": rows,
                           "load_average": {"start": started_load, "end": load_average()},
                           "targets": [{"target": name, "measured": value, "limit": limit, "passed": ok, "text": text}
                                       for name, value, limit, ok, text in checks],
                           "passed": passed}, out, indent=1)
        if not passed:
            sys.exit(1)
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
