# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules through ansible-playbook beside each store's own tool and community.docker / containers.podman.

Builds, in a private dockerd (tests/system/engines.py), a base (40 % of
``--size`` MB), a lib on it (30 %) and two apps on the lib (15 % each), as
bench/bench_separate.py does, and ``docker save``s the two apps: that archive
seeds every other store. Then, per store (``--stores``, default all five), with
the same images in one run, each operation is its own command under GNU time:

* save of the two apps from the store: the store's tool (``docker save``,
  ``podman save -m``, ``ctr images export``, ``skopeo copy`` per image),
  airgap.images.image_save, community.docker.docker_image_export (docker) or
  containers.podman.podman_save (podman); the airgap and peer tasks again with
  the archive in place (a re-run);
* load of that archive into the store emptied of the images: the store's tool
  (``docker load``, ``podman load``, ``ctr images import``, ``skopeo copy``),
  image_load, community.docker.docker_image_load or containers.podman.podman_load;
  then the airgap and peer tasks again with the images present;
* for docker, image_separate of the apps on base and lib straight from the
  engine, first run and re-run, beside ``docker save`` of the same images.

Every airgap.images task runs as users on a controller get it: one
``ansible-playbook -i localhost, -c local`` with one task, so in Ansible's worker;
``changed`` is read from the play recap. Ratios are to the store's tool on the same
row group. "RSS MB" is GNU time's ``%M``: the largest single process of the command
(for a task, the ansible-playbook process or its worker, which runs the module). A
no-op playbook's time is printed too: every task row includes it.

community.docker and containers.podman come from the ``ansible`` package on PyPI
(12.x pairs with ansible-core 2.19): when ``.build/bench-collections`` does not hold
them yet, the wheel is downloaded (``pip download --no-deps``, or ``--ansible-wheel
FILE``) and only those collections (and community.docker's one dependency) are
extracted there; ansible-core is left alone.

    make bench-modules    # or: python bench/bench_modules.py --size 400 --stores docker,podman --rounds 3

The exit status is 1 when a re-run of an airgap.images module reports changed.
"""

import argparse
import glob
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


# bench_archive.py sits beside this script (sys.path[0]); importing it also puts the collection on sys.path
import bench_archive as BENCH_ARCHIVE  # noqa: E402  pylint: disable=wrong-import-position
import bench_separate as BENCH_SEPARATE  # noqa: E402  pylint: disable=wrong-import-position
ROOT = BENCH_ARCHIVE.ROOT
measure = BENCH_ARCHIVE.measure

from ansible_collections.airgap.images.tests.system.engines import CTR, DOCKER_CLI, SKOPEO, Engines  # noqa: E402  pylint: disable=wrong-import-position

APPS, BASE, LIB = BENCH_SEPARATE.APPS, BENCH_SEPARATE.BASE, BENCH_SEPARATE.LIB
BIN = os.path.dirname(sys.executable)
ANSIBLE_REQUIREMENT = "ansible>=12,<13"  # the ansible package release that pairs with ansible-core 2.19
BENCH_COLLECTIONS = os.path.join(ROOT, ".build", "bench-collections")  # .build/ is gitignored and left out of the galaxy build
WHEEL_DIR = os.path.join(ROOT, ".build", "bench-wheel")
EXTRACT = ("ansible_collections/community/docker/", "ansible_collections/community/library_inventory_filtering_v1/",
           "ansible_collections/containers/podman/")
MARKER = os.path.join(BENCH_COLLECTIONS, "ansible_collections", "containers", "podman", "MANIFEST.json")
COMMUNITY_DOCKER = os.path.join(BENCH_COLLECTIONS, "ansible_collections", "community", "docker", "MANIFEST.json")
STORES = ("docker", "podman", "containerd", "registry", "oci")


def say(text):
    print("bench_modules: " + text, flush=True)


def collection_version(manifest):
    with open(manifest, encoding="utf-8") as handle:
        return json.load(handle)["collection_info"]["version"]


def find_or_download_wheel():
    """The ansible wheel in .build/bench-wheel, downloaded from PyPI first when there is none."""
    found = sorted(glob.glob(os.path.join(WHEEL_DIR, "ansible-12.*-py3-none-any.whl")))
    if found:
        return found[-1]
    os.makedirs(WHEEL_DIR, exist_ok=True)
    say("downloading %s (wheel only, no dependencies) into %s" % (ANSIBLE_REQUIREMENT, WHEEL_DIR))
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                    "--dest", WHEEL_DIR, ANSIBLE_REQUIREMENT], check=True)
    found = sorted(glob.glob(os.path.join(WHEEL_DIR, "ansible-12.*-py3-none-any.whl")))
    if not found:
        raise SystemExit("bench_modules: pip download left no ansible-12.*.whl in %s" % WHEEL_DIR)
    return found[-1]


def ensure_peer_collections(wheel=None):
    """Extract community.docker and containers.podman from the ansible wheel into BENCH_COLLECTIONS unless they are
    there; their versions."""
    if os.path.isfile(MARKER) and os.path.isfile(COMMUNITY_DOCKER):
        return collection_version(COMMUNITY_DOCKER), collection_version(MARKER)
    wheel = wheel or find_or_download_wheel()
    say("extracting community.docker and containers.podman from %s into %s" % (wheel, BENCH_COLLECTIONS))
    os.makedirs(os.path.dirname(BENCH_COLLECTIONS), exist_ok=True)
    staging = tempfile.mkdtemp(prefix="bench-collections-", dir=os.path.dirname(BENCH_COLLECTIONS))
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(EXTRACT):
                    archive.extract(name, staging)
        if not os.path.isfile(os.path.join(staging, os.path.relpath(MARKER, BENCH_COLLECTIONS))):
            raise SystemExit("bench_modules: %s lacks community.docker or containers.podman" % wheel)
        if os.path.isdir(BENCH_COLLECTIONS):
            shutil.rmtree(BENCH_COLLECTIONS)
        os.rename(staging, BENCH_COLLECTIONS)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    versions = collection_version(COMMUNITY_DOCKER), collection_version(MARKER)
    say("community.docker %s and containers.podman %s are in %s" % (versions + (BENCH_COLLECTIONS,)))
    return versions


def clean_env(**extra):
    """The environment without PYTHONPATH or DOCKER_* settings, so Ansible sees only the collections it is given."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH" and not key.startswith("DOCKER_")}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", **extra)
    return env


