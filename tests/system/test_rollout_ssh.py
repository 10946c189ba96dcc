# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout role over real SSH, with Ansible's default SSH settings, to hosts whose Python is the stock /usr/bin/python3.

One sshd per host on a loopback address (tests/system/sshd.py), one engine of each kind: Docker (root login), containerd
(an unprivileged login with ``become`` through sudo), Podman (root) and an OCI layout (unprivileged, ``become``). Three
releases: empty hosts receive every layer once; the same release again costs one call per host (a pipelined call, no module payload) and ships nothing; one
app updated ships its new layer only, and a copy of it cut short on one host is resumed, not sent again.
"""

import json
import os
import pwd
import re
import shutil

import pytest

from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
from ansible_collections.airgap.images.tests.system.playbooks import warning_lines
from ansible_collections.airgap.images.tests.system.sshd import UNPRIVILEGED, SSHHosts
from ansible_collections.airgap.images.tests.system.test_rollout import APP_A2, APPS_V1, BASE, LIB, Fleet, blob_size, held_ids
from ansible_collections.airgap.images.tests.system.engines import build_test_images

STOCK_PYTHON = "/usr/bin/python3"


@pytest.fixture
def ssh_hosts():
    hosts = SSHHosts()
    yield hosts
    hosts.stop()


@pytest.fixture
def ssh_fleet(collections_path, tmp_path, ssh_hosts, dockerd, docker_images, dockerd_factory, containerd_factory, podman_factory):
    docker, containerd, podman = dockerd_factory(), containerd_factory(), podman_factory()
    layout = str(tmp_path / "oci-store")
    engines = {"ssh-docker": ({"engine": "docker", "engine_host": docker.host}, "root"),
               "ssh-containerd": ({"engine": "containerd", "engine_host": containerd.address}, UNPRIVILEGED),
               "ssh-podman": ({"engine": "podman", "engine_host": "unix://" + podman.service()}, "root"),
               "ssh-oci": ({"engine": "oci", "engine_host": layout}, UNPRIVILEGED)}
    fleet = Fleet(collections_path, str(tmp_path), dockerd.host, {name: engine for name, (engine, _user) in engines.items()})
    fleet.staging = False  # the role's default, /var/tmp/airgap-images-<name>: made by the login user
    connections = {}
    for name, (_engine, user) in engines.items():
        host = ssh_hosts.start(name, user=user)
        connections[name] = dict(ssh_hosts.inventory_vars(host, python=STOCK_PYTHON), ansible_connection="ssh")
    # Ansible's interpreter discovery, among the stock Pythons only (root's PATH here may hold pyenv's shims)
    connections["ssh-podman"].update(ansible_python_interpreter="auto_silent",
                                     ansible_interpreter_python_fallback=json.dumps(["/usr/bin/python3.11", STOCK_PYTHON]))
    built = build_test_images(dockerd, str(tmp_path / "build-a2"), APP_A2)
    yield fleet, connections, {"ssh-docker": docker, "ssh-containerd": containerd, "ssh-podman": podman, "ssh-oci": layout}, \
        dict(docker_images, **built)
    for name in engines:
        _remove_staging(name)


def _remove_staging(name):
    path = "/var/tmp/airgap-images-" + name
    if os.path.isdir(path):
        shutil.rmtree(path)


def _held(engines, name, kind):
    if kind == "oci":
        return {tag for image in LayoutStore(engines[name]).images() for tag in image.repo_tags}
    if kind == "podman":
        return set(engines[name].cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())
    return set(held_ids(engines[name], kind))


def _short(tag):
    return tag.replace("docker.io/", "").replace("localhost/", "")


def test_the_role_over_real_ssh_ships_what_each_host_lacks_once_reruns_in_one_call_and_resumes_a_cut_copy(ssh_fleet):
    fleet, connections, engines, images = ssh_fleet
    bundle = os.path.join(fleet.work, "bundle")
    every_layer = {d for name in [BASE, LIB] + APPS_V1 for d in images[name].diff_ids}

    recap, reports, out = fleet.run(APPS_V1, extra_host_vars=connections)
    assert not warning_lines(out + fleet.stderr), out[-3000:]
    for name in connections:
        assert recap[name]["failed"] == 0 and recap[name]["unreachable"] == 0 and recap[name]["changed"] > 0, out[-4000:]
        held = {_short(tag) for tag in _held(engines, name, fleet.hosts[name]["engine"])}
        assert {BASE, LIB} | set(APPS_V1) <= held, (name, held)
        assert sorted(reports[name]["shipped_files"]) == sorted("blobs/sha256/" + d.split(":", 1)[1] for d in every_layer)
        assert reports[name]["shipped_bytes"] == sum(blob_size(bundle, d) for d in every_layer)
        assert not os.path.exists("/var/tmp/airgap-images-" + name)  # cleaned up
    assert "ssh-docker: sent %d/%d file(s)" % (len(every_layer), len(every_layer)) in out  # progress on the controller
    assert held_ids(engines["ssh-docker"], "docker")["airgap-test/app-a:1"] == images["airgap-test/app-a:1"].id

    recap, reports, out = fleet.run(APPS_V1, extra_host_vars=connections, extra_env={"ANSIBLE_VERBOSITY": "3"})
    assert not warning_lines(out + fleet.stderr), out[-3000:]
    assert not re.search(r"^Using module file \S*/image_store_info\.py$", out, re.M), out[-6000:]
    for name in connections:
        assert "%s: airgap.images.image_store_info ran as a pipelined call of loading.store_info" % name in out, out[-6000:]
        assert recap[name]["changed"] == 0 and recap[name]["failed"] == 0, out[-3000:]
        assert reports[name]["shipped_bytes"] == 0 and reports[name]["host_calls"] == 1, reports[name]
        assert all(image["state"] == "present" for image in reports[name]["images"])
    assert "ok: [ssh-containerd]" in out

    # app-a 2: one new layer. ssh-containerd (unprivileged login, become) holds the first half of it in its staging
    # directory, as a copy cut short leaves it: only the rest crosses.  ssh-oci holds a corrupt start: all of it crosses.
    new_layer = images["airgap-test/app-a:2"].diff_ids[-1]
    new_file = "blobs/sha256/" + new_layer.split(":", 1)[1]
    layer_bytes = _layer_bytes(fleet.source_host, "airgap-test/app-a:2", new_layer)
    size = len(layer_bytes)
    first_half = layer_bytes[:size // 2]
    _stage(connections, "ssh-containerd", new_file, first_half)
    _stage(connections, "ssh-oci", new_file, b"\0" * (size // 2))
    release3 = ["airgap-test/app-a:2", "airgap-test/app-b:1"]
    recap, reports, out = fleet.run(release3, extra_host_vars=connections)
    assert not warning_lines(out + fleet.stderr), out[-3000:]
    for name in connections:
        assert recap[name]["failed"] == 0 and recap[name]["changed"] > 0, out[-3000:]
        assert reports[name]["shipped_files"] == [new_file], reports[name]
        assert "airgap-test/app-a:2" in {_short(tag) for tag in _held(engines, name, fleet.hosts[name]["engine"])}
    assert reports["ssh-containerd"]["resumed_files"] == [new_file]
    assert reports["ssh-containerd"]["shipped_bytes"] == size - len(first_half)
    assert reports["ssh-oci"]["resumed_files"] == [] and reports["ssh-oci"]["shipped_bytes"] == size
    assert reports["ssh-docker"]["shipped_bytes"] == size == blob_size(bundle, new_layer)
    pulled = engines["ssh-containerd"].ctr("images", "list").stdout
    assert "airgap-test/app-a:2" in pulled


def _layer_bytes(docker_host, image_name, diff_id):
    """The uncompressed layer ``diff_id`` of ``image_name`` as the bundle will hold it (its blob is the layer tar)."""
    store = open_store("docker", docker_host)
    try:
        with store.open_images([image_name]) as images:
            layer = next(layer for layer in images[0].layers if layer.diff_id == diff_id)
            with layer.open() as stream:
                return stream.read()
    finally:
        store.close()


def _stage(connections, name, path, data):
    """A staged file as the login user would have left it (owned by that user, in the role's default staging directory)."""
    full = os.path.join("/var/tmp/airgap-images-" + name, *path.split("/"))
    os.makedirs(os.path.dirname(full))
    with open(full, "wb") as out:
        out.write(data)
    user = connections[name]["ansible_user"]
    if user != "root":
        account = pwd.getpwnam(user)
        for root, _dirs, _files in os.walk("/var/tmp/airgap-images-" + name):
            os.chown(root, account.pw_uid, account.pw_gid)
        os.chown(full, account.pw_uid, account.pw_gid)
