# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""make demo: the fleet rollout, end to end, without any container engine.

1. Builds a base, a lib and two application images from directories into the
   embedded OCI layout store (the "build machine"), and checks that two saves
   of them are byte-identical.
2. Runs the airgap.images.rollout role to three local hosts, each with its own
   OCI store (host2 already holds the base, host3 the base, the lib and app-a):
   each host receives only the layers it lacks.
3. Runs the same play again: nothing changes, nothing is copied.
4. Builds app-a 2.0 (a new top layer) and rolls it out: only that layer crosses.

Prints, per host and run, bytes shipped against a naive full-image copy, and
fails (exit 1) when a run does not behave as stated. With DOCKER_HOST set,
the images are built into that Docker engine and bundled from it instead.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(os.path.dirname(HERE), ".build")
sys.path.insert(0, BUILD)

# pylint: disable=wrong-import-position
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import save_archive  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_file, write_directory_layer  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore  # noqa: E402

HOSTS = ("host1", "host2", "host3")
MB = 1 << 20


def seeded_bytes(seed, size):
    block = bytes((seed * 31 + i * 7) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def directory_layer(work, name, files):
    tree = os.path.join(work, "trees", name)
    for path, data in files.items():
        full = os.path.join(tree, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as out:
            out.write(data)
    tar_path = os.path.join(work, "layers", name + ".tar")
    os.makedirs(os.path.dirname(tar_path), exist_ok=True)
    with open(tar_path, "wb") as out:
        write_directory_layer(tree, out)
    return layer_from_file(tar_path, "%s layer" % name)


def build_images(work):
    """base (4 MiB), lib (base + 8 MiB), app-a:1.0, app-b:1.0 and app-a:2.0 (lib + 1 MiB each)."""
    base = directory_layer(work, "base", {"etc/os-release": b"ID=airgap-demo\n", "bin/busybox": seeded_bytes(1, 4 * MB)})
    lib = directory_layer(work, "lib", {"usr/lib/libdemo.so": seeded_bytes(2, 8 * MB)})
    app_a = directory_layer(work, "app-a", {"app/a": seeded_bytes(3, MB)})
    app_b = directory_layer(work, "app-b", {"app/b": seeded_bytes(4, MB)})
    app_a2 = directory_layer(work, "app-a2", {"app/a": seeded_bytes(5, MB)})

    def image(layers, name, command):
        return build_image(layers, [parse_reference(name)], config={"Cmd": [command]})
    return {
        "base": image([base], "demo/base:1.0", "/bin/busybox"),
        "lib": image([base, lib], "demo/lib:1.0", "/bin/busybox"),
        "app-a:1": image([base, lib, app_a], "demo/app-a:1.0", "/app/a"),
        "app-b:1": image([base, lib, app_b], "demo/app-b:1.0", "/app/b"),
        "app-a:2": image([base, lib, app_a2], "demo/app-a:2.0", "/app/a"),
    }


def check_deterministic(work, images):
    first = save_archive(images, os.path.join(work, "check-1.tar.gz"), compression="gzip")
    second = save_archive(images, os.path.join(work, "check-2.tar.gz"), compression="gzip")
    print("two gzip saves of the images: %d bytes each, sha256 %s, identical: %s"
          % (first.size, first.sha256[:19], first.sha256 == second.sha256))
    return first.sha256 == second.sha256


def write_inventory(work):
    lines = ["[site]"]
    for host in HOSTS:
        root = os.path.join(work, "hosts", host)
        lines.append("%s ansible_connection=local ansible_python_interpreter=%s rollout_engine=oci "
                     "rollout_engine_host=%s rollout_staging_dir=%s"
                     % (host, sys.executable, os.path.join(root, "store"), os.path.join(root, "staging")))
    path = os.path.join(work, "inventory.ini")
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def write_play(work, source_engine, source_host, apps):
    reports = os.path.join(work, "reports")
    play = [
        {"name": "Roll the images out", "hosts": "site", "gather_facts": False,
         "roles": [{"role": "airgap.images.rollout", "vars": {
             "rollout_images": apps, "rollout_base": "demo/base:1.0", "rollout_lib": "demo/lib:1.0",
             "rollout_source_engine": source_engine, "rollout_source_engine_host": source_host,
             "rollout_bundle_dir": os.path.join(work, "bundle")}}]},
        {"name": "Keep each host's report for the table", "hosts": "site", "gather_facts": False, "tasks": [
            {"name": "Write the report", "delegate_to": "localhost", "changed_when": False,
             "ansible.builtin.copy": {"content": "{{ rollout_report | to_json }}",
                                      "dest": reports + "/{{ inventory_hostname }}.json", "mode": "0644"}}]},
    ]
    os.makedirs(reports, exist_ok=True)
    path = os.path.join(work, "play.yml")
    with open(path, "w") as out:
        json.dump(play, out, indent=1)
    return path, reports


def run_play(work, inventory, play):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=BUILD, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="0", ANSIBLE_LOCAL_TEMP=os.path.join(work, "tmp"))
    env.pop("PYTHONPATH", None)
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, play],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stdout[-8000:], done.stderr[-3000:])
        raise SystemExit("demo: FAILED: ansible-playbook exited %d" % done.returncode)
    return {host: int(changed) for host, changed in re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", done.stdout, re.M)}


def read_reports(reports):
    found = {}
    for host in HOSTS:
        with open(os.path.join(reports, host + ".json")) as handle:
            found[host] = json.load(handle)
    return found


def print_table(title, changed, reports):
    print("\n" + title)
    print("%-6s %8s %14s %14s %18s %8s" % ("host", "changed", "bytes shipped", "bytes skipped", "naive full copy", "saved"))
    for host in HOSTS:
        report = reports[host]
        naive = int(report["naive_bytes"])
        shipped = int(report["shipped_bytes"])
        saved = "%.1f%%" % (100.0 * (naive - shipped) / naive) if naive else "-"
        print("%-6s %8d %14d %14d %18d %8s" % (host, changed.get(host, -1), shipped, int(report["skipped_bytes"]), naive, saved))


def seed_hosts(work, images):
    """host1 has nothing (its store is made by its first load); host2 holds the base; host3 the base, the lib and app-a 1.0."""
    LayoutStore(os.path.join(work, "hosts", "host2", "store")).import_images([images["base"]])
    LayoutStore(os.path.join(work, "hosts", "host3", "store")).import_images([images["base"], images["lib"], images["app-a:1"]])


def source_store(work, images):
    """The build machine: a Docker engine when DOCKER_HOST names one, else the embedded OCI store."""
    if os.environ.get("DOCKER_HOST"):
        store = open_store("docker", os.environ["DOCKER_HOST"])
        store.load_images(list(images.values()))
        print("built the images into the Docker engine at %s" % os.environ["DOCKER_HOST"])
        return "docker", os.environ["DOCKER_HOST"]
    root = os.path.join(work, "build-store")
    LayoutStore(root).import_images(list(images.values()))
    print("built the images into the embedded OCI store %s (no engine needed)" % root)
    return "oci", root


def main():
    work = tempfile.mkdtemp(prefix="airgap-demo-")
    failures = []
    try:
        started = time.time()
        images = build_images(work)
        if not check_deterministic(work, list(images.values())):
            failures.append("two saves of the same images differ")
        engine, host = source_store(work, images)
        seed_hosts(work, images)
        inventory = write_inventory(work)
        layer_bytes = {name: image.layers[-1].size for name, image in images.items()}

        runs = [("1. first rollout of app-a 1.0 and app-b 1.0", ["demo/app-a:1.0", "demo/app-b:1.0"]),
                ("2. the same play again", ["demo/app-a:1.0", "demo/app-b:1.0"]),
                ("3. app-a 2.0 (one new 1 MiB layer)", ["demo/app-a:2.0", "demo/app-b:1.0"])]
        results = []
        for title, apps in runs:
            play, reports = write_play(work, engine, host, apps)
            changed = run_play(work, inventory, play)
            results.append((changed, read_reports(reports)))
            print_table(title, *results[-1])

        failures += check_runs(results, layer_bytes)
        print("\ndemo finished in %.1f s" % (time.time() - started))
    finally:
        shutil.rmtree(work)
    for failure in failures:
        print("demo: FAILED: %s" % failure)
    return 1 if failures else 0


def check_runs(results, layer_bytes):
    """What the demo claims: a re-run changes and ships nothing; an update ships the new layer's file and nothing else."""
    failures = []
    (_first_changed, first), (second_changed, second), (_third_changed, third) = results
    if first["host1"]["shipped_bytes"] <= first["host3"]["shipped_bytes"]:
        failures.append("host1 (empty) should receive more than host3 (which held most layers)")
    for host in HOSTS:
        if second_changed.get(host) != 0 or int(second[host]["shipped_bytes"]) != 0:
            failures.append("%s: the second run changed %s task(s) and shipped %s bytes" % (host, second_changed.get(host), second[host]["shipped_bytes"]))
        shipped = int(third[host]["shipped_bytes"])
        if shipped != layer_bytes["app-a:2"]:
            failures.append("%s: the update shipped %d bytes, expected exactly the new layer (%d)" % (host, shipped, layer_bytes["app-a:2"]))
    return failures


if __name__ == "__main__":
    sys.exit(main())
