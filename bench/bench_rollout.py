# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout role beside the per-image pipeline most playbooks run: seconds and bytes copied, release after release.

Starts private dockerds (tests/system/engines.py): one "build machine" and ``--hosts`` site hosts, each empty.
Builds a base (50 % of ``--size`` MB), a lib on it (35 %), two apps on the lib (7.5 % each) and app-a 2 (a new
7.5 % layer on the lib); the content is random, so compression gains nothing and bytes are bytes.

Three releases go to every host: app-a 1 and app-b 1 (with base and lib), the same again, then app-a 2:

* airgap.images.rollout, one ansible-playbook run per release (hosts are inventory entries with
  ``ansible_connection=local`` and their own engine); bytes copied are the role's own ``rollout_report``s.
* the per-image pipeline of Kubespray's download role, in shell, hosts in parallel: for each image the host lacks
  (``docker image inspect``), ``docker save IMAGE | gzip -1`` once into a controller cache, ``cp`` to the host's
  staging directory, ``docker load -i``, ``rm``. Bytes copied are the tarballs copied.

    make bench-rollout    # or: python bench/bench_rollout.py --size 400 --hosts 2
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

# bench_modules.py sits beside this script; importing it also puts the collection on sys.path
import bench_modules as BENCH_MODULES  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.airgap.images.tests.system.engines import DOCKER_CLI, Engines, build_test_images  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.dirname(sys.executable)
RELEASES = [("1. app-a 1 + app-b 1", ["bench/app-a:1", "bench/app-b:1"]),
            ("2. the same again", ["bench/app-a:1", "bench/app-b:1"]),
            ("3. app-a 2", ["bench/app-a:2", "bench/app-b:1"])]
BASE, LIB = "bench/base:1", "bench/lib:1"


def test_images(size_mb):
    kb = size_mb * 1024

    def files(fraction, seed):
        return {"data/%d.bin" % seed: (int(kb * fraction) * 1024, seed)}
    return {
        BASE: (None, files(0.5, 1), []),
        LIB: (BASE, files(0.35, 2), []),
        "bench/app-a:1": (LIB, files(0.075, 3), []),
        "bench/app-b:1": (LIB, files(0.075, 4), []),
        "bench/app-a:2": (LIB, files(0.075, 5), []),
    }


def run_role(work, collections, source, hosts, release, images):
    inventory = os.path.join(work, "inventory.ini")
    with open(inventory, "w") as out:
        out.write("[site]\n" + "".join(
            "%s ansible_connection=local ansible_python_interpreter=%s rollout_engine_host=%s rollout_staging_dir=%s\n"
            % (name, sys.executable, daemon.host, os.path.join(work, "staging", name)) for name, daemon in hosts.items()))
    reports = os.path.join(work, "reports-%d" % release)
    os.makedirs(reports)
    role_vars = {"rollout_images": images, "rollout_base": BASE, "rollout_lib": LIB, "rollout_source_engine_host": source.host,
                 "rollout_bundle_dir": os.path.join(work, "bundle")}
    keep_report = {"ansible.builtin.copy": {"content": "{{ rollout_report | to_json }}", "dest": reports + "/{{ inventory_hostname }}.json",
                                            "mode": "0644"}, "delegate_to": "localhost", "changed_when": False}
    play = [{"hosts": "site", "gather_facts": False, "roles": [{"role": "airgap.images.rollout", "vars": role_vars}]},
            {"hosts": "site", "gather_facts": False, "tasks": [keep_report]}]
    path = os.path.join(work, "play-%d.yml" % release)
    with open(path, "w") as out:
        json.dump(play, out)
    started = time.time()
    subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inventory, path], check=True, capture_output=True,
                   env=BENCH_MODULES.clean_env(ANSIBLE_COLLECTIONS_PATH=collections))
    elapsed = time.time() - started
    shipped = 0
    for name in hosts:
        with open(os.path.join(reports, name + ".json")) as handle:
            shipped += int(json.load(handle)["shipped_bytes"])
    return elapsed, shipped


def docker(host, *args, **kwargs):
    return subprocess.run([DOCKER_CLI, "-H", host] + list(args), check=True, capture_output=True, **kwargs)


def pipeline_host(cache, source, daemon, staging, images, copied, lock):
    os.makedirs(staging, exist_ok=True)
    for image in images:
        if subprocess.run([DOCKER_CLI, "-H", daemon.host, "image", "inspect", image], capture_output=True, check=False).returncode == 0:
            continue
        tarball = os.path.join(cache, image.replace("/", "_").replace(":", "_") + ".tar.gz")
        with lock:  # the controller's cache is filled once per image
            if not os.path.exists(tarball):
                subprocess.run("%s -H %s save %s | gzip -1 > %s" % (DOCKER_CLI, source.host, image, tarball), shell=True, check=True)
        target = os.path.join(staging, os.path.basename(tarball))
        shutil.copyfile(tarball, target)
        with lock:
            copied.append(os.path.getsize(target))
        docker(daemon.host, "load", "-i", target)
        os.unlink(target)


def run_pipeline(work, source, hosts, images):
    cache = os.path.join(work, "cache")
    os.makedirs(cache, exist_ok=True)
    copied, lock = [], threading.Lock()
    started = time.time()
    threads = [threading.Thread(target=pipeline_host,
                                args=(cache, source, daemon, os.path.join(work, "pipeline", name), [BASE, LIB] + images, copied, lock))
               for name, daemon in hosts.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.time() - started, sum(copied)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=400, help="MB of layers in base + lib + one app (default 400)")
    parser.add_argument("--hosts", type=int, default=2, help="site hosts, each a dockerd (default 2)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="airgap-bench-rollout-")
    engines = Engines()
    try:
        print("starting %d dockerds and building the images (%d MB of layers in base + lib + app)" % (args.hosts * 2 + 1, args.size))
        source = engines.dockerd()
        build_test_images(source, os.path.join(work, "build"), test_images(args.size))
        collections, _version = BENCH_MODULES.install_collection(work)
        ours = {"host%d" % i: engines.dockerd() for i in range(1, args.hosts + 1)}
        theirs = {"host%d" % i: engines.dockerd() for i in range(1, args.hosts + 1)}
        rows = []
        role_work = os.path.join(work, "role")
        os.makedirs(role_work)
        for index, (title, images) in enumerate(RELEASES, 1):
            seconds, shipped = run_role(role_work, collections, source, ours, index, images)
            rows.append((title, "airgap.images.rollout", seconds, shipped))
            seconds, shipped = run_pipeline(work, source, theirs, images)
            rows.append((title, "save|gzip -1, cp, load per image", seconds, shipped))
        print_rows(rows, args)
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


def print_rows(rows, args):
    print("\n%d hosts (dockerd 20.10, vfs), random layers: base %d MB, lib %d MB, each app %d MB"
          % (args.hosts, args.size * 0.5, args.size * 0.35, args.size * 0.075))
    header = "%-22s %-34s %9s %16s" % ("release", "tool", "seconds", "bytes copied")
    print(header)
    print("-" * len(header))
    for title, tool, seconds, shipped in rows:
        print("%-22s %-34s %9.1f %16d" % (title, tool, seconds, shipped))


if __name__ == "__main__":
    main()
