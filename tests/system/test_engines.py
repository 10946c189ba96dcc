# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine fixtures themselves: each engine starts, answers, and is isolated."""

import hashlib
import json
import os
import re
import ssl
import tarfile
import urllib.error
import urllib.request

import pytest

from ansible_collections.airgap.images.tests.system.engines import (
    DOCKER_CLI,
    build_test_images,
    EngineCommandError,
    TEST_IMAGES,
    find_generation,
    mounts_under,
    seeded_bytes,
)
from ansible_collections.airgap.images.tests.system.matrix import generation_params

pytestmark = pytest.mark.engines

BASE, LIB, APP_A, APP_B = "airgap-test/base:1", "airgap-test/lib:1", "airgap-test/app-a:1", "airgap-test/app-b:1"
MIB = 1024 * 1024


def test_dockerd_is_debians_own_on_vfs_and_private(dockerd):
    info = json.loads(dockerd.cli("info", "--format", "{{json .}}").stdout)
    version = find_generation("docker").version  # 20.10 on Debian 12, 26.1 on Debian 13
    assert info["ServerVersion"].startswith(version)
    assert info["Driver"] == "vfs"
    assert info["DockerRootDir"] == dockerd.data_root
    assert DOCKER_CLI == "/usr/bin/docker"
    assert dockerd.cli("version", "--format", "{{.Client.Version}}").stdout.startswith(version.rsplit(".", 1)[0])
    assert dockerd.ping()


def saved_config_digest(engine, name, path):
    """sha256 of the config file ``docker save`` writes for ``name``."""
    engine.cli("save", "-o", path, name)
    with tarfile.open(path) as archive:
        config = json.load(archive.extractfile("manifest.json"))[0]["Config"]
        return "sha256:" + hashlib.sha256(archive.extractfile(config).read()).hexdigest()


@pytest.mark.parametrize("generation", generation_params())
def test_every_generation_starts_private_and_reports_its_version(engines, generation, tmp_path):
    if generation.missing:
        pytest.skip("%s cannot run here: %s" % (generation.name, generation.missing))
    engine = engines.engine(generation)
    assert engine.dir.startswith(engines.dir + "/")
    if generation.kind == "docker":
        info = json.loads(engine.cli("info", "--format", "{{json .}}").stdout)
        assert info["ServerVersion"].startswith(generation.version) and info["DockerRootDir"] == engine.data_root
        built = build_test_images(engine, str(tmp_path), {BASE: TEST_IMAGES[BASE]})[BASE]
        if generation.store == "containerd":  # Docker 29's default store: the image ID is the manifest digest
            status, dummy, body = engine.api("GET", "/v1.48/images/%s/json?manifests=1" % BASE)
            assert status == 200 and json.loads(body)["Descriptor"]["digest"] == built.id
        else:  # the classic store: the image ID is the config digest
            assert info["Driver"] == "vfs" and built.id == saved_config_digest(engine, BASE, str(tmp_path / "save.tar"))
    elif generation.kind == "containerd":
        version = engine.ctr("version").stdout
        assert len(re.findall(r"^  Version:\s+v?%s" % re.escape(generation.version), version, re.M)) == 2, version
        assert engine.ctr("images", "ls").stdout.startswith("REF")
    else:
        info = json.loads(engine.cli("info", "--format", "json").stdout)
        assert info["version"]["Version"] == generation.version and info["store"]["graphRoot"] == engine.root


def test_docker_images_are_built_as_a_layer_tree(dockerd, docker_images):
    assert list(docker_images) == [BASE, LIB, APP_A, APP_B]
    base, lib, app_a, app_b = (docker_images[n] for n in (BASE, LIB, APP_A, APP_B))
    assert [len(i.diff_ids) for i in (base, lib, app_a, app_b)] == [1, 2, 3, 3]
    assert lib.diff_ids[:1] == base.diff_ids
    assert app_a.diff_ids[:2] == app_b.diff_ids[:2] == lib.diff_ids
    assert app_a.diff_ids[2] != app_b.diff_ids[2]
    assert len({i.id for i in docker_images.values()}) == 4
    for image in docker_images.values():
        assert image.id.startswith("sha256:") and len(image.id) == 71
        assert dockerd.inspect(image.name)[0]["Id"] == image.id
        assert image.id in dockerd.image_ids()
    assert app_a.inspect["Config"]["Labels"] == {"org.airgap.test": "app-a"}
    assert "LIB_VERSION=1" in lib.inspect["Config"]["Env"]
    # The layers carry more than a megabyte of seeded bytes each.
    sizes = {n: docker_images[n].inspect["Size"] for n in docker_images}
    assert sizes[BASE] > 1.5 * MIB and sizes[LIB] - sizes[BASE] > MIB
    assert sizes[APP_A] - sizes[LIB] > MIB and sizes[APP_B] - sizes[LIB] > MIB
    assert base.files["/base/blob.bin"] == hashlib.sha256(seeded_bytes(*TEST_IMAGES[BASE][1]["base/blob.bin"])).hexdigest()