def install_collection(work):
    """This tree as users get it: ``ansible-galaxy collection build`` then ``install``; the collections path and version."""
    env = clean_env()
    say("building and installing airgap.images from %s" % ROOT)
    built = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", ROOT, "--output-path", work, "--force"],
                           check=True, capture_output=True, text=True, env=env)
    tarball = built.stdout.strip().split()[-1]
    target = os.path.join(work, "collections")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-p", target, tarball],
                   check=True, capture_output=True, text=True, env=env)
    return target, collection_version(os.path.join(target, "ansible_collections", "airgap", "images", "MANIFEST.json"))


class Runner:
    """Runs each command under GNU time, and each task as its own ansible-playbook; rows carry ``changed`` from the recap."""

    def __init__(self, work, collections, image_bytes):
        self.work = work
        self.env = clean_env(ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(collections))
        self.image_bytes = image_bytes
        self.rows = []
        self.runs = 0

    def command(self, store, label, tool, command, env=None, output=None):
        row = measure(label, tool, command, self.image_bytes, output, env)
        row.update(store=store, label=label, changed=None)
        self.rows.append(row)
        return row

    def task(self, store, label, tool, task, output=None):
        self.runs += 1
        path = os.path.join(self.work, "play%d.yml" % self.runs)
        with open(path, "w", encoding="utf-8") as out:
            json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": [task],
                        "vars": {"ansible_python_interpreter": sys.executable}}], out)  # airgap tasks: in the worker
        row = self.command(store, label, tool, [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path],
                           self.env, output)
        recap = row["stdout_tail"]
        if "changed=" not in recap:
            raise SystemExit("bench_modules: %s (%s) printed no recap: %s" % (label, tool, recap))
        row["changed"] = "changed=0" not in recap
        return row


def output_path(work, store, name):
    path = os.path.join(work, "%s-%s" % (store, name))
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)
    return path


def bench_save_load(runner, store, host, native_save, native_load, empty, peer=None, work=None, options=None):
    """The save rows, then the load rows, of one store at ``host()``: ``native_save(dest)`` and ``native_load(src)`` give
    (command, env); ``empty()`` takes the images out of the store (or makes a new one); ``peer`` is (name, save task for a
    dest, load task for a src)."""
    def engine():
        return dict(options or {}, engine=store, engine_host=host())

    ours = output_path(work, store, "ours.tar")
    our_save = {"airgap.images.image_save": dict(engine(), images=list(APPS), dest=ours)}
    native = output_path(work, store, "native.tar")
    command, env = native_save(native)
    runner.command(store, "save", native_save.tool, command, env, native)
    runner.task(store, "save", "image_save", our_save, ours)
    runner.task(store, "save, re-run", "image_save", our_save, ours)
    if peer:
        theirs = output_path(work, store, "peer.tar")
        runner.task(store, "save", peer[0], peer[1](theirs), theirs)
        runner.task(store, "save, re-run", peer[0], peer[1](theirs), theirs)
    source = os.path.join(work, "docker-save.tar")
    empty()
    command, env = native_load(source)
    runner.command(store, "load", native_load.tool, command, env)
    empty()
    our_load = {"airgap.images.image_load": dict(engine(), src=source)}
    runner.task(store, "load", "image_load", our_load)
    runner.task(store, "load, re-run", "image_load", our_load)
    if peer:
        empty()
        runner.task(store, "load", peer[0], peer[2](source))
        runner.task(store, "load, re-run", peer[0], peer[2](source))


