# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout role over real SSH beside the per-image pipeline most playbooks run: seconds and bytes, release after release.

Hosts are reached over SSH: one sshd per host on a loopback address (tests/system/sshd.py), root login with a key,
the hosts' Python the stock /usr/bin/python3 (nothing installed). Each host has its own engine (tests/system/engines.py):
by default three hosts, two dockerd 20.10 and one containerd 1.6 (``--kind mixed``); ``--kind oci`` gives every host an
OCI layout directory (for ``--hosts 20``). A "build machine" dockerd holds the images: a base (50 % of ``--size`` MB), a
lib on it (35 %), two apps on the lib (7.5 % each) and app-a 2 (a new 7.5 % layer on the lib); the content is random,
so compression gains nothing and bytes are bytes.

Three releases go to every host: app-a 1 and app-b 1 (with base and lib), the same again, then app-a 2. Each tool gets
hosts of its own, empty at the start:

* airgap.images.rollout, one ansible-playbook run per release, with Ansible's default SSH settings (``ssh_args`` with
  ``-C``, no pipelining), and again on other hosts with the settings docs/guide-airgap-rollout.md recommends
  (``pipelining``, ``ssh_args`` without ``-C``). Bytes are what image_ship says it sent.
* the per-image pipeline (Kubespray's download role, in shell), hosts in parallel, over the same sshds with plain
  ``ssh``/``scp`` (one connection per command, as a shell script runs them): for each image the host lacks
  (``docker image inspect`` / ``ctr images ls`` over ssh), ``docker save IMAGE | gzip -1`` once into a controller
  cache, ``scp`` to the host, ``docker load -i`` / ``gunzip -c | ctr images import -`` over ssh, ``rm``. Bytes are the
  tarballs copied. Not run for ``--kind oci``.

    make bench-rollout    # or: python bench/bench_rollout.py --size 400 --hosts 3
    python bench/bench_rollout.py --size 100 --hosts 20 --kind oci --forks 10

Goals (issue 15): with default settings release 1 <= 0.6x, release 2 <= 1.0x and release 3 <= 0.4x the pipeline's
wall time; release 2 at 20 hosts <= 1 s of wall time per host with forks=10; bytes per host = the blobs it lacks.
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
from ansible_collections.airgap.images.tests.system.sshd import SSHHosts  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.dirname(sys.executable)
CTR = "/usr/bin/ctr"
STOCK_PYTHON = "/usr/bin/python3"
RELEASES = [("1. two apps, empty hosts", ["bench/app-a:1", "bench/app-b:1"]),
            ("2. the same again", ["bench/app-a:1", "bench/app-b:1"]),
            ("3. one app updated", ["bench/app-a:2", "bench/app-b:1"])]
BASE, LIB = "bench/base:1", "bench/lib:1"
SETTINGS = {
    "default": {},
    "documented": {"ANSIBLE_PIPELINING": "True", "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s"},
}


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


class Host:
    """A site host: its sshd and its engine (kind, the engine object, the address the store takes)."""

    def __init__(self, name, ssh, kind, engine, engine_host):
        self.name = name
        self.ssh = ssh
        self.kind = kind
        self.engine = engine
        self.engine_host = engine_host


def start_hosts(prefix, count, kind, engines, ssh_hosts, work):
    hosts = []
    for number in range(1, count + 1):
        name = "%s%d" % (prefix, number)
        host_kind = kind if kind != "mixed" else ("containerd" if number % 3 == 0 else "docker")
        if host_kind == "docker":
            engine = engines.dockerd()
            address = engine.host
        elif host_kind == "containerd":
            engine = engines.containerd()
            address = engine.address
        else:
            engine = os.path.join(work, "oci-" + name)
            address = engine
        hosts.append(Host(name, ssh_hosts.start(name), host_kind, engine, address))
    return hosts


def run_role(work, collections, source, hosts, ssh_hosts, release, images, settings, forks):
    inventory = os.path.join(work, "inventory.ini")
    with open(inventory, "w") as out:
        out.write("[site]\n")
        for host in hosts:
            variables = dict(ssh_hosts.inventory_vars(host.ssh, python=STOCK_PYTHON), ansible_connection="ssh",
                             rollout_engine=host.kind, rollout_engine_host=host.engine_host)
            out.write(host.name + " " + " ".join("%s=%s" % (key, json.dumps(str(value))) for key, value in variables.items()) + "\n")
    role_vars = {"rollout_images": images, "rollout_base": BASE, "rollout_lib": LIB, "rollout_source_engine_host": source.host,
                 "rollout_bundle_dir": os.path.join(work, "bundle")}
    path = os.path.join(work, "play-%d.yml" % release)
    with open(path, "w") as out:
        json.dump([{"hosts": "site", "gather_facts": False, "roles": [{"role": "airgap.images.rollout", "vars": role_vars}]}], out)
    env = BENCH_MODULES.clean_env(ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_FORKS=str(forks),
                                  ANSIBLE_LOG_PATH=os.path.join(work, "ansible-%d.log" % release), **settings)
    started = time.time()
    done = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inventory, path], capture_output=True, text=True, env=env,
                          check=False)
    elapsed = time.time() - started
    if done.returncode != 0:
        raise SystemExit("the role failed (release %d):\n%s\n%s" % (release, done.stdout[-6000:], done.stderr[-2000:]))
    shipped = [_shipped_bytes(host, done.stdout) for host in hosts]
    return elapsed, shipped