def test_docker_save_writes_the_legacy_format(docker_images, docker_images_archive):
    with tarfile.open(docker_images_archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
        assert "repositories" in names
        by_tag = {entry["RepoTags"][0]: entry for entry in manifest}
        assert set(by_tag) == set(docker_images)
        for name, image in docker_images.items():
            entry = by_tag[name]
            assert entry["Config"] == image.id[len("sha256:"):] + ".json"
            diff_ids = []
            for layer in entry["Layers"]:
                digest = hashlib.sha256()
                stream = tar.extractfile(layer)
                for chunk in iter(lambda s=stream: s.read(MIB), b""):
                    digest.update(chunk)
                diff_ids.append("sha256:" + digest.hexdigest())
            assert diff_ids == image.diff_ids


def test_skopeo_inspects_a_docker_save_archive(dockerd, docker_images, skopeo, tmp_path):
    path = str(tmp_path / "app-a.tar")
    dockerd.cli("save", "-o", path, APP_A)
    seen = skopeo.inspect("docker-archive:" + path)
    assert seen["Layers"] == docker_images[APP_A].diff_ids
    assert seen["Labels"] == {"org.airgap.test": "app-a"}
    config = json.loads(skopeo.run("inspect", "--config", "--raw", "docker-archive:" + path).stdout)
    assert config["rootfs"]["diff_ids"] == docker_images[APP_A].diff_ids
    assert "sha256:" + hashlib.sha256(skopeo.run("inspect", "--config", "--raw", "docker-archive:" + path,
                                                 text=False).stdout).hexdigest() == docker_images[APP_A].id


def test_second_dockerd_is_fresh_and_loads_an_archive(dockerd, dockerd_factory, docker_images, docker_images_archive):
    target = dockerd_factory()
    assert target.socket != dockerd.socket
    assert target.image_ids() == set()
    out = target.cli("load", "-i", docker_images_archive).stdout
    assert "Loaded image: " + APP_B in out
    assert target.image_ids() == {image.id for image in docker_images.values()}
    assert target.inspect(APP_B)[0]["RootFS"]["Layers"] == docker_images[APP_B].diff_ids


def test_dockerd_factory_stops_what_it_started(dockerd_factory, engines):
    extra = dockerd_factory()
    pid, directory = extra.pid, extra.dir
    assert pid and os.path.exists("/proc/%d" % pid)
    engines.stop(extra)
    assert extra.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
    assert mounts_under(directory) == []
    with pytest.raises(EngineCommandError):
        extra.cli("version", timeout=30)


def test_containerd_answers(containerd):
    version = containerd.ctr("version").stdout
    assert "Server:" in version and find_generation("containerd").version in version
    assert containerd.namespace == "k8s.io"
    assert containerd.ctr("images", "ls").stdout.startswith("REF")


# Tests that change an engine's content use the factories: the session engines are shared.
def test_containerd_imports_a_docker_archive(containerd_factory, docker_images, docker_images_archive):
    target = containerd_factory()
    target.ctr("images", "import", docker_images_archive)
    assert target.image_refs() == {"docker.io/" + name for name in docker_images}
    assert "docker.io/" + APP_A in target.ctr("images", "ls").stdout
    assert "complete" in target.ctr("images", "check").stdout
    # The image ID is the config blob's digest, now in the content store.
    config = target.ctr("content", "get", docker_images[BASE].id, text=False).stdout
    assert "sha256:" + hashlib.sha256(config).hexdigest() == docker_images[BASE].id
    assert target.image_refs(namespace="default") == set()


def test_podman_answers(podman):
    info = json.loads(podman.cli("info", "--format", "json").stdout)
    assert info["version"]["Version"] == find_generation("podman").version
    assert info["store"]["graphDriverName"] == "vfs"
    assert info["store"]["graphRoot"] == podman.root


def test_podman_loads_and_lists_images(podman_factory, docker_images, docker_images_archive):
    target = podman_factory()
    out = target.cli("load", "-i", docker_images_archive).stdout
    assert "airgap-test/app-a:1" in out
    listed = json.loads(target.cli("images", "--format", "json").stdout)
    assert {"sha256:" + entry["Id"] for entry in listed} == {image.id for image in docker_images.values()}
    assert target.image_ids() == {image.id for image in docker_images.values()}


def test_podman_service_speaks_the_docker_api(podman):
    from ansible_collections.airgap.images.tests.system.engines import unix_http  # pylint: disable=import-outside-toplevel

    sock = podman.service()
    assert podman.service() == sock  # started once
    status, dummy, body = unix_http(sock, "GET", "/_ping")
    assert (status, body) == (200, b"OK")
    status, dummy, body = unix_http(sock, "GET", "/v1.40/images/json")
    assert status == 200 and isinstance(json.loads(body), list)
    # Debian's docker CLI talks to it too.
    assert podman.docker_cli("version", "--format", "{{.Server.Version}}").stdout.strip() == find_generation("podman").version


def test_registry_answers_v2(registry):
    status, headers, dummy = registry.get("/v2/")
    assert status == 200
    assert headers.get("Docker-Distribution-Api-Version") == "registry/2.0"
    assert registry.host.startswith("127.0.0.1:")
    assert registry.url == "http://" + registry.host and registry.auth is None and registry.ca_path is None


def test_registry_takes_a_skopeo_copy(registry_factory, skopeo, docker_images_archive):
    reg = registry_factory()
    skopeo.run("copy", "--dest-tls-verify=false", "docker-archive:%s:%s" % (docker_images_archive, APP_A),
               "docker://%s/airgap-test/app-a:1" % reg.host)
    assert "airgap-test/app-a" in reg.catalog()
    remote = skopeo.inspect("docker://%s/airgap-test/app-a:1" % reg.host, "--tls-verify=false")
    assert remote["Labels"] == {"org.airgap.test": "app-a"}
    assert len(remote["Layers"]) == 3


def test_registry_with_basic_auth(registry_factory, skopeo, docker_images_archive):
    reg = registry_factory(auth=("airgap", "s3cret"))
    assert reg.get("/v2/", auth=False)[0] == 401
    assert reg.get("/v2/")[0] == 200
    with pytest.raises(EngineCommandError):
        skopeo.run("copy", "--dest-tls-verify=false", "docker-archive:%s:%s" % (docker_images_archive, BASE),
                   "docker://%s/airgap-test/base:1" % reg.host)
    skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", "airgap:s3cret",
               "docker-archive:%s:%s" % (docker_images_archive, BASE), "docker://%s/airgap-test/base:1" % reg.host)
    assert reg.catalog() == ["airgap-test/base"]


