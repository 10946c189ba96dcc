# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Managed hosts need nothing but Python: the modules run under a bare ``python3 -m venv`` (no ``requests``, no
``cryptography``), talking to Docker and Podman over their unix sockets and to a registry over TLS with a password,
through the standard library's HTTP (plugins/module_utils/stores/stdhttp.py); and the rollout role converges on such
a host."""

import os
import subprocess

import pytest

from ansible_collections.airgap.images.tests.system.playbooks import Playbook, task_status, warning_lines
from ansible_collections.airgap.images.tests.system.test_rollout import Fleet
from ansible_collections.airgap.images.tests.system.test_modules import APP_A, APP_B

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A venv of Debian's own Python with nothing installed: not even pip."""
    venv = str(tmp_path_factory.mktemp("bare") / "venv")
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = os.path.join(venv, "bin", "python")
    for library in ("requests", "urllib3", "cryptography"):
        probe = subprocess.run([python, "-c", "import " + library], capture_output=True, timeout=60, check=False)
        assert probe.returncode != 0, "%s is importable in the bare venv" % library
    return python


def run(playbook, python, name, module, args, check=False):
    done = playbook.play([{"name": name, module: args}], check=check, python=python)
    assert warning_lines(done.stdout) + warning_lines(done.stderr) == [], done.stdout[-3000:]
    return done.results[0], task_status(done.stdout, name)


def test_every_store_works_without_requests(bare_python, collections_path, dockerd, podman_factory, registry_factory, docker_images,
                                            tmp_path):
    playbook = Playbook(collections_path, str(tmp_path))
    archive = str(tmp_path / "apps.tar")
    save = {"images": [APP_A, APP_B], "dest": archive, "engine": "docker", "engine_host": dockerd.host}
    result, status = run(playbook, bare_python, "save from docker", "airgap.images.image_save", save)
    assert status == "changed" and [image["id"] for image in result["images"]] == [docker_images[APP_A].id, docker_images[APP_B].id]
    assert run(playbook, bare_python, "save again", "airgap.images.image_save", save)[1] == "ok"
    podman = {"engine": "podman", "engine_host": "unix://" + podman_factory().service()}
    loaded, status = run(playbook, bare_python, "load into podman", "airgap.images.image_load", dict(src=archive, **podman))
    assert status == "changed" and sorted(loaded["loaded"]) == sorted([docker_images[APP_A].id, docker_images[APP_B].id])
    held, status = run(playbook, bare_python, "podman holds them", "airgap.images.image_store_info", dict(images=[APP_A], **podman))
    assert status == "ok" and held["images"][0]["present"] and held["images"][0]["id"] == docker_images[APP_A].id
    secured = registry_factory(auth=("robot", "s3cret-Pw"), tls=True)
    registry = {"engine": "registry", "engine_host": secured.host, "username": "robot", "password": "s3cret-Pw",
                "ca_path": secured.ca_path}
    pushed, status = run(playbook, bare_python, "push over TLS", "airgap.images.image_load", dict(src=archive, **registry))
    assert status == "changed" and pushed["bytes_sent"] > 0
    assert run(playbook, bare_python, "push again", "airgap.images.image_load", dict(src=archive, **registry))[1] == "ok"
    pulled, status = run(playbook, bare_python, "pull", "airgap.images.image_pull", {
        "images": ["%s/%s" % (secured.host, APP_A)], "registry": secured.host, "registry_username": "robot",
        "registry_password": "s3cret-Pw", "registry_ca_path": secured.ca_path, "engine": "oci", "engine_host": str(tmp_path / "oci")})
    assert status == "changed" and pulled["loaded"] == [docker_images[APP_A].id]


def test_the_rollout_converges_on_a_host_with_only_python(bare_python, collections_path, dockerd, dockerd_factory, tmp_path):
    host = dockerd_factory()
    fleet = Fleet(collections_path, str(tmp_path), dockerd.host, {"bare": {"engine": "docker", "engine_host": host.host}})
    interpreter = {"bare": {"ansible_python_interpreter": bare_python}}
    recap, reports, out = fleet.run([APP_A], extra_host_vars=interpreter)
    assert recap["bare"]["failed"] == 0 and recap["bare"]["changed"] > 0, out[-3000:]
    assert int(reports["bare"]["shipped_bytes"]) > 0
    recap, reports, out = fleet.run([APP_A], extra_host_vars=interpreter)
    assert recap["bare"]["changed"] == 0 and int(reports["bare"]["shipped_bytes"]) == 0, out[-3000:]
