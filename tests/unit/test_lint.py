# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout role passes ansible-lint at its strictest profile."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def collections_path():
    """Where ``ansible_collections/airgap/images`` is found: the tree's parents, or the Makefile's .build link."""
    parts = ROOT.split(os.sep)
    if len(parts) > 3 and parts[-3] == "ansible_collections":
        return os.sep.join(parts[:-3])
    return os.path.join(ROOT, ".build")


def test_the_rollout_role_is_ansible_lint_clean_at_the_production_profile():
    bin_dir = os.path.dirname(sys.executable)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="0", NO_COLOR="1",
               PATH=bin_dir + os.pathsep + env.get("PATH", ""))
    done = subprocess.run([os.path.join(bin_dir, "ansible-lint"), "--offline", "--profile", "production", "--strict",
                           os.path.join("roles", "rollout")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert "0 failure(s), 0 warning(s)" in done.stdout + done.stderr