def tool(name, function):
    function.tool = name
    return function


def bench_docker(runner, dockerd, work, round_number=1):
    """Separation first (it needs base and lib in the engine, which a round's loads leave without their tags: from the
    second round on they are loaded again first), then saves and loads."""
    docker = [DOCKER_CLI, "-H", dockerd.host]
    env = dict(os.environ, DOCKER_CONFIG=dockerd.config_dir)
    everything = list(APPS) + [BASE, LIB]
    if round_number > 1:
        subprocess.run(docker + ["load", "-i", os.path.join(work, "docker-save-all.tar")], env=env, check=True, capture_output=True)
    command = docker + ["save", "-o", output_path(work, "docker", "all.tar")] + everything
    runner.command("docker", "separate", "docker save -o (apps, base, lib)", command, env)
    dest = output_path(work, "docker", "separated")
    separate = {"airgap.images.image_separate": {"images": list(APPS), "base": BASE, "lib": LIB, "dest": dest,
                                                 "engine": "docker", "engine_host": dockerd.host}}
    runner.task("docker", "separate", "image_separate", separate)
    runner.task("docker", "separate, re-run", "image_separate", separate)
    peer = ("community docker_image_export/load",
            lambda dest: {"community.docker.docker_image_export": {"names": list(APPS), "path": dest, "docker_host": dockerd.host}},
            lambda src: {"community.docker.docker_image_load": {"path": src, "docker_host": dockerd.host}})
    bench_save_load(runner, "docker", lambda: dockerd.host,
                    tool("docker save -o", lambda dest: (docker + ["save", "-o", dest] + list(APPS), env)),
                    tool("docker load -i", lambda src: (docker + ["load", "-i", src], env)),
                    lambda: subprocess.run(docker + ["rmi"] + everything, env=env, capture_output=True, check=False),
                    peer, work)


def podman_wrapper(podman, work):
    """An executable that is this private podman (its options and environment), for containers.podman's ``executable``."""
    path = os.path.join(work, "podman")
    exports = "".join("export %s=%s\n" % (key, shlex.quote(value)) for key, value in sorted(podman.env().items())
                      if key.startswith(("CONTAINERS_", "REGISTRY_")))
    with open(path, "w", encoding="utf-8") as out:
        out.write("#!/bin/sh\n%sexec %s \"$@\"\n" % (exports, " ".join(shlex.quote(arg) for arg in podman.command([]))))
    os.chmod(path, 0o755)
    return path


def bench_podman(runner, engines, work):
    podman = engines.podman()
    host = "unix://" + podman.service()
    podman.cli("load", "-i", os.path.join(work, "docker-save.tar"), timeout=1800)
    executable = podman_wrapper(podman, work)
    peer = ("containers.podman podman_save/load",
            lambda dest: {"containers.podman.podman_save": {"image": list(APPS), "dest": dest, "multi_image_archive": True,
                                                            "executable": executable}},
            lambda src: {"containers.podman.podman_load": {"input": src, "executable": executable}})
    bench_save_load(runner, "podman", lambda: host,
                    tool("podman save -m -o", lambda dest: (podman.command(["save", "-m", "-o", dest] + list(APPS)), podman.env())),
                    tool("podman load -i", lambda src: (podman.command(["load", "-i", src]), podman.env())),
                    lambda: podman.cli("rmi", *APPS), peer, work)
    engines.stop(podman)
    shutil.rmtree(podman.dir, ignore_errors=True)


def bench_containerd(runner, engines, work):
    daemon = engines.containerd()
    ctr = [CTR, "--address", daemon.address, "-n", daemon.namespace]
    references = ["docker.io/%s" % app for app in APPS]
    subprocess.run(ctr + ["images", "import", os.path.join(work, "docker-save.tar")], check=True, capture_output=True)
    bench_save_load(runner, "containerd", lambda: daemon.address,
                    tool("ctr images export", lambda dest: (ctr + ["images", "export", dest] + references, None)),
                    tool("ctr images import", lambda src: (ctr + ["images", "import", src], None)),
                    lambda: subprocess.run(ctr + ["images", "rm", "--sync"] + references, check=True, capture_output=True),
                    None, work)
    engines.stop(daemon)
    shutil.rmtree(daemon.dir, ignore_errors=True)


