# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a save from Docker or Podman spends its time, beside the engine's own save of the same images, by the core alone.

Builds base, lib and two apps in a private dockerd (as bench/bench_separate.py does, ``--size`` MB of layers; with
``--engine podman`` they are then ``docker save``d and loaded into a private Podman 4.3 behind its API service), then
runs, ``--rounds`` times and alternating, each in a process of its own after ``sync``: ``docker save -o`` (or ``podman
save -m -o``) of the two apps, and a Python process that saves them with the core (``operations.run_save`` into an
uncompressed docker-archive) and prints how long each phase took: the export into the temp file beside the
destination (``DockerStore.export``) and when its first byte arrived, our archive written from it (``save_archive``,
fsync included) and the fsync alone. Every run also prints the CPU seconds the daemon (dockerd, or Podman's service)
spent meanwhile, those of the run (with its children), and how many of the machine's CPU seconds went idle.
With ``--task``, each round also runs the same save as an ``ansible-playbook`` of one image_save task (in Ansible's
worker, as bench_modules.py runs it) and prints the task's own ``duration_s``. With ``--separate`` (Docker only), the
runs are ``docker save -o`` of the apps, base and lib, the core writing image_separate's gzip parts of them (the export,
then ``separated.write``), and with ``--task`` the image_separate task.

    make bench-save-phases    # or: python bench/bench_save_phases.py --size 800 --rounds 3 [--task] [--engine podman] [--separate]
"""

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

# bench_separate.py sits beside this script; importing it also puts the collection on sys.path
import bench_separate as BENCH_SEPARATE  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.airgap.images.tests.system.engines import DOCKER_CLI, Engines  # noqa: E402  pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The saving process: the phases are timed by wrapping the functions that do them (the start of both scripts).
CORE_START = r'''
import os, sys, time
spent = {}

def timed(owner, name, label):
    function = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0) + time.time() - started
    setattr(owner, name, wrapper)

from ansible_collections.airgap.images.plugins.module_utils import operations
from ansible_collections.airgap.images.plugins.module_utils.stores import docker, store
timed(docker.DockerStore, "export", "export")
stream_export = docker.DockerStore._stream_export


class FirstByte:
    """The export's sink, noting when the engine's first bytes arrive (Docker 20.10 sends none until its temp copy of
    the images is complete)."""

    def __init__(self, sink):
        self.sink, self.started = sink, time.time()

    def write(self, data):
        spent.setdefault("export's first byte", time.time() - self.started)
        return self.sink.write(data)


docker.DockerStore._stream_export = lambda self, names, sink: stream_export(self, names, FirstByte(sink))
timed(os, "fsync", "of which fsync")
engine = store.open_store(sys.argv[1], sys.argv[2])
started = time.time()
'''

# argv: engine, host, destination, the images
SAVE_CORE = CORE_START + r'''
timed(operations, "save_archive", "archive written")
operations.run_save(engine, operations.find_wanted(engine, sys.argv[4:]), sys.argv[3], "docker-archive", "none", None)
print("save %.2f s: " % (time.time() - started) + ", ".join("%s %.2f s" % item for item in spent.items()))
'''

# argv: engine, host, destination, the apps, base, lib; as image_separate writes the parts (gzip, its default)
SEPARATE_CORE = CORE_START + r'''
from ansible_collections.airgap.images.plugins.modules import image_separate
from ansible_collections.airgap.images.plugins.module_utils.formats import separated
timed(separated, "write", "parts written")
params = {"images": sys.argv[4:-2], "lib": sys.argv[-1], "rename": None, "compression_level": None}
image_separate.write_parts(engine, None, sys.argv[4:], params, sys.argv[3], "gzip")
print("separate %.2f s: " % (time.time() - started) + ", ".join("%s %.2f s" % item for item in spent.items()))
'''


def docker_save(host, names):
    """The command saving ``names`` from the dockerd at ``host`` into a destination, and its environment."""
    return lambda dest: ([DOCKER_CLI, "-H", host, "save", "-o", dest] + names, None)


def cpu_seconds(pid):
    """(the CPU seconds of process ``pid``, those of every command run so far, idle CPU seconds of the machine, all CPU seconds)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open("/proc/stat", encoding="ascii") as handle:
        machine = [int(value) for value in handle.readline().split()[1:]]
    return ((int(fields[11]) + int(fields[12])) / tick, children.ru_utime + children.ru_stime,
            (machine[3] + machine[4]) / tick, sum(machine[:8]) / tick)


def task_command(work, module, options):
    """ansible-playbook of one airgap.images ``module`` task (in Ansible's worker), then a debug task printing its
    ``duration_s`` and ``changed``."""
    play = os.path.join(work, module + ".yml")
    with open(play, "w", encoding="utf-8") as out:
        json.dump([{"hosts": "localhost", "gather_facts": False, "vars": {"ansible_python_interpreter": sys.executable},
                    "tasks": [{"airgap.images." + module: options, "register": "done"},
                              {"ansible.builtin.debug": {"msg": "task duration_s {{ done.duration_s }} changed {{ done.changed }}"}}]}],
                  out)
    return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local", play]