def test_registry_with_tls(registry_factory, skopeo, docker_images_archive, docker_images, dockerd_factory):
    reg = registry_factory(tls=True)
    assert reg.url.startswith("https://127.0.0.1:")
    assert os.path.exists(reg.ca_path) and os.listdir(reg.cert_dir) == ["ca.crt"]
    assert reg.get("/v2/")[0] == 200
    with pytest.raises(urllib.error.URLError) as raised:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(reg.url + "/v2/", timeout=10)
    assert isinstance(raised.value.reason, ssl.SSLCertVerificationError)
    skopeo.run("copy", "--dest-cert-dir", reg.cert_dir, "docker-archive:%s:%s" % (docker_images_archive, BASE),
               "docker://%s/airgap-test/base:1" % reg.host)
    assert reg.catalog() == ["airgap-test/base"]
    # A dockerd trusts it once its CA is in /etc/docker/certs.d/<host>/ (removed when the registry stops).
    target = dockerd_factory()
    reg.trust_in_docker()
    target.cli("pull", "%s/airgap-test/base:1" % reg.host)
    assert target.inspect("%s/airgap-test/base:1" % reg.host)[0]["Id"] == docker_images[BASE].id
    certs = "/etc/docker/certs.d/" + reg.host
    assert os.path.exists(os.path.join(certs, "ca.crt"))
    reg.stop()
    assert not os.path.exists(certs)
    # Both kinds at once.
    both = registry_factory(auth=("u", "p"), tls=True)
    assert both.get("/v2/", auth=False)[0] == 401 and both.get("/v2/")[0] == 200


def test_containerd_and_podman_factories_start_empty_engines(containerd_factory, podman_factory, containerd, podman):
    other = containerd_factory(namespace="default")
    assert other.address != containerd.address and other.namespace == "default"
    assert other.image_refs() == set() and other.image_refs(namespace="k8s.io") == set()
    fresh = podman_factory()
    assert fresh.root != podman.root
    assert fresh.image_ids() == set()
