# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading many images and one large image into every store, beside each store's own tool.

Makes two archives with the core: 50 distinct small images sharing a base
layer (256 KiB base, 256 KiB of their own), and one image of ``--size`` MB
(four layers of incompressible seeded data, built in a private dockerd and
exported with the docker store).  Then, for each store (docker, podman's API
service, containerd, a registry, an OCI layout), it loads each archive into a
fresh, empty store twice: once with what ``image_load`` runs
(``open_archive``, ``plan_load``, ``run_load`` with ``archive_sender``,
``verify_loaded``), and once with the store's own tool on the same archive
(``docker load``, ``podman load``, ``ctr images import``, ``skopeo copy`` to
the registry and to the layout).  Every load runs in its own process under
GNU time: seconds, MB/s of the distinct layer bytes, images/s, peak RSS (with
the ``ctr`` children it waits for; never the engine's daemon), and for ours
the descriptors in /proc/self/fd before opening the store, after the load (the
store still open, as a module leaves it) and after ``close()``.  The last line
checks "peak RSS of our process under 100 MB whatever the image size" and the
exit status is non-zero when it fails.

    python bench/bench_load.py                 # --size 2048
    python bench/bench_load.py --size 256 --stores docker,oci --json bench/results/load.json
"""

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL_IMAGES = 50
KIB = 1024

# bench_archive.py sits beside this script (sys.path[0]); importing it also puts the collection on sys.path
import bench_archive as BENCH_ARCHIVE  # noqa: E402  pylint: disable=wrong-import-position
collection_path = BENCH_ARCHIVE.collection_path
measure = BENCH_ARCHIVE.measure

# pylint: disable=wrong-import-position
from ansible_collections.airgap.images.tests.system.engines import (  # noqa: E402
    CTR, DOCKER_CLI, SKOPEO, Engines, seeded_bytes, generations)
from ansible_collections.airgap.images.plugins.module_utils import build as BUILD  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store  # noqa: E402
# pylint: enable=wrong-import-position

BIG = "bench/big:1"
STORES = ("docker", "podman", "containerd", "registry", "oci")
LIMIT_MB = 100

# What image_load does with src: the archive, the plan, the load, the check; timed by phase, descriptors counted.
OUR_LOAD = """
import gc, json, os, sys, time
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.loading import (
    archive_sender, plan_load, run_load, verify_loaded)
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store

def open_fds():
    gc.collect()
    return len(os.listdir("/proc/self/fd")) - 1

engine, host, path, report = sys.argv[1:5]
fds = [open_fds()]
marks = [time.time()]
store = open_store(engine, host, insecure_http=True)
with open_archive(path) as archive:
    plan = plan_load(store, archive.images)
    marks.append(time.time())
    loaded, _tagged = run_load(store, plan, archive_sender(store, archive))
    marks.append(time.time())
    verify_loaded(store, archive.images)
    marks.append(time.time())
fds.append(open_fds())
store.close()
fds.append(open_fds())
with open(report, "w") as out:
    json.dump({"fds": fds, "phases": [b - a for a, b in zip(marks, marks[1:])], "loaded": len(loaded)}, out)
"""


class Case:
    """One archive to load: its path, its references, and the distinct layer bytes it carries."""

    def __init__(self, label, path):
        self.label = label
        self.path = path
        with open_archive(path) as archive:
            self.references = [tag for image in archive.images for tag in image.repo_tags]
            layers = {layer.diff_id: layer.measured_size() for image in archive.images for layer in image.layers}
        self.image_count = len(self.references)
        self.layer_bytes = sum(layers.values())


def small_images_archive(work):
    """Our archive of ``SMALL_IMAGES`` images: a shared 256 KiB base layer and 256 KiB of each image's own."""
    base = BUILD.layer_from_bytes(BUILD.layer_tar({"base": None, "base/data.bin": seeded_bytes(256 * KIB, 0)}))
    images = []
    for index in range(SMALL_IMAGES):
        own = BUILD.layer_from_bytes(BUILD.layer_tar({"app": None, "app/data.bin": seeded_bytes(256 * KIB, index + 1)}))
        images.append(BUILD.build_image([base, own], [parse_reference("bench/small-%02d:1" % index)]))
    path = os.path.join(work, "small.tar")
    save_archive(images, path)
    return Case("%d small images" % SMALL_IMAGES, path)


def big_image_archive(engines, work, size_mb):
    """Our archive of one ``size_mb`` MB image in four layers, built in a dockerd and exported by the docker store."""
    dockerd = engines.dockerd()
    BENCH_ARCHIVE.build_image(dockerd, work, size_mb, BIG, text_like=False)
    path = os.path.join(work, "big.tar")
    with open_store("docker", dockerd.host).open_images([BIG], work) as images:
        save_archive(images, path)
    discard(engines, dockerd)
    return Case("one %d MB image" % size_mb, path)


def discard(engines, engine):
    """Stop ``engine`` and delete its data now: a multi-GB image on vfs takes several GB in every engine."""
    engines.stop(engine)
    shutil.rmtree(engine.dir, ignore_errors=True)


def skopeo_loop(skopeo, case, destination):
    """One shell command copying every image of ``case`` with skopeo; ``destination % reference`` names the target."""
    base = [SKOPEO, "--insecure-policy", "--registries.d", skopeo.registries_d, "--tmpdir", skopeo.tmpdir, "copy",
            "--dest-tls-verify=false"]
    copies = [base + ["docker-archive:%s:%s" % (case.path, ref), destination % ref] for ref in case.references]
    script = " && ".join(" ".join(shlex.quote(arg) for arg in copy) for copy in copies)
    return ["bash", "-c", script], skopeo.env()


def start_store(engines, engine, work, podman_generation=None):
    """A fresh, empty ``engine``: (our host argument, native tool, native command for a case, a function deleting it).
    ``podman_generation``: which Podman (Debian 12's 4.3 by default)."""
    if engine == "docker":
        daemon = engines.dockerd()
        return (daemon.host, "docker load", lambda case: ([DOCKER_CLI, "-H", daemon.host, "load", "-i", case.path], None),
                lambda: discard(engines, daemon))
    if engine == "podman":
        podman = engines.podman(podman_generation)
        return ("unix://" + podman.service(), "podman load",
                lambda case: (podman.command(["load", "-i", case.path]), podman.env()), lambda: discard(engines, podman))
    if engine == "containerd":
        daemon = engines.containerd()
        return (daemon.address, "ctr images import", lambda case: (
            [CTR, "--address", daemon.address, "-n", daemon.namespace, "images", "import", case.path], None),
            lambda: discard(engines, daemon))
    skopeo = engines.skopeo()
    if engine == "registry":
        registry = engines.registry()
        return (registry.host, "skopeo copy", lambda case: skopeo_loop(skopeo, case, "docker://%s/%%s" % registry.host),
                lambda: discard(engines, registry))
    layout = tempfile.mkdtemp(prefix="layout-", dir=work)
    return layout, "skopeo copy", lambda case: skopeo_loop(skopeo, case, "oci:%s:%%s" % layout), lambda: shutil.rmtree(layout)


def load_ours(engine, host, case, work, env):
    """Our load of ``case`` into the store at ``host``: a measured row with its phases and descriptor counts."""
    report = os.path.join(work, "report.json")
    row = measure("%s ← %s" % (engine, case.label), "airgap.images",
                  [sys.executable, "-c", OUR_LOAD, engine, host, case.path, report], case.layer_bytes, None, env)
    with open(report) as handle:
        row.update(json.load(handle))
    if row["loaded"] != case.image_count:
        raise SystemExit("%s: loaded %d images, not %d" % (row["operation"], row["loaded"], case.image_count))
    return row


def load_native(engine, tool, command_for, case):
    command, env = command_for(case)
    return measure("%s ← %s" % (engine, case.label), tool, command, case.layer_bytes, None, env)


def bench_store(engines, engine, cases, work, podman_generation=None):
    """Load every case into a fresh store with our core, then into another fresh store with the native tool."""
    env = dict(os.environ, PYTHONPATH=collection_path())
    host, _tool, _command, delete = start_store(engines, engine, work, podman_generation)
    ours = [load_ours(engine, host, case, work, env) for case in cases]
    delete()
    _host, tool, command_for, delete = start_store(engines, engine, work, podman_generation)
    native = [load_native(engine, tool, command_for, case) for case in cases]
    delete()
    return [dict(store=engine, case=case.label, images=case.image_count, ours=mine, native=theirs)
            for case, mine, theirs in zip(cases, ours, native)]


def print_table(results):
    header = "%-10s %-17s %8s %7s %7s %7s %-8s %-15s | %-17s %8s %7s %7s %7s" % (
        "store", "case", "seconds", "MB/s", "img/s", "RSS MB", "fds", "plan/load/check", "native tool", "seconds",
        "MB/s", "img/s", "RSS MB")
    print("\n" + header + "\n" + "-" * len(header))
    for result in results:
        ours, native = result["ours"], result["native"]
        print("%-10s %-17s %8.2f %7.1f %7.2f %7.1f %-8s %-15s | %-17s %8.2f %7.1f %7.2f %7.1f" % (
            result["store"], result["case"], ours["seconds"], ours["mb_s"], result["images"] / ours["seconds"],
            ours["peak_rss_mb"], "→".join(str(count) for count in ours["fds"]),
            "/".join("%.1f" % phase for phase in ours["phases"]), native["tool"], native["seconds"], native["mb_s"],
            result["images"] / native["seconds"], native["peak_rss_mb"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=2048, help="size of the large image in MB (default 2048)")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated stores (default: all five)")
    parser.add_argument("--limit", type=int, default=LIMIT_MB, help="peak RSS limit in MB (default %d)" % LIMIT_MB)
    parser.add_argument("--json", help="also write the results and the verdict as JSON to this file")
    parser.add_argument("--podman", choices=("system", "current"), default="system",
                        help="Debian 12's Podman 4.3 (default), or the current one in the chroot (make current-engines)")
    args = parser.parse_args()
    podman_generation = [gen for gen in generations("podman") if gen.source == args.podman][0]
    if podman_generation.missing and "podman" in args.stores.split(","):
        raise SystemExit("bench_load: %s cannot run here: %s" % (podman_generation.name, podman_generation.missing))
    work = tempfile.mkdtemp(prefix="airgap-bench-")
    engines = Engines()
    load_average = [os.getloadavg()[0]]  # other jobs on the machine make the times noisy; say how busy it was
    try:
        cases = [small_images_archive(work), big_image_archive(engines, work, args.size)]
        results = []
        for engine in args.stores.split(","):
            results.extend(bench_store(engines, engine, cases, work, podman_generation))
        load_average.append(os.getloadavg()[0])
        print_table(results)
        peak = max(result["ours"]["peak_rss_mb"] for result in results)
        passed = peak < args.limit
        print("\nload average (1 min) at start and end: %.2f, %.2f on %d CPUs" % (load_average[0], load_average[1], os.cpu_count()))
        print("max peak RSS of our process: %.1f MB (limit %d MB): %s" % (peak, args.limit, "PASS" if passed else "FAIL"))
        if args.json:
            with open(args.json, "w") as out:
                json.dump({"results": results, "load_average": load_average, "max_peak_rss_mb": peak, "limit_mb": args.limit,
                           "passed": passed}, out, indent=1)
        if not passed:
            sys.exit(1)
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
