# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules through ansible-playbook beside the docker CLI and community.docker: time, peak RSS and idempotency.

Starts a private dockerd (tests/system/engines.py) and builds one image of
``--size`` MB in four layers there, as bench/bench_archive.py does.  Builds and
installs this collection with ``ansible-galaxy collection build/install`` (as
tests/system/test_modules.py does) and runs each operation as its own
``ansible-playbook -i localhost, -c local`` under GNU time:

* save: ``docker save -o``, airgap.images.image_save (first run, then again with
  the archive in place), community.docker.docker_image_export (same two runs);
* load: ``docker load -i``, airgap.images.image_load (first run after ``docker rmi``,
  then again with the image present), community.docker.docker_image_load (same).

Every load reads docker save's archive.  The table gives wall seconds (with the
ansible-playbook start-up, shown on its own below the table), MB/s of the
uncompressed image, output bytes, and peak RSS: GNU time's ``%M`` for the
ansible-playbook process tree is the largest single process in it (usually the
controller), so the module process's own peak RSS is also measured (the task
runs under an interpreter wrapper that is GNU time around the venv's python)
and printed with each module task's ``changed``.

community.docker comes from the ``ansible`` package on PyPI (12.x pairs with
ansible-core 2.19): when ``.build/bench-collections`` does not hold it yet, the
wheel is downloaded (``pip download --no-deps``, or ``--ansible-wheel FILE``)
and only its community.docker (and that collection's one dependency) is
extracted there; ansible-core is left alone.

    make bench-modules    # or: python bench/bench_modules.py --size 400

The exit status is 1 when a re-run of an airgap.images module reports changed.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


# bench_archive.py sits beside this script (sys.path[0]); importing it also puts the collection on sys.path
import bench_archive as BENCH_ARCHIVE  # noqa: E402  pylint: disable=wrong-import-position
ROOT = BENCH_ARCHIVE.ROOT
GNU_TIME = BENCH_ARCHIVE.GNU_TIME
collection_path = BENCH_ARCHIVE.collection_path
measure = BENCH_ARCHIVE.measure
print_table = BENCH_ARCHIVE.print_table

from ansible_collections.airgap.images.tests.system.engines import DOCKER_CLI, Engines  # noqa: E402  pylint: disable=wrong-import-position

IMAGE = "bench/big:1"
BIN = os.path.dirname(sys.executable)
ANSIBLE_REQUIREMENT = "ansible>=12,<13"  # the ansible package release that pairs with ansible-core 2.19
BENCH_COLLECTIONS = os.path.join(ROOT, ".build", "bench-collections")  # .build/ is gitignored and left out of the galaxy build
WHEEL_DIR = os.path.join(ROOT, ".build", "bench-wheel")
EXTRACT = ("ansible_collections/community/docker/", "ansible_collections/community/library_inventory_filtering_v1/")
MARKER = os.path.join(BENCH_COLLECTIONS, "ansible_collections", "community", "docker", "MANIFEST.json")


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


def ensure_community_docker(wheel=None):
    """Extract community.docker from the ansible wheel into BENCH_COLLECTIONS unless it is there; its version."""
    if os.path.isfile(MARKER):
        return collection_version(MARKER)
    wheel = wheel or find_or_download_wheel()
    say("extracting community.docker from %s into %s" % (wheel, BENCH_COLLECTIONS))
    os.makedirs(os.path.dirname(BENCH_COLLECTIONS), exist_ok=True)
    staging = tempfile.mkdtemp(prefix="bench-collections-", dir=os.path.dirname(BENCH_COLLECTIONS))
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(EXTRACT):
                    archive.extract(name, staging)
        if not os.path.isfile(os.path.join(staging, os.path.relpath(MARKER, BENCH_COLLECTIONS))):
            raise SystemExit("bench_modules: %s has no ansible_collections/community/docker" % wheel)
        if os.path.isdir(BENCH_COLLECTIONS):
            shutil.rmtree(BENCH_COLLECTIONS)
        os.rename(staging, BENCH_COLLECTIONS)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    version = collection_version(MARKER)
    say("community.docker %s is in %s" % (version, BENCH_COLLECTIONS))
    return version


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
    """Runs one task per ansible-playbook under GNU time; the row gets the task's result and the module process's peak RSS."""

    def __init__(self, work, collections, image_bytes):
        self.work = work
        self.env = clean_env(ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(collections))
        self.image_bytes = image_bytes
        self.runs = 0

    def run(self, label, tool, task, output=None):
        self.runs += 1
        stem = os.path.join(self.work, "run%d" % self.runs)
        rss_file, results = stem + ".rss", stem + ".json"
        wrapper = stem + "-python"
        with open(wrapper, "w", encoding="utf-8") as out:  # the module's own peak RSS: GNU time around the interpreter
            out.write('#!/bin/sh\nexec %s -a -o %s -f "%%e %%M" %s "$@"\n' % (GNU_TIME, rss_file, sys.executable))
        os.chmod(wrapper, 0o755)
        play = [{"hosts": "localhost", "gather_facts": False, "vars": {"ansible_python_interpreter": sys.executable}, "tasks": [
            dict(task, register="result", vars={"ansible_python_interpreter": wrapper}),
            {"name": "results", "ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": results}},
        ]}]
        path = stem + ".yml"
        with open(path, "w", encoding="utf-8") as out:
            json.dump(play, out)
        row = measure(label, tool, [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path],
                      self.image_bytes, output, self.env)
        with open(results, encoding="utf-8") as handle:
            result = json.load(handle)
        with open(rss_file, encoding="utf-8") as handle:  # "seconds kB" per python the wrapper ran (one, unless Ansible retried)
            runs = [fields for fields in (line.split() for line in handle) if len(fields) == 2 and fields[1].isdigit()]
        row["module_seconds"] = sum(float(seconds) for seconds, dummy in runs)
        row["module_rss_mb"] = max(int(peak_kb) for dummy, peak_kb in runs) / 1024.0
        row["label"] = label
        row["changed"] = result["changed"]
        row["msg"] = str(result.get("msg") or "")
        row["operation"] = "%s: changed=%s" % (label, json.dumps(row["changed"]))
        return row, result


