# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Call one function of this collection's module_utils on the host: one pipelined Python process, no module payload.

A module run costs Ansible an AnsiballZ payload built on the controller (every module_utils file the module reaches, and
``ansible.module_utils.basic`` with its own, read and compiled: 0.3-0.45 s on a 2-core machine, once per run) and, on
the host, Python compiling all of it again as it imports it (``basic`` alone 0.14 s of CPU). A call that needs none of
``AnsibleModule`` (its arguments already checked by the action) sends instead a short script on the standard input of
the host's Python: the collection's module_utils sources, compressed, served to ``import`` from memory (only what the
call imports is compiled), the call's name and its arguments. Its output is the JSON result a module prints, parsed the
way Ansible parses a module's.

It runs where Ansible would pipeline the module (``ActionBase._is_pipelining_enabled``: a connection that pipelines, no
``su``, no kept remote files, no async), with the host's Python chosen as Ansible chooses it for modules
(``ansible_python_interpreter``, or interpreter discovery, whose finding the caller returns as Ansible does) and the
task's ``environment``. Anywhere else :func:`call_on_host` returns None, and the caller runs the module.
"""

import base64
import json
import os
import zlib

from ansible.errors import AnsibleError

from ansible_collections.airgap.images.plugins.plugin_utils.in_worker import parsed_module_output

PACKAGE = "ansible_collections.airgap.images.plugins.module_utils"
MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")

# The host's side. ``CALL`` names a function of module_utils ("loading.store_info") that takes ``PARAMS`` and returns
# the result; an ImageError is a failure with its message, anything else an unexpected error with its traceback.
SCRIPT = '''\
import binascii, importlib.util, json, sys, traceback, zlib
SOURCES = json.loads(zlib.decompress(binascii.a2b_base64(%(sources)r)).decode("utf-8"))
CALL, PARAMS = json.loads(%(call)r)
PACKAGE = %(package)r


class Sources:  # a meta path finder and its loader (importlib.abc costs 10 ms to import)
    def find_spec(self, name, path=None, target=None):
        if name not in SOURCES:
            return None
        return importlib.util.spec_from_loader(name, self, is_package=SOURCES[name][0])

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        is_package, source = SOURCES[module.__name__]
        exec(compile(source, "<airgap.images>/" + module.__name__.replace(".", "/") + ".py", "exec"), module.__dict__)


def main():
    sys.meta_path.insert(0, Sources())
    from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
    where, name = CALL.rsplit(".", 1)
    try:
        result = getattr(importlib.import_module(PACKAGE + "." + where), name)(PARAMS)
    except ImageError as err:
        result = dict(failed=True, changed=False, msg=str(err))
    except Exception as err:
        result = dict(failed=True, changed=False, msg="unexpected error: %%s" %% err, exception=traceback.format_exc())
    print(json.dumps(result))


main()
'''

_sources = {}


def module_utils_sources():
    """Every module_utils file by its dotted name, with whether it is a package, as compressed, base64-encoded JSON;
    made once per process (and again when a file changed)."""
    files = sorted(os.path.join(folder, name) for folder, _dirs, names in os.walk(MODULE_UTILS)
                   for name in names if name.endswith(".py"))
    key = tuple((path, os.stat(path).st_mtime_ns) for path in files)
    if key not in _sources:
        sources = {}
        parts = PACKAGE.split(".")
        for depth in range(1, len(parts) + 1):
            sources[".".join(parts[:depth])] = (True, "")
        for path in files:
            relative = os.path.relpath(path, MODULE_UTILS)[:-len(".py")].split(os.sep)
            is_package = relative[-1] == "__init__"
            name = ".".join([PACKAGE] + (relative[:-1] if is_package else relative))
            with open(path, encoding="utf-8") as source:
                sources[name] = (is_package, source.read())
        packed = zlib.compress(json.dumps(sources, sort_keys=True).encode("utf-8"), 6)
        _sources.clear()
        _sources[key] = base64.b64encode(packed).decode("ascii")
    return _sources[key]


def script(call, params):
    """The Python source the host runs for ``call`` (``"loading.store_info"``) with ``params``."""
    return SCRIPT % dict(sources=module_utils_sources(), call=json.dumps([call, params]), package=PACKAGE)


def call_on_host(action, call, params, task_vars):
    """The result of ``call`` with ``params`` run on ``action``'s host as :data:`SCRIPT`, parsed as a module's output;
    None where Ansible would not pipeline a module there (the caller then runs the module)."""
    if action._task.async_val or not action._is_pipelining_enabled("new"):
        return None
    interpreter, facts = host_python(action, task_vars)
    if interpreter is None:
        return None
    command = action._connection._shell.build_module_command(action._compute_environment_string(), "#!" + interpreter, "")
    returned = action._low_level_execute_command(command.strip(), sudoable=True, in_data=script(call, params).encode("utf-8"))
    result = parsed_module_output(action, returned)
    if facts:
        result["ansible_facts"] = dict(result.get("ansible_facts") or {}, **facts)
    for kept, key in (("_discovery_warnings", "warnings"), ("_discovery_deprecation_warnings", "deprecations")):
        if getattr(action, kept, None):  # ansible-core < 2.19 hands discovery's warnings on in the result
            result[key] = list(result.get(key) or []) + list(getattr(action, kept))
    return result


def host_python(action, task_vars):
    """The host's Python as Ansible picks it for a module (``ansible_python_interpreter``, or interpreter discovery),
    and the facts a discovery found ({} when none ran). (None, {}) where Ansible's way of picking it is not the one this
    code knows (another ansible-core)."""
    try:
        from ansible.executor.interpreter_discovery import InterpreterDiscoveryRequiredError, discover_interpreter  # pylint: disable=import-outside-toplevel
        from ansible.executor.module_common import _get_shebang  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None, {}
    use_vars = task_vars
    if action._task.delegate_to:
        use_vars = task_vars.get("ansible_delegated_vars", {}).get(action._task.delegate_to, task_vars)
    remote_is_local = bool(getattr(action._connection, "_remote_is_local", False))
    try:
        return _get_shebang("/usr/bin/python", use_vars, action._templar, remote_is_local=remote_is_local)[1], {}
    except InterpreterDiscoveryRequiredError as required:
        found = discover_interpreter(action=action, interpreter_name=required.interpreter_name,
                                     discovery_mode=required.discovery_mode, task_vars=use_vars)
        if not found:
            return None, {}
        key = "discovered_interpreter_%s" % required.interpreter_name
        use_vars.setdefault("ansible_facts", {})[key] = found
        return found, ({} if action._task.delegate_to else {key: found})
    except (TypeError, AnsibleError):
        return None, {}
