# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""When a module's task may run in Ansible's worker process (tests/system/test_status_words.py runs image_save both
ways through ansible-playbook)."""

import signal
import sys
import types

from ansible_collections.airgap.images.plugins.plugin_utils import in_worker
from ansible_collections.airgap.images.plugins.plugin_utils.in_worker import runs_here


class Templar:
    @staticmethod
    def template(value):
        return value.replace("{{ ansible_playbook_python }}", sys.executable)


def action(connection="ansible.builtin.local", become=False, async_val=0, environment=None, delegate_to=None):
    task = types.SimpleNamespace(async_val=async_val, environment=environment if environment is not None else [],
                                 delegate_to=delegate_to)
    return types.SimpleNamespace(_connection=types.SimpleNamespace(_load_name=connection),
                                 _play_context=types.SimpleNamespace(become=become), _task=task, _templar=Templar())


def test_a_local_task_with_nothing_asked_of_a_process_runs_here():
    assert runs_here(action(), {})
    assert runs_here(action(), {"ansible_python_interpreter": sys.executable})
    assert runs_here(action(), {"ansible_python_interpreter": "{{ ansible_playbook_python }}"})
    assert runs_here(action(), {"ansible_python_interpreter": "auto_silent"})
    assert runs_here(action(environment=[{}, None]), {})


def test_anything_a_separate_process_gives_makes_it_a_module_run():
    assert not runs_here(action(connection="ansible.builtin.ssh"), {})
    assert not runs_here(action(become=True), {})
    assert not runs_here(action(async_val=30), {})
    assert not runs_here(action(environment=[{"HTTPS_PROXY": "http://proxy:3128"}]), {})
    assert not runs_here(action(), {"ansible_python_interpreter": "/usr/bin/python3.9-elsewhere"})


def test_a_virtualenv_s_python_is_not_the_system_s_though_one_links_to_the_other(tmp_path):
    system = tmp_path / "usr" / "bin" / "python3"
    venv = tmp_path / "venv" / "bin"
    system.parent.mkdir(parents=True)
    venv.mkdir(parents=True)
    system.write_text("")
    (venv / "python3").symlink_to(system)
    (venv / "python").symlink_to(venv / "python3")
    assert in_worker._same_python(str(venv / "python"), str(venv / "python3"))
    assert not in_worker._same_python(str(system), str(venv / "python3"))


def test_a_delegated_task_follows_the_delegate_s_interpreter_not_the_host_s():
    task_vars = {"ansible_python_interpreter": "/usr/bin/python3-on-the-host",
                 "ansible_delegated_vars": {"localhost": {"ansible_python_interpreter": sys.executable}}}
    assert runs_here(action(delegate_to="localhost"), task_vars)
    task_vars["ansible_delegated_vars"]["localhost"]["ansible_python_interpreter"] = "/opt/other/bin/python3"
    assert not runs_here(action(delegate_to="localhost"), task_vars)


def test_the_worker_keeps_its_own_sigterm_handler_and_module_globals():
    def handler(_signum, _frame):
        pass
    before = signal.signal(signal.SIGTERM, handler)
    saved = in_worker.basic._ANSIBLE_ARGS
    try:
        with in_worker._module_globals(b'{"ANSIBLE_MODULE_ARGS": {}}'), in_worker._signal_handlers_kept():
            assert in_worker.basic._ANSIBLE_ARGS == b'{"ANSIBLE_MODULE_ARGS": {}}'
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGTERM) is handler
        assert in_worker.basic._ANSIBLE_ARGS == saved
    finally:
        signal.signal(signal.SIGTERM, before)