def skopeo_copies(skopeo, pairs):
    """One shell command running ``skopeo copy SRC DEST`` for every pair."""
    base = [SKOPEO, "--insecure-policy", "--registries.d", skopeo.registries_d, "--tmpdir", skopeo.tmpdir, "copy",
            "--src-tls-verify=false", "--dest-tls-verify=false"]
    copies = [" ".join(shlex.quote(arg) for arg in base + [source, dest]) for source, dest in pairs]
    return ["bash", "-c", " && ".join(copies)], skopeo.env()


def bench_copying_store(runner, engines, store, work):
    """registry or oci: skopeo is the store's tool, one copy per image; the store is emptied by making a new one."""
    skopeo = engines.skopeo()
    source = os.path.join(work, "docker-save.tar")
    state = {}

    def fresh():
        if store == "registry":
            if state:
                engines.stop(state["registry"])
            state["registry"] = engines.registry()
            state["host"] = state["registry"].host
            state["name"] = lambda app: "docker://%s/%s" % (state["host"], app)
        else:
            state["host"] = output_path(work, store, "layout")
            state["name"] = lambda app: "oci:%s:%s" % (state["host"], app)

    fresh()
    command, env = skopeo_copies(skopeo, [("docker-archive:%s:%s" % (source, app), state["name"](app)) for app in APPS])
    subprocess.run(command, env=env, check=True, capture_output=True)

    def native_save(dest):
        os.makedirs(dest)
        return skopeo_copies(skopeo, [(state["name"](app), "docker-archive:%s/%d.tar:%s" % (dest, index, app))
                                      for index, app in enumerate(APPS)])

    def native_load(src):
        return skopeo_copies(skopeo, [("docker-archive:%s:%s" % (src, app), state["name"](app)) for app in APPS])

    bench_save_load(runner, store, lambda: state["host"], tool("skopeo copy (per image)", native_save), tool("skopeo copy (per image)", native_load),
                    fresh, None, work, {"insecure_registry": True} if store == "registry" else None)
    if store == "registry":
        engines.stop(state["registry"])


GOALS = {  # (store, label of the airgap row) -> (tool of the row it is compared with, the most ratio allowed)
    ("docker", "save"): ("docker save -o", 1.10),
    ("docker", "load"): ("docker load -i", 1.05),
    ("docker", "separate"): ("docker save -o (apps, base, lib)", 1.30),
}
RERUN_LIMIT_S = 2.5


def median_rows(rows):
    """One row per (store, operation, tool) of rounds of the same rows: the median seconds (``runs``: every round's),
    the largest RSS, and changed when any round reported changed (a re-run must report ok every time)."""
    grouped = {}
    for row in rows:
        grouped.setdefault((row["store"], row["label"], row["tool"]), []).append(row)
    merged = []
    for group in grouped.values():
        seconds = sorted(row["seconds"] for row in group)
        row = dict(group[0], seconds=statistics.median(seconds), runs=[row["seconds"] for row in group],
                   peak_rss_mb=max(row["peak_rss_mb"] for row in group))
        if row["changed"] is not None:
            row["changed"] = any(member["changed"] for member in group)
        merged.append(row)
    return merged


def print_rows(rows, baseline):
    natives = {(row["store"], row["label"]): row for row in rows if row["changed"] is None}
    header = "%-10s %-17s %-38s %8s %8s %8s %7s  %s" % ("store", "operation", "tool", "changed", "seconds", "ratio", "RSS MB",
                                                        "every round")
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        native = natives.get((row["store"], row["label"].split(",")[0]))
        ratio = row["seconds"] / native["seconds"] if native and "re-run" not in row["label"] else None
        print("%-10s %-17s %-38s %8s %8.2f %8s %7.1f  %s" % (
            row["store"], row["label"], row["tool"], "-" if row["changed"] is None else json.dumps(row["changed"]),
            row["seconds"], "%.2fx" % ratio if ratio else "", row["peak_rss_mb"],
            " ".join("%.2f" % seconds for seconds in row.get("runs", [row["seconds"]]))))
    print("\nansible-playbook with one no-op task (ansible.builtin.ping): %.2f s, peak RSS %.1f MB; every task row includes it"
          % (baseline["seconds"], baseline["peak_rss_mb"]))


