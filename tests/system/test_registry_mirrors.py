# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The site registry as every engine's mirror (registry_mirror): real engines pull ``upstream.example/app@sha256:…``.

A site registry on a loopback port is seeded with the collection's core under ``upstream.example/app`` (so at
``<site>/app``) and ``docker.io/library/app``; registry_mirror, run by ansible-playbook, writes each engine's mirror
configuration into the test's own directories; then the engine's own client pulls the upstream name by digest.
``upstream.example`` does not resolve (``.example`` is reserved), so a pull that succeeds was served by the mirror.
"""

import json
import os
import signal
import socket
import time

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.registry import RegistryStore
from ansible_collections.airgap.images.tests.system.engines import generations
from ansible_collections.airgap.images.tests.system.matrix import generation_params
from ansible_collections.airgap.images.tests.system.playbooks import warning_lines
from ansible_collections.airgap.images.tests.system.test_rollout import Fleet
from ansible_collections.airgap.images.tests.system.test_status_words import assert_reported, task

APP = "airgap-test/app-a:1"
UPSTREAM = "upstream.example/app"
HUB = "docker.io/library/app"
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def seed(registry, archive):
    """Push the test image as ``upstream.example/app:1`` and ``docker.io/library/app:1`` with the collection's core;
    return the manifest digest the registry itself reports."""
    store = RegistryStore(registry.host, insecure_http=registry.tls is None, ca_path=registry.ca_path)
    with open_archive(archive) as opened:
        image = next(image for image in opened.images if APP in image.repo_tags)
        store.push([image.with_references([parse_reference(UPSTREAM + ":1"), parse_reference(HUB + ":1")])])
    digests = set()
    for repo in ("app", "library/app"):
        status, headers, _body = registry.get("/v2/%s/manifests/1" % repo, headers={"Accept": ACCEPT})
        assert status == 200, (repo, status)
        digests.add(headers["Docker-Content-Digest"])
    assert len(digests) == 1
    return digests.pop()


@pytest.fixture(scope="module", autouse=True)
def upstream_does_not_resolve():
    try:
        socket.getaddrinfo("upstream.example", 443)
    except OSError:
        return
    pytest.skip("upstream.example resolves here: a pull could bypass the mirror")


def mirror_task(name="Mirror", **args):
    return task(name, "registry_mirror", **args)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls-ca"])
@pytest.mark.parametrize("generation", generation_params("containerd"))
def test_containerd_pulls_the_upstream_digest_from_the_site_registry(playbook, generation, tls, registry_factory,
                                                                     containerd_factory, docker_images_archive, tmp_path):
    if generation.missing:
        pytest.skip(generation.missing)
    site = registry_factory(tls=tls)
    digest = seed(site, docker_images_archive)
    hosts_dir = str(tmp_path / "certs.d")
    options = dict(engine="containerd", registry=site.host, upstreams=["docker.io", "upstream.example"],
                   config_path=hosts_dir, containerd_config="")
    options.update(dict(ca_path=site.ca_path) if tls else dict(insecure=True))
    (written,), _out = playbook.run([mirror_task(**options)], diff=True)
    assert written["changed"] and written["mirrored"] == ["docker.io", "upstream.example"] and written["unmirrored"] == []
    assert not written["restart_needed"] and written["mirror"] == site.url
    with open(os.path.join(hosts_dir, "upstream.example", "hosts.toml")) as handle:
        text = handle.read()
    assert 'server = "https://upstream.example"' in text and '[host."%s"]' % site.url in text
    assert ('ca = "%s"' % site.ca_path in text) == tls

    engine = containerd_factory(generation=generation)
    ref = "%s@%s" % (UPSTREAM, digest)
    engine.ctr("images", "pull", "--hosts-dir", hosts_dir, ref, timeout=120)
    listed = [line.split() for line in engine.ctr("images", "ls").stdout.splitlines()[1:]]
    assert [row[2] for row in listed if row[0] == ref] == [digest], listed
    # docker.io names are mirrored as well: containerd asks the site registry for library/app.
    engine.ctr("images", "pull", "--hosts-dir", hosts_dir, "docker.io/library/app@" + digest, timeout=120)


@pytest.mark.parametrize("generation", generation_params("podman"))
def test_podman_pulls_the_upstream_digest_through_the_registries_conf_it_was_given(playbook, generation, registry_factory,
                                                                                   podman_factory, docker_images_archive):
    if generation.missing:
        pytest.skip(generation.missing)
    site = registry_factory()
    digest = seed(site, docker_images_archive)
    podman = podman_factory(generation=generation)
    # The module's drop-in as the whole of this podman's registries.conf (CONTAINERS_REGISTRIES_CONF).
    (written,), _out = playbook.run([mirror_task(engine="podman", registry=site.host, upstreams=["upstream.example"],
                                                 insecure=True, config_path=podman.registries_conf)])
    assert written["changed"] and written["files"] == [{"path": podman.registries_conf, "changed": True}]
    ref = "%s@%s" % (UPSTREAM, digest)
    podman.cli("pull", "-q", ref, timeout=120)
    assert podman.cli("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip() == digest


def test_docker_takes_docker_hub_from_the_mirror_after_a_reload_and_says_what_it_cannot_mirror(
        playbook, registry_factory, dockerd_factory, docker_images_archive):
    site = registry_factory()
    digest = seed(site, docker_images_archive)
    dockerd = dockerd_factory()
    with open(dockerd.config_file) as handle:
        before = json.load(handle)
    mirror = mirror_task(engine="docker", registry=site.host, upstreams=["docker.io", "upstream.example"], insecure=True,
                         config_path=dockerd.config_file)
    done = playbook.play([mirror])
    written = done.results[0]
    assert written["changed"] and written["restart_needed"]
    assert written["mirrored"] == ["docker.io"] and written["unmirrored"] == ["upstream.example"]
    assert "not mirrored: upstream.example" in written["msg"]
    assert any("docker cannot mirror upstream.example" in line for line in warning_lines(done.stdout + done.stderr))
    with open(dockerd.config_file) as handle:
        after = json.load(handle)
    assert after == dict(before, **{"registry-mirrors": [site.url], "insecure-registries": [site.host]})  # other keys kept

    os.kill(dockerd.pid, signal.SIGHUP)  # ``systemctl reload docker``: dockerd reloads registry-mirrors
    deadline = time.monotonic() + 20
    while site.url not in dockerd.cli("info", "--format", "{{json .RegistryConfig.Mirrors}}").stdout:
        assert time.monotonic() < deadline, dockerd.log_tail()
        time.sleep(0.2)
    dockerd.cli("pull", "-q", "app@" + digest, timeout=120)
    assert dockerd.inspect("app@" + digest)[0]["RepoDigests"] == ["app@" + digest]

    (again,), _out = playbook.run([mirror])
    assert not again["changed"] and not again["restart_needed"] and again["files"] == []


def test_mirror_tasks_print_changed_then_ok_on_each_ansible(runtime_playbook, tmp_path):
    """Each engine's configuration through ansible-playbook: check mode predicts, the first run changes, the re-run is
    ok, and nothing warns (the Docker task names only Docker Hub); on every ansible-core of ``ansible_runtime``."""
    ca = tmp_path / "site-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"storage-driver": "overlay2"}\n')
    site = dict(registry="site.internal:5000", upstreams=["docker.io", "registry.k8s.io"], ca_path=str(ca))
    tasks = [
        mirror_task("Mirror for containerd", engine="containerd", config_path=str(tmp_path / "certs.d"), containerd_config="", **site),
        mirror_task("Mirror for podman", engine="podman", config_path=str(tmp_path / "registries.conf.d" / "50-mirrors.conf"),
                    certs_dir=str(tmp_path / "containers-certs.d"), **site),
        mirror_task("Mirror for docker", engine="docker", registry="site.internal:5000", upstreams=["docker.io"],
                    config_path=str(daemon), certs_dir=str(tmp_path / "docker-certs.d")),
    ]
    names = ["Mirror for containerd", "Mirror for podman", "Mirror for docker"]
    predicted = runtime_playbook.play(tasks, check=True)
    assert_reported(predicted, dict.fromkeys(names, "changed"))
    assert not os.path.exists(str(tmp_path / "certs.d")) and daemon.read_text() == '{"storage-driver": "overlay2"}\n'
    first = runtime_playbook.play(tasks, diff=True)
    assert_reported(first, dict.fromkeys(names, "changed"))
    assert "+server = \"https://registry-1.docker.io\"" in first.stdout  # the diff
    assert json.loads(daemon.read_text()) == {"registry-mirrors": ["https://site.internal:5000"], "storage-driver": "overlay2"}
    assert first.results[2]["restart_needed"] and not first.results[0]["restart_needed"]
    second = runtime_playbook.play(tasks, diff=True)
    assert_reported(second, dict.fromkeys(names, "ok"))
    assert [result["restart_needed"] for result in second.results] == [False, False, False]


def test_rollout_in_registry_mode_makes_the_site_registry_the_hosts_mirror(collections_path, tmp_path, dockerd, docker_images,
                                                                           docker_images_archive, registry_factory,
                                                                           containerd_factory):
    """The role: the bundle is pushed into the site registry, each containerd host gets hosts.toml files for
    docker.io and upstream.example and pulls the images; then containerd 2.1's own pull of an image by its upstream
    name and digest is served by the mirror. A re-run changes nothing."""
    current = next(gen for gen in generations("containerd") if gen.source == "current")
    if current.missing:
        pytest.skip(current.missing)
    site = registry_factory()
    node = containerd_factory(generation=current)
    hosts_dir = str(tmp_path / "certs.d")
    fleet = Fleet(collections_path, str(tmp_path), dockerd.host, {"node1": {"engine": "containerd", "engine_host": node.address}})
    role_vars = {"rollout_mode": "registry", "rollout_registry": site.host, "rollout_registry_insecure": True,
                 "rollout_registry_mirrors": ["docker.io", "upstream.example"]}
    host_vars = {"node1": {"rollout_mirror_config_path": hosts_dir, "rollout_mirror_containerd_config": node.config_path}}
    recap, reports, out = fleet.run(["airgap-test/app-a:1"], role_vars=role_vars, extra_host_vars=host_vars)
    assert recap["node1"]["failed"] == 0 and recap["node1"]["changed"] > 0, out[-3000:]
    assert reports["node1"]["mirrored"] == ["docker.io", "upstream.example"] and reports["node1"]["unmirrored"] == []
    assert sorted(os.listdir(hosts_dir)) == ["docker.io", "upstream.example"]
    assert "does not set the CRI registry config_path" in out  # the test containerd runs without its CRI plugin
    assert warning_lines(out) + warning_lines(fleet.stderr) == [], out[-3000:]

    # An image the role never shipped, put into the site registry later under its upstream name: the node's own pull
    # by that name and digest (as the kubelet's) is served by the mirror.
    ref = "%s@%s" % (UPSTREAM, seed(site, docker_images_archive))
    node.ctr("images", "pull", "--hosts-dir", hosts_dir, ref, timeout=120)
    assert ref in node.image_refs()

    recap, reports, out = fleet.run(["airgap-test/app-a:1"], role_vars=role_vars, extra_host_vars=host_vars)
    assert recap["node1"]["changed"] == 0 and recap["node1"]["failed"] == 0, out[-3000:]
