# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's modules as users do: built and installed with ansible-galaxy, driven by ansible-playbook."""

import collections
import json
import os
import re
import subprocess
import sys

from ansible_collections.airgap.images.tests.system.ansible_runtimes import clean_env, default_runtime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
RECAP_COUNTS = re.compile(r"(\w+)=(\d+)")
WARNING_LINE = re.compile(r"^.*\[(WARNING|DEPRECATION WARNING)\].*$", re.M)

PlayRun = collections.namedtuple("PlayRun", "results stdout stderr")


def build_and_install(work):
    """The collection as users get it: ``ansible-galaxy collection build`` then ``install`` into ``work``."""
    env = clean_env()
    built = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", ROOT, "--output-path", str(work), "--force"],
                           check=True, capture_output=True, text=True, env=env)
    tarball = built.stdout.strip().split()[-1]
    target = os.path.join(str(work), "collections")
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", "-p", target, tarball],
                   check=True, capture_output=True, text=True, env=env)
    assert os.path.isfile(os.path.join(target, "ansible_collections", "airgap", "images", "plugins", "modules", "image_save.py"))
    return target


class Playbook:
    """Runs tasks on localhost; each task's registered result comes back, with what ansible-playbook printed.

    ``runtime`` (tests/system/ansible_runtimes.py) is the ansible-core that runs them, and its Python the
    modules; without one, the .venv's ansible-playbook and this interpreter."""

    def __init__(self, collections, workdir, runtime=None):
        self.collections = collections
        self.workdir = workdir
        self.runtime = runtime or default_runtime()
        self.runs = 0

    def env(self):
        return clean_env(ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_RETRY_FILES_ENABLED="0",
                         ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")

    def run(self, tasks, **options):
        """(registered results, stdout): see :meth:`play` for the options."""
        done = self.play(tasks, **options)
        return done.results, done.stdout

    def play(self, tasks, check=False, diff=False, expect_failure=False, python=None, verbose=False):
        """A :class:`PlayRun`: each task's registered result, stdout and stderr. The task that collects the results
        reports ``ok``, so the recap counts only ``tasks``.  ``python``: the modules' interpreter (the runtime's);
        ``verbose``: ``-vvv``."""
        python = python or self.runtime.python
        self.runs += 1
        results = os.path.join(self.workdir, "results-%d.json" % self.runs)
        registered = []
        body = []
        for index, task in enumerate(tasks):
            name = "r%d" % index
            registered.append(name)
            body.append(dict(task, register=name, ignore_errors=expect_failure))
        collect = {"content": "{{ {%s} | to_json }}" % ", ".join("'%s': %s" % (n, n) for n in registered), "dest": results}
        body.append({"name": "results", "ansible.builtin.copy": collect, "check_mode": False, "diff": False, "changed_when": False})
        play = [{"hosts": "localhost", "gather_facts": False, "vars": {"ansible_python_interpreter": python}, "tasks": body}]
        path = os.path.join(self.workdir, "play-%d.yml" % self.runs)
        with open(path, "w") as out:
            json.dump(play, out)
        args = ["-i", "localhost,", "-c", "local", path]
        args += ["--check"] if check else []
        args += ["--diff"] if diff else []
        args += ["-vvv"] if verbose else []
        command, env = self.runtime.command("ansible-playbook", args, self.env())
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0 and not expect_failure:
            raise AssertionError("ansible-playbook failed:\n" + done.stdout[-6000:] + done.stderr[-3000:])
        with open(results) as handle:
            found = json.load(handle)
        return PlayRun([found[name] for name in registered], done.stdout, done.stderr)


def task_status(stdout, task_name, host="localhost"):
    """The word ansible-playbook printed for ``task_name`` on ``host`` (``ok``, ``changed``, ``skipping``, ``fatal``, ...).

    Fails unless the task's header is there exactly once and has a status line for ``host``.
    """
    sections = re.split(r"^(?=TASK \[|PLAY RECAP )", stdout, flags=re.M)
    found = [section for section in sections if section.startswith("TASK [%s] " % task_name)]
    if len(found) != 1:
        raise AssertionError("task %r printed %d times, not once:\n%s" % (task_name, len(found), stdout[-6000:]))
    status = re.search(r"^(\w+): \[%s\]" % re.escape(host), found[0], re.M)
    if status is None:
        raise AssertionError("no status for %s in task %r:\n%s" % (host, task_name, found[0]))
    return status.group(1)


def recap(stdout, host="localhost"):
    """The PLAY RECAP counts of ``host``: {"ok": 2, "changed": 1, "skipped": 0, ...}. Fails when there is no such line."""
    tail = stdout.split("PLAY RECAP ", 1)
    line = re.search(r"^%s\s+:(.*)$" % re.escape(host), tail[-1], re.M) if len(tail) == 2 else None
    if line is None:
        raise AssertionError("no PLAY RECAP line for %s:\n%s" % (host, stdout[-3000:]))
    return {name: int(count) for name, count in RECAP_COUNTS.findall(line.group(1))}


def warning_lines(text):
    """Lines of Ansible's output that are a [WARNING] or a [DEPRECATION WARNING]."""
    return [match.group(0) for match in WARNING_LINE.finditer(text)]