def start_engine(engines, kind, work, size, generation=None):
    """The apps in a private engine of ``kind``: (host, its daemon's pid, the names to save, the native save command
    for a destination). For Podman they are built in a dockerd, then ``docker save``d and ``podman load``ed."""
    dockerd = engines.dockerd(generation=generation if kind == "docker" else None)
    BENCH_SEPARATE.build_images(dockerd, work, size)
    apps = list(BENCH_SEPARATE.APPS)
    if kind == "docker":
        return dockerd.host, dockerd.pid, apps, docker_save(dockerd.host, apps)
    saved = os.path.join(work, "docker-save.tar")
    subprocess.run([DOCKER_CLI, "-H", dockerd.host, "save", "-o", saved] + apps, check=True, capture_output=True)
    engines.stop(dockerd)
    shutil.rmtree(dockerd.dir, ignore_errors=True)
    podman = engines.podman()
    host = "unix://" + podman.service()
    podman.cli("load", "-i", saved, timeout=1800)
    os.unlink(saved)
    names = ["localhost/" + app for app in apps]  # podman's name for a familiar docker-archive tag
    return host, podman._service.pid, names, lambda dest: (podman.command(["save", "-m", "-o", dest] + names), podman.env())  # pylint: disable=protected-access


def collection_path(tree, work):
    """A directory whose ansible_collections/airgap/images is ``tree``, for PYTHONPATH."""
    top = os.path.join(work, "collections-%s" % abs(hash(tree)))
    link = os.path.join(top, "ansible_collections", "airgap", "images")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link))
        os.symlink(tree, link)
    return top


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size", type=int, default=800, help="the images' layers in MB (default 800)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each (default 3)")
    parser.add_argument("--engine", choices=("docker", "podman"), default="docker",
                        help="Docker 20.10 (default) or Podman 4.3 through its API service")
    parser.add_argument("--generation", help="for docker: the engine generation (docker20, the default, docker28, "
                        "docker28-containerd-store; tests/system/matrix.py)")
    parser.add_argument("--task", action="store_true", help="also run the save as an image_save task of ansible-playbook")
    parser.add_argument("--separate", action="store_true",
                        help="docker only: time image_separate of the apps on base and lib (gzip) instead of a save, beside "
                             "docker save -o of the four images")
    parser.add_argument("--tree", action="append", default=[],
                        help="a checkout of the collection to time (repeatable; default this one): every round runs "
                             "each, to compare two versions in one run")
    args = parser.parse_args()
    if args.separate and args.engine != "docker":
        raise SystemExit("bench_save_phases: --separate needs --engine docker (Podman is given the apps alone)")
    trees = [os.path.abspath(tree) for tree in args.tree] or [ROOT]
    work = tempfile.mkdtemp(prefix="airgap-bench-save-phases-", dir="/var/tmp")
    engines = Engines()
    try:
        host, daemon_pid, names, native = start_engine(engines, args.engine, work, args.size, args.generation)
        dest = os.path.join(work, "out.tar")
        core, module, options = SAVE_CORE, "image_save", {"images": names, "dest": dest}
        if args.separate:
            names = names + [BENCH_SEPARATE.BASE, BENCH_SEPARATE.LIB]
            native = docker_save(host, names)
            dest = os.path.join(work, "separated")
            core, module = SEPARATE_CORE, "image_separate"
            options = {"images": names[:-2], "base": names[-2], "lib": names[-1], "dest": dest}
        runs = [("%s save" % args.engine, ) + native(dest + ".tar" if args.separate else dest)]
        for tree in trees:
            runs.append(("core of " + os.path.basename(tree), [sys.executable, "-c", core, args.engine, host, dest] + names,
                         dict(os.environ, PYTHONPATH=collection_path(tree, work))))
            if args.task:
                runs.append(("task of " + os.path.basename(tree),
                             task_command(work, module, dict(options, engine=args.engine, engine_host=host)),
                             dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collection_path(tree, work))))
        for round_number in range(1, args.rounds + 1):
            for label, command, env in runs:
                for path in (dest, dest + ".tar"):
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    elif os.path.exists(path):
                        os.unlink(path)
                before = cpu_seconds(daemon_pid)
                row = BENCH_SEPARATE.measure(label, label, command, 0, None, env)  # after sync, as bench_modules
                cpu = [after - earlier for after, earlier in zip(cpu_seconds(daemon_pid), before)]
                printed = row["stdout_tail"].strip()
                if label.startswith("task of "):
                    printed = " ".join(re.findall(r"task duration_s [0-9.]+", printed))
                print("round %d  %-20s %6.2f s  %s" % (round_number, label, row["seconds"], printed), flush=True)
                print("         CPU s: the daemon %.2f, the command %.2f, the machine idle %.2f of %.2f" % tuple(cpu), flush=True)
    finally:
        engines.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
