# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's side of airgap.images.image_ship: plan on the host, send what it lacks, have it load.

Calls to the host: one to plan (image_store_info's work, as a pipelined call of its function where Ansible would
pipeline a module: ``host_python``; else the module); when something is to do, one command to make the staging
directories, one transfer per file, and one module run that loads, verifies and cleans up (image_ship).
"""

import contextlib
import os
import shlex
import shutil
import tempfile
import time

from ansible.errors import AnsibleAction, AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.airgap.images.plugins.module_utils.digest import file_sha256
from ansible_collections.airgap.images.plugins.module_utils.module_support import (
    ENGINE_ARGS, SIGNATURE_ARGS, engine_argument_spec, signature_argument_spec)
from ansible_collections.airgap.images.plugins.plugin_utils.host_python import call_on_host
from ansible_collections.airgap.images.plugins.plugin_utils.in_worker import run_module_here, runs_here

display = Display()

SHIP_ARGS = dict(
    bundle=dict(type="dict", required=True),
    src=dict(type="path", required=True),
    staging=dict(type="path", required=True),
    cleanup=dict(type="bool", default=True),
    pipelining=dict(type="bool", default=True),
)
SUDO_NEEDS_TTY = "must have a tty"
SSH_CONNECTIONS = ("ssh", "ansible.builtin.ssh")
PROGRESS_EVERY_S = 2.0
CHUNK = 1024 * 1024


def _megabytes(size):
    return "%.1f MB" % (size / 1e6)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # the files go to the staging directory, not to a remote temp directory
    _VALID_ARGS = frozenset(list(ENGINE_ARGS) + list(SIGNATURE_ARGS) + list(SHIP_ARGS))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        started = time.time()
        _valid, params = self.validate_argument_spec(argument_spec=signature_argument_spec(engine_argument_spec(**SHIP_ARGS)))
        self.calls = 0
        self.host = (task_vars or {}).get("inventory_hostname") or self._play_context.remote_addr or "the host"
        self.pipelined = params["pipelining"] and getattr(self._connection, "has_pipelining", False)
        self.facts, self.warnings = {}, []
        try:
            result.update(self._ship(params, task_vars))
        except AnsibleAction as err:
            result.update(err.result)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        if self.facts:
            result["ansible_facts"] = self.facts  # the host's Python, when this task discovered it
        if self.warnings:
            result["warnings"] = self.warnings
        result["host_calls"] = self.calls
        result["duration_s"] = round(time.time() - started, 3)
        if not result.get("failed"):
            display.display("%s: %s" % (self.host, result["msg"]))
        return result

    def _module(self, name, module_args, task_vars, call=None):
        """Run a module on the host: in this worker for a local task (``in_worker.runs_here``), else pipelined (one
        command) where ``pipelining`` asks for it and the connection can; there, ``call`` (a module_utils function and
        its complete parameters) runs in place of the module when it can (``host_python.call_on_host``)."""
        self.calls += 1
        if runs_here(self, task_vars):
            return run_module_here(self, name, module_args, task_vars)
        if not self.pipelined:
            return self._execute_module(module_name=name, module_args=module_args, task_vars=task_vars)
        with self._pipelining_on():
            result = call_on_host(self, call[0], call[1], task_vars) if call else None
            if result is None:
                result = self._execute_module(module_name=name, module_args=module_args, task_vars=task_vars)
            else:
                display.vvv("%s: %s ran as a pipelined call of %s, without a module payload" % (self.host, name, call[0]))
        if result.get("failed") and SUDO_NEEDS_TTY in "%s %s" % (result.get("module_stderr", ""), result.get("msg", "")):
            self.pipelined = False  # sudo's requiretty: Ansible's own way from here on
            return self._module(name, module_args, task_vars)
        return result

    @contextlib.contextmanager
    def _pipelining_on(self):
        connection = self._connection
        try:
            before = connection.get_option("pipelining")
        except KeyError:
            before = None
        connection.set_option("pipelining", True)
        try:
            yield
        finally:
            connection.set_option("pipelining", before)

    def _ship(self, params, task_vars):
        engine = {key: params[key] for key in ENGINE_ARGS if params.get(key) is not None}
        staging = params["staging"]
        planning = dict(bundle=params["bundle"], staging=staging)
        every_engine_option = dict({key: params.get(key) for key in ENGINE_ARGS}, images=[], **planning)
        plan = self._module("airgap.images.image_store_info", dict(engine, **planning), task_vars,
                            call=("loading.store_info", every_engine_option))
        self.facts.update(plan.get("ansible_facts") or {})
        self.warnings.extend(plan.get("warnings") or [])
        if plan.get("failed"):
            return dict(failed=True, msg=plan.get("msg", "planning failed"))
        report = dict(changed=plan["needs_load"], shipped_files=[], shipped_bytes=0, resumed_files=[], loaded=[], tagged=[],
                      skipped_bytes=plan["skip_bytes"], bundle_bytes=plan["bundle_bytes"], naive_bytes=plan["naive_bytes"],
                      images=plan["bundle_images"])
        if self._task.check_mode:
            report.update(loaded=[image["id"] for image in plan["bundle_images"] if image["state"] == "load"],
                          tagged=[tag for image in plan["bundle_images"] if image["state"] == "tag" for tag in image["repo_tags"]])
            report["msg"] = _message(report, plan["ship_bytes"], len(plan["ship"]), would=True)
            return report
        if not plan["ship"] and not plan["needs_load"] and not (plan["staged"] and params["cleanup"]):
            report["msg"] = _message(report, 0, 0)
            return report
        if plan["ship"]:
            self._send(params["src"], staging, plan["ship"], report)
        module_args = dict(engine, bundle=params["bundle"], src=params["src"], staging=staging, cleanup=params["cleanup"])
        module_args.update((key, params[key]) for key in SIGNATURE_ARGS if params.get(key))
        loaded = self._module("airgap.images.image_ship", module_args, task_vars)
        if loaded.get("failed"):
            failed = dict(report, failed=True, msg=loaded.get("msg"))
            if "signatures" in loaded:
                failed["signatures"] = loaded["signatures"]
            return failed
        report.update(changed=loaded["changed"] or report["changed"], loaded=loaded["loaded"], tagged=loaded["tagged"])
        if "signatures" in loaded:
            report["signatures"] = loaded["signatures"]
        report["msg"] = _message(report, report["shipped_bytes"], len(report["shipped_files"]))
        return report

    def _send(self, src, staging, files, report):
        directories = sorted({os.path.dirname(staging.rstrip("/") + "/" + entry["file"]) for entry in files})
        self.calls += 1
        made = self._low_level_execute_command("mkdir -p -- " + " ".join(shlex.quote(path) for path in directories), sudoable=False)
        if made["rc"] != 0:
            user = self._connection.get_option("remote_user") or "the connection's user"
            raise AnsibleActionFail("cannot make the staging directory %s on %s as %s: %s (give rollout_staging_dir / "
                                    "staging a path that user can create)"
                                    % (staging, self.host, user, (made.get("stderr") or made.get("stdout") or "").strip()))
        total = sum(entry["size"] for entry in files)
        done, last_shown = 0, 0.0
        with self._uncompressed_transfers():
            for count, entry in enumerate(files, 1):
                local = os.path.join(src, *entry["file"].split("/"))
                remote = staging.rstrip("/") + "/" + entry["file"]
                report["shipped_bytes"] += self._send_file(local, remote, entry, report)
                report["shipped_files"].append(entry["file"])
                done += entry["size"]
                if time.time() - last_shown >= PROGRESS_EVERY_S or count == len(files):
                    display.display("%s: sent %d/%d file(s), %s of %s" % (self.host, count, len(files), _megabytes(done), _megabytes(total)))
                    last_shown = time.time()

    def _send_file(self, local, remote, entry, report):
        """Send one file; of one cut short on the host whose start matches ours, only the rest. Returns bytes sent."""
        staged = entry.get("staged_bytes") or 0
        if staged and file_sha256(local, staged) == entry.get("staged_sha256"):
            self._append_rest(local, remote, staged)
            report["resumed_files"].append(entry["file"])
            return entry["size"] - staged
        self.calls += 1
        self._connection.put_file(local, remote)
        return entry["size"]

    def _append_rest(self, local, remote, offset):
        with tempfile.NamedTemporaryFile(prefix="airgap-rest-") as rest:
            with open(local, "rb") as source:
                source.seek(offset)
                shutil.copyfileobj(source, rest, CHUNK)
            rest.flush()
            self.calls += 2
            self._connection.put_file(rest.name, remote + ".rest")
        appended = self._low_level_execute_command("cat -- {rest} >> {file} && rm -f -- {rest}".format(
            rest=shlex.quote(remote + ".rest"), file=shlex.quote(remote)), sudoable=False)
        if appended["rc"] != 0:
            raise AnsibleActionFail("cannot resume %s on %s: %s" % (remote, self.host, (appended.get("stderr") or "").strip()))

    @contextlib.contextmanager
    def _uncompressed_transfers(self):
        """Over ssh with ``-C`` in ssh_args (Ansible's default), transfers go through a master connection of their own
        without it: layers are compressed or random, and compressing them again halves the throughput."""
        connection = self._connection
        if getattr(connection, "transport", None) not in SSH_CONNECTIONS:
            yield
            return
        ssh_args = connection.get_option("ssh_args") or ""
        words = shlex.split(ssh_args)
        if "-C" not in words:
            yield
            return
        control_path = connection.get_option("control_path")
        own = connection._create_control_path(connection.get_option("host"), connection.get_option("port"),
                                              connection.get_option("remote_user"), connection="airgap-images-uncompressed")
        connection.set_option("ssh_args", " ".join(shlex.quote(word) for word in words if word != "-C"))
        connection.set_option("control_path", own)
        try:
            yield
        finally:
            connection.set_option("ssh_args", ssh_args)
            connection.set_option("control_path", control_path)


def _message(report, sent, files, would=False):
    loaded = len(report["loaded"])
    return "%s %d bytes in %d file(s), %s %d of a %d-byte bundle; %s %d image(s), tagged %d (a full copy of every image " \
        "would be %d bytes)" % (
            "would ship" if would else "shipped", sent, files, "would skip" if would else "skipped", report["skipped_bytes"],
            report["bundle_bytes"], "would load" if would else "loaded", loaded, len(report["tagged"]), report["naive_bytes"])