def _shipped_bytes(host, stdout):
    """Bytes the role sent to ``host``: from the line image_ship prints for it ("HOST: shipped N bytes ...")."""
    marker = "\n%s: shipped " % host.name
    if marker not in stdout:
        raise SystemExit("no report for %s in the play's output:\n%s" % (host.name, stdout[-4000:]))
    return int(stdout.split(marker, 1)[1].split(" ", 1)[0])


def ssh_command(ssh_hosts, host):
    """Plain ssh, as a shell script runs it: a connection per command."""
    return ["ssh", "-i", ssh_hosts.client_key, "-o", "UserKnownHostsFile=" + ssh_hosts.known_hosts, "-o", "BatchMode=yes",
            "root@" + host.ssh.address]


def pipeline_host(cache, source, host, ssh_hosts, images, copied, lock):
    ssh = ssh_command(ssh_hosts, host)
    staging = "/var/tmp/bench-pipeline-" + host.name
    subprocess.run(ssh + ["mkdir -p " + staging], check=True, capture_output=True)
    for image in images:
        if host.kind == "docker":
            present = subprocess.run(ssh + ["%s -H %s image inspect %s" % (DOCKER_CLI, host.engine_host, image)],
                                     capture_output=True, check=False).returncode == 0
        else:
            listed = subprocess.run(ssh + ["%s -a %s -n k8s.io images ls -q" % (CTR, host.engine_host)], capture_output=True,
                                    text=True, check=True).stdout.split()
            present = "docker.io/" + image in listed
        if present:
            continue
        tarball = os.path.join(cache, image.replace("/", "_").replace(":", "_") + ".tar.gz")
        with lock:  # the controller's cache is filled once per image
            if not os.path.exists(tarball):
                subprocess.run("%s -H %s save %s | gzip -1 > %s" % (DOCKER_CLI, source.host, image, tarball), shell=True, check=True)
        target = staging + "/" + os.path.basename(tarball)
        subprocess.run(["scp", "-q"] + ssh[1:-1] + [tarball, "root@%s:%s" % (host.ssh.address, target)], check=True, capture_output=True)
        with lock:
            copied[host.name] = copied.get(host.name, 0) + os.path.getsize(tarball)
        if host.kind == "docker":
            load = "%s -H %s load -i %s" % (DOCKER_CLI, host.engine_host, target)
        else:
            load = "gunzip -c %s | %s -a %s -n k8s.io images import -" % (target, CTR, host.engine_host)
        subprocess.run(ssh + [load + " && rm -f " + target], check=True, capture_output=True)