def verdicts(rows):
    """Goal lines (PASS/FAIL) and whether every airgap re-run reported ok."""
    lines, by_key = [], {(row["store"], row["label"], row["tool"]): row for row in rows}
    for (store, label), (native_tool, limit) in GOALS.items():
        ours = next((row for row in rows if (row["store"], row["label"]) == (store, label) and row["tool"].startswith("image_")), None)
        native = by_key.get((store, label, native_tool))
        if ours and native:
            ratio = ours["seconds"] / native["seconds"]
            lines.append("%s %s %s: %.2fx %s (goal <= %.2fx)" % ("PASS" if ratio <= limit else "FAIL", store, label,
                                                                 ratio, native_tool, limit))
    reruns = [row for row in rows if row["tool"].startswith("image_") and "re-run" in row["label"]]
    for row in reruns:
        verdict = "PASS" if row["seconds"] <= RERUN_LIMIT_S and not row["changed"] else "FAIL"
        fields = (verdict, row["store"], row["label"], row["tool"], row["seconds"], json.dumps(row["changed"]), RERUN_LIMIT_S)
        lines.append("%s %s %s %s: %.2f s, changed=%s (goal <= %.1f s, ok)" % fields)
    peak = max(row["peak_rss_mb"] for row in rows if row["tool"].startswith("image_"))
    lines.append("%s peak RSS: %.1f MB at most of every airgap row (goal <= 100 MB)" % ("PASS" if peak <= 100 else "FAIL", peak))
    return lines, not any(row["changed"] for row in reruns)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=400, help="the images' layers in MB (default 400)")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated, of %s (default all)" % ", ".join(STORES))
    parser.add_argument("--ansible-wheel", help="an ansible 12.x wheel to take the peer collections from, instead of downloading one")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every store's rows this many times, one round after the other, and report each row's "
                             "median (default 1; single runs on a 2-core VM vary by 20-30 %%)")
    parser.add_argument("--generation", help="the dockerd that builds the images and serves the docker rows: docker20 (the "
                                             "default, Debian 12's), docker28 or docker28-containerd-store (Docker 29's "
                                             "default image store; tests/system/matrix.py)")
    args = parser.parse_args()
    stores = [store for store in args.stores.split(",") if store]
    unknown = sorted(set(stores) - set(STORES))
    if unknown:
        raise SystemExit("bench_modules: unknown store %s; use %s" % (", ".join(unknown), ", ".join(STORES)))
    docker_version, podman_version = ensure_peer_collections(args.ansible_wheel)
    work = tempfile.mkdtemp(prefix="airgap-bench-modules-")
    engines = Engines()
    try:
        collections, our_version = install_collection(work)
        say("starting a private dockerd (%s) and building base, lib and two apps, %d MB in all"
            % (args.generation or "docker20", args.size))
        dockerd = engines.dockerd(generation=args.generation)
        image_bytes = BENCH_SEPARATE.build_images(dockerd, work, args.size)
        dockerd.cli("save", "-o", os.path.join(work, "docker-save.tar"), *APPS, timeout=1800)
        if args.rounds > 1 and "docker" in stores:
            dockerd.cli("save", "-o", os.path.join(work, "docker-save-all.tar"), *APPS, BASE, LIB, timeout=1800)
        runner = Runner(work, [collections, BENCH_COLLECTIONS], image_bytes)
        for round_number in range(1, args.rounds + 1):
            for store in stores:
                say("timing %s (round %d of %d)" % (store, round_number, args.rounds))
                if store == "docker":
                    bench_docker(runner, dockerd, work, round_number)
                elif store == "podman":
                    bench_podman(runner, engines, work)
                elif store == "containerd":
                    bench_containerd(runner, engines, work)
                else:
                    bench_copying_store(runner, engines, store, work)
        baseline = runner.task("-", "no-op", "ansible.builtin.ping", {"ansible.builtin.ping": {}})
        rows = median_rows([row for row in runner.rows if row is not baseline])
        print_rows(rows, baseline)
        print("\nimages: %.0f MB of layers (base 40 %%, lib 30 %%, two apps 15 %% each); airgap.images %s from %s; "
              "community.docker %s, containers.podman %s (%s)" % (image_bytes / 1e6, our_version, ROOT, docker_version,
                                                                  podman_version, os.path.relpath(BENCH_COLLECTIONS, ROOT)))
        lines, reruns_ok = verdicts(rows)
        print("\n".join(lines))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump(runner.rows, out, indent=1)
        if not reruns_ok:
            print("FAIL: a re-run of an airgap.images module reported changed")
            return 1
        return 0
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
