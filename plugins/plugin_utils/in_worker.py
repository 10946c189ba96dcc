# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one of this collection's modules inside Ansible's worker process when its task runs on the controller.

A module run on the controller costs Ansible an AnsiballZ payload (every module_utils file read and compiled), a new
Python process and the imports again, about 0.7 s on a 2-core machine before the module does anything. A task whose
connection is ``local`` and which asks for nothing a separate process gives (become, async, an ``environment``, a
Python other than the controller's) runs the module's own ``main()`` here instead: the same AnsibleModule, the same
arguments (Ansible's internal ones included), the same JSON result parsed the way ``_execute_module`` parses it.
"""

import contextlib
import importlib
import inspect
import io
import json
import os
import signal
import sys

from ansible.module_utils import basic
from ansible.plugins.action import ActionBase
from ansible.plugins.action.normal import ActionModule as NormalAction
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

try:  # ansible-core >= 2.19 serialises module arguments and results by profile
    from ansible.module_utils.common.json import Direction, get_module_encoder
    PROFILE = "legacy"

    def _encoder():
        return get_module_encoder(PROFILE, Direction.CONTROLLER_TO_MODULE)
except ImportError:
    from ansible.module_utils.common.json import AnsibleJSONEncoder
    PROFILE = None

    def _encoder():
        return AnsibleJSONEncoder

display = Display()
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local", "ansible.legacy.local")
MODULES = "ansible_collections.airgap.images.plugins.modules."


class ModuleAction(NormalAction):
    """The action of a module named like it: in this worker when :func:`runs_here` says so, else as a module."""

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        if not runs_here(self, task_vars):
            return super().run(tmp, task_vars)
        result = ActionBase.run(self, tmp, task_vars)
        module_name = self._task.resolved_action or self._task.action
        display.vvv("running %s in the worker process (connection local)" % module_name)
        return merge_hash(result, run_module_here(self, module_name, dict(self._task.args), task_vars))


def runs_here(action, task_vars):
    """True when the task's module may run in this process: local connection, no become, no async, no environment,
    and no ``ansible_python_interpreter`` other than the one running Ansible."""
    task = action._task
    if _connection_name(action._connection) not in LOCAL_CONNECTIONS or action._play_context.become or task.async_val:
        return False
    environments = task.environment if isinstance(task.environment, list) else [task.environment]
    if any(environments):
        return False
    host_vars = task_vars.get("ansible_delegated_vars", {}).get(task.delegate_to, {}) if task.delegate_to else task_vars
    interpreter = host_vars.get("ansible_python_interpreter")
    if interpreter is None:
        return True
    interpreter = str(action._templar.template(interpreter))
    return interpreter.startswith("auto") or _same_python(interpreter, sys.executable)


def _same_python(one, other):
    """The same binary in the same directory: a virtualenv's ``python`` and ``python3`` are one Python, while its
    python and the system's are one binary (a symlink) with other packages."""
    return os.path.realpath(one) == os.path.realpath(other) and \
        os.path.realpath(os.path.dirname(os.path.abspath(one))) == os.path.realpath(os.path.dirname(os.path.abspath(other)))


def _connection_name(connection):
    return getattr(connection, "_load_name", None) or getattr(connection, "transport", None)


def run_module_here(action, module_name, module_args, task_vars):
    """The result of ``module_name``'s ``main()`` run here with ``module_args``, as ``_execute_module`` returns it."""
    action._update_module_args(module_name, module_args, task_vars)
    encoded = json.dumps({"ANSIBLE_MODULE_ARGS": module_args}, cls=_encoder()).encode()
    main = importlib.import_module(MODULES + module_name.rsplit(".", 1)[-1]).main
    output, code = io.StringIO(), 0
    with _module_globals(encoded), _signal_handlers_kept(), contextlib.redirect_stdout(output):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    out = output.getvalue()
    return parsed_module_output(action, dict(rc=code, stdout=out, stdout_lines=out.splitlines(), stderr="", stderr_lines=[]))


def parsed_module_output(action, returned):
    """The module's output parsed and cleaned as ``_execute_module`` does on each ansible-core: 2.16-2.20 parse to a
    dict; 2.21 to a task result object that removes its internal keys and gives the dict itself."""
    if "profile" in inspect.signature(action._parse_returned_data).parameters:
        parsed = action._parse_returned_data(returned, PROFILE)
    else:
        parsed = action._parse_returned_data(returned)
    if hasattr(parsed, "as_result_dict"):
        parsed.remove_internal_keys()
        return parsed.as_result_dict(for_round_trip=True)
    from ansible.vars.clean import remove_internal_keys  # pylint: disable=import-outside-toplevel
    remove_internal_keys(parsed)
    return parsed


@contextlib.contextmanager
def _module_globals(encoded):
    """AnsibleModule reads its arguments (and, from 2.19, their serialisation profile) from module globals."""
    saved = {name: getattr(basic, name) for name in ("_ANSIBLE_ARGS", "_ANSIBLE_PROFILE") if hasattr(basic, name)}
    basic._ANSIBLE_ARGS = encoded
    if "_ANSIBLE_PROFILE" in saved:
        basic._ANSIBLE_PROFILE = PROFILE
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(basic, name, value)


@contextlib.contextmanager
def _signal_handlers_kept():
    """Modules turn SIGTERM into an exception for their own clean-up; the worker gets its own handler back after."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