def run_pipeline(work, source, hosts, ssh_hosts, images):
    cache = os.path.join(work, "cache")
    os.makedirs(cache, exist_ok=True)
    copied, lock = {}, threading.Lock()
    started = time.time()
    threads = [threading.Thread(target=pipeline_host, args=(cache, source, host, ssh_hosts, [BASE, LIB] + images, copied, lock)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.time() - started, [copied.get(host.name, 0) for host in hosts]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=400, help="MB of layers in base + lib + one app (default 400)")
    parser.add_argument("--hosts", type=int, default=3, help="site hosts per tool (default 3)")
    parser.add_argument("--kind", choices=["mixed", "oci"], default="mixed",
                        help="mixed: every third host containerd, the others dockerd (default); oci: OCI layout hosts")
    parser.add_argument("--forks", type=int, default=5, help="ansible forks (default 5, Ansible's default)")
    parser.add_argument("--settings", default="default,documented", help="which SSH settings to run the role with")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (Ansible's logs are in it)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="airgap-bench-rollout-")
    engines = Engines()
    ssh_hosts = SSHHosts()
    try:
        print("starting engines and sshds, building the images (%d MB of layers in base + lib + app)" % args.size, flush=True)
        source = engines.dockerd()
        build_test_images(source, os.path.join(work, "build"), test_images(args.size))
        collections, _version = BENCH_MODULES.install_collection(work)
        settings = [name for name in args.settings.split(",") if name]
        fleets = {name: start_hosts(name[:3] + "-", args.hosts, args.kind, engines, ssh_hosts, work) for name in settings}
        theirs = start_hosts("naive-", args.hosts, args.kind, engines, ssh_hosts, work) if args.kind != "oci" else None
        rows = []
        for index, (title, images) in enumerate(RELEASES, 1):
            row = {"release": title}
            for name in settings:
                role_work = os.path.join(work, "role-" + name)
                os.makedirs(role_work, exist_ok=True)
                row[name] = run_role(role_work, collections, source, fleets[name], ssh_hosts, index, images, SETTINGS[name], args.forks)
            if theirs is not None:
                row["pipeline"] = run_pipeline(work, source, theirs, ssh_hosts, images)
            rows.append(row)
            print_row(row, settings, args.hosts, flush=True)
        print_table(rows, settings, args)
    finally:
        ssh_hosts.stop()
        engines.close()
        if args.keep:
            print("work directory kept: " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        for path in os.listdir("/var/tmp"):
            if path.startswith(("airgap-images-", "bench-pipeline-")):
                shutil.rmtree(os.path.join("/var/tmp", path), ignore_errors=True)


def print_row(row, settings, hosts, flush=False):
    parts = ["%s: %.1f s, %d bytes/host" % (name, row[name][0], sum(row[name][1]) / hosts) for name in settings + ["pipeline"] if name in row]
    print(row["release"] + ": " + "; ".join(parts), flush=flush)


def print_table(rows, settings, args):
    kinds = "two dockerd 20.10 and one containerd 1.6 per tool" if args.kind == "mixed" and args.hosts == 3 else \
        "%d %s hosts per tool" % (args.hosts, args.kind)
    print("\n%s, over SSH to sshds on loopback addresses (stock /usr/bin/python3 on the hosts), forks=%d;\n"
          "random layers: base %d MB, lib %d MB, each app %d MB" % (kinds, args.forks, args.size * 0.5, args.size * 0.35, args.size * 0.075))
    columns = ["role (%s SSH settings)" % name for name in settings] + (["naive pipeline"] if "pipeline" in rows[0] else [])
    print("| release | " + " | ".join(columns) + " | bytes per host, role / naive | role (default) / naive |")
    print("|---|" + "---:|" * len(columns) + "---:|---:|")
    for row in rows:
        cells = ["%.1f s" % row[name][0] for name in settings]
        ratio = "-"
        if "pipeline" in row:
            cells.append("%.1f s" % row["pipeline"][0])
            first = settings[0]
            ratio = "%.2f×" % (row[first][0] / row["pipeline"][0]) if row["pipeline"][0] else "-"
            per_host = "{:,} / {:,}".format(sum(row[first][1]) // args.hosts, sum(row["pipeline"][1]) // args.hosts)
        else:
            per_host = "{:,} / -".format(sum(row[settings[0]][1]) // args.hosts)
        print("| %s | %s | %s | %s |" % (row["release"], " | ".join(cells), per_host, ratio))
    for name in settings:
        print("release 2, %s settings: %.2f s per host" % (name, rows[1][name][0] / args.hosts))


if __name__ == "__main__":
    main()
