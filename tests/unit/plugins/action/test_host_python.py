# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pipelined host call (plugin_utils/host_python.py): its script run by a real Python on standard input, as the
host runs it, against an OCI layout planned from a bundle; where it does not run. Over real SSH it is tested by
tests/system/test_rollout_ssh.py (every engine kind, become through sudo, the stock /usr/bin/python3)."""

import json
import os
import subprocess
import sys
import types

import pytest

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.loading import store_info
from ansible_collections.airgap.images.plugins.module_utils.module_support import ENGINE_ARGS
from ansible_collections.airgap.images.plugins.module_utils.operations import archive_info
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.store import OCIStore
from ansible_collections.airgap.images.plugins.plugin_utils import host_python

PYTHONS = sorted({sys.executable} | ({"/usr/bin/python3"} if os.access("/usr/bin/python3", os.X_OK) else set()))


def params(**given):
    every = dict({key: spec.get("default") for key, spec in ENGINE_ARGS.items()}, images=[], bundle=None, staging=None)
    every.update(given)
    return every


def run_script(python, call, call_params, env=None):
    """The script on the standard input of ``python``, in a clean environment, as a pipelined host call runs it."""
    done = subprocess.run([python, "-"], input=host_python.script(call, call_params).encode(), capture_output=True,
                          env=env or {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=False, cwd="/")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.fixture
def site(tmp_path):
    """A bundle of two apps on a base, and a host layout holding the base and app-a."""
    base = layer_from_bytes(layer_tar({"base": b"b" * 4096}), "base")
    app_a = layer_from_bytes(layer_tar({"a": b"a" * 2048}), "a")
    app_b = layer_from_bytes(layer_tar({"b": b"c" * 1024}), "b")
    images = [build_image([base, app_a], [parse_reference("site/app-a:1")]),
              build_image([base, app_b], [parse_reference("site/app-b:1")])]
    bundle = str(tmp_path / "bundle")
    OCIStore(bundle).import_images(images)
    host = str(tmp_path / "host")
    OCIStore(host).import_images(images[:1])
    return archive_info(bundle), host, images


@pytest.mark.parametrize("python", PYTHONS)
def test_the_host_script_plans_as_image_store_info_does(site, tmp_path, python):
    info, host, images = site
    call_params = params(engine="oci", engine_host=host, images=["site/app-a:1", "site/app-b:1"], bundle=info,
                         staging=str(tmp_path / "staging"))
    planned = run_script(python, "loading.store_info", call_params)
    assert planned == json.loads(json.dumps(store_info(call_params)))
    assert [entry["present"] for entry in planned["images"]] == [True, False]
    assert [entry["file"] for entry in planned["ship"]] == ["blobs/sha256/" + images[1].diff_ids[-1].split(":", 1)[1]]
    assert planned["needs_load"] is True and planned["changed"] is False


def test_the_script_imports_the_collection_it_carries_not_one_on_the_host_s_path(site, tmp_path):
    info, host, _images = site
    shadow = tmp_path / "elsewhere" / "ansible_collections" / "airgap" / "images" / "plugins" / "module_utils"
    shadow.mkdir(parents=True)
    (shadow / "loading.py").write_text("def store_info(params):\n    return {'changed': True, 'msg': 'the wrong copy'}\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(tmp_path / "elsewhere")}
    planned = run_script(sys.executable, "loading.store_info", params(engine="oci", engine_host=host, bundle=info), env)
    assert planned["changed"] is False and "msg" not in planned and planned["needs_load"] is True


def test_a_store_error_is_a_failure_with_its_message_and_anything_else_a_traceback(tmp_path):
    failed = run_script(sys.executable, "loading.store_info", params(engine="registry"))
    assert failed == {"failed": True, "changed": False, "msg": "engine registry needs the registry's host[:port] (engine_host)"}
    broken = run_script(sys.executable, "loading.store_info", {"images": []})
    assert broken["failed"] is True and broken["msg"].startswith("unexpected error: ") and "KeyError" in broken["exception"]


def test_the_sources_are_every_module_utils_file_and_their_packages():
    packed = host_python.module_utils_sources()
    assert host_python.module_utils_sources() is packed  # made once while no file changes
    import base64
    import zlib
    sources = json.loads(zlib.decompress(base64.b64decode(packed)))
    names = {name for name, (is_package, _source) in sources.items() if not is_package}
    on_disk = {os.path.relpath(os.path.join(folder, name), host_python.MODULE_UTILS)[:-3].replace(os.sep, ".")
               for folder, _dirs, files in os.walk(host_python.MODULE_UTILS) for name in files
               if name.endswith(".py") and name != "__init__.py"}
    assert names == {host_python.PACKAGE + "." + name for name in on_disk}
    assert sources["ansible_collections"] == [True, ""] and sources[host_python.PACKAGE + ".stores"][0] is True


class Connection:
    has_pipelining = True

    def __init__(self):
        self.commands = []


def action(pipelining=True, async_val=0):
    fake = types.SimpleNamespace(_task=types.SimpleNamespace(async_val=async_val, delegate_to=None), _connection=Connection())
    fake._is_pipelining_enabled = lambda style: pipelining and style == "new"
    fake._low_level_execute_command = lambda *args, **kwargs: pytest.fail("nothing is to run on the host")
    return fake


def test_where_ansible_would_not_pipeline_a_module_the_caller_runs_the_module():
    assert host_python.call_on_host(action(pipelining=False), "loading.store_info", params(), {}) is None
    assert host_python.call_on_host(action(async_val=60), "loading.store_info", params(), {}) is None