def print_module_rows(rows):
    print("\nmodule tasks: changed, and the module process alone (the AnsiballZ python under GNU time): wall seconds, peak RSS")
    header = "%-16s %-30s %8s %9s %13s  %s" % ("operation", "tool", "changed", "module s", "module RSS MB", "msg")
    print(header)
    print("-" * len(header))
    for row in rows:
        if "changed" in row:
            fields = (row["label"], row["tool"], json.dumps(row["changed"]), row["module_seconds"], row["module_rss_mb"], row["msg"][:80])
            print("%-16s %-30s %8s %9.2f %13.1f  %s" % fields)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=400, help="image size in MB (default 400)")
    parser.add_argument("--ansible-wheel", help="an ansible 12.x wheel to take community.docker from, instead of downloading one")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args()
    community_version = ensure_community_docker(args.ansible_wheel)
    work = tempfile.mkdtemp(prefix="airgap-bench-modules-")
    engines = Engines()
    try:
        collections, our_version = install_collection(work)
        say("starting a private dockerd and building a %d MB image" % args.size)
        dockerd = engines.dockerd()
        image_bytes = BENCH_ARCHIVE.build_image(dockerd, work, args.size, IMAGE)
        image_id = dockerd.inspect(IMAGE)[0]["Id"]
        runner = Runner(work, [collections, BENCH_COLLECTIONS], image_bytes)
        docker = [DOCKER_CLI, "-H", dockerd.host]
        docker_env = dict(os.environ, DOCKER_CONFIG=dockerd.config_dir)
        saved, ours, theirs = (os.path.join(work, name) for name in ("docker.tar", "ours.tar", "community.tar"))
        our_save = {"airgap.images.image_save": {"images": [IMAGE], "dest": ours, "engine": "docker", "engine_host": dockerd.host}}
        their_save = {"community.docker.docker_image_export": {"names": [IMAGE], "path": theirs, "docker_host": dockerd.host}}
        our_load = {"airgap.images.image_load": {"src": saved, "engine": "docker", "engine_host": dockerd.host}}
        their_load = {"community.docker.docker_image_load": {"path": saved, "docker_host": dockerd.host}}

        say("timing the saves")
        rows = [measure("save (engine → file)", "docker save -o", docker + ["save", "-o", saved, IMAGE], image_bytes, saved, docker_env)]
        row, result = runner.run("save, first run", "airgap image_save", our_save, ours)
        rows.append(row)
        if [image["id"] for image in result["images"]] != [image_id]:
            raise SystemExit("bench_modules: image_save wrote %r, not %s" % (result["images"], image_id))
        rows.append(runner.run("save, re-run", "airgap image_save", our_save, ours)[0])
        rows.append(runner.run("save, first run", "community docker_image_export", their_save, theirs)[0])
        rows.append(runner.run("save, re-run", "community docker_image_export", their_save, theirs)[0])

        say("timing the loads (each reads docker save's archive)")
        dockerd.cli("rmi", IMAGE)
        rows.append(measure("load (file → engine)", "docker load -i", docker + ["load", "-i", saved], image_bytes, None, docker_env))
        for tool, task in (("airgap image_load", our_load), ("community docker_image_load", their_load)):
            dockerd.cli("rmi", IMAGE)
            rows.append(runner.run("load after rmi", tool, task)[0])
            if dockerd.inspect(IMAGE)[0]["Id"] != image_id:
                raise SystemExit("bench_modules: %s did not load %s as %s" % (tool, IMAGE, image_id))
            rows.append(runner.run("load, re-run", tool, task)[0])

        baseline = runner.run("no-op", "ansible.builtin.ping", {"ansible.builtin.ping": {}})[0]
        print_table(rows, image_bytes)
        print_module_rows(rows)
        print("\nairgap = airgap.images %s built from %s; community = community.docker %s (%s)"
              % (our_version, ROOT, community_version, os.path.relpath(BENCH_COLLECTIONS, ROOT)))
        print("ansible-playbook with a no-op task (ansible.builtin.ping) and the results copy: %.2f s, peak RSS %.1f MB (module %.2f s, %.1f MB);"
              % (baseline["seconds"], baseline["peak_rss_mb"], baseline["module_seconds"], baseline["module_rss_mb"]))
        print("every module row includes that start-up. MB/s is image size / wall time on every row, also where nothing was transferred.")
        if args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump(rows + [baseline], out, indent=1)
        ours_rerun = [row for row in rows if row["tool"].startswith("airgap") and row["label"].endswith("re-run")]
        if any(row["changed"] for row in ours_rerun):
            print("FAIL: a re-run of an airgap.images module reported changed")
            return 1
        return 0
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
