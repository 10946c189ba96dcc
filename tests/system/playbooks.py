# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's modules as users do: built and installed with ansible-galaxy, driven by ansible-playbook."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


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


def clean_env(**extra):
    """The environment without this checkout on PYTHONPATH, so Ansible sees only the installed collection."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="0", **extra)
    return env


class Playbook:
    """Runs tasks on localhost; each task's registered result comes back, plus the recap's changed count."""

    def __init__(self, collections, workdir):
        self.collections = collections
        self.workdir = workdir
        self.runs = 0

    def env(self):
        return clean_env(ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_RETRY_FILES_ENABLED="0",
                         ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")

    def run(self, tasks, check=False, diff=False, expect_failure=False, python=sys.executable):
        self.runs += 1
        results = os.path.join(self.workdir, "results-%d.json" % self.runs)
        registered = []
        body = []
        for index, task in enumerate(tasks):
            name = "r%d" % index
            registered.append(name)
            body.append(dict(task, register=name, ignore_errors=expect_failure))
        body.append({"name": "results", "ansible.builtin.copy": {"content": "{{ {%s} | to_json }}" % ", ".join(
            "'%s': %s" % (n, n) for n in registered), "dest": results}, "check_mode": False, "diff": False})
        play = [{"hosts": "localhost", "gather_facts": False, "vars": {"ansible_python_interpreter": python}, "tasks": body}]
        path = os.path.join(self.workdir, "play-%d.yml" % self.runs)
        with open(path, "w") as out:
            json.dump(play, out)
        command = [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path]
        command += ["--check"] if check else []
        command += ["--diff"] if diff else []
        done = subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0 and not expect_failure:
            raise AssertionError("ansible-playbook failed:\n" + done.stdout[-6000:] + done.stderr[-3000:])
        with open(results) as handle:
            found = json.load(handle)
        return [found[name] for name in registered], done.stdout
