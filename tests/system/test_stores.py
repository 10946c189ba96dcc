# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every store against its real engine: images hop docker → registry → containerd → OCI layout → podman → docker."""

import base64
import json
import os

import pytest

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.errors import StoreError
from ansible_collections.airgap.images.plugins.module_utils.loading import plan_load, verify_loaded
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.store import ContainerdImageStore, OCIStore, open_store
from ansible_collections.airgap.images.tests.system.faults import FaultProxy
from ansible_collections.airgap.images.tests.system.matrix import generation_params

APPS = ("airgap-test/app-a:1", "airgap-test/app-b:1")


def hop(source, selectors, target, workdir, name):
    """Save ``selectors`` from ``source`` as an archive and load it into ``target``; returns the archive path."""
    path = os.path.join(workdir, name + ".tar")
    with source.open_images(selectors, workdir) as images:
        save_archive(images, path)
    target.load(path)
    return path


def assert_same(store, docker_images, names, prefix=""):
    for name in names:
        found = store.find(prefix + name)
        assert found is not None, "%s lost %s" % (store, name)
        original = docker_images[name]
        assert found.diff_ids == original.diff_ids
        assert name in found.repo_tags or (prefix + name) in found.repo_tags
        assert original.id in (found.id, found.config_digest)


def test_images_survive_every_hop(dockerd, dockerd_factory, registry, containerd, podman, docker_images, tmp_path):
    workdir = str(tmp_path)
    docker = open_store("docker", dockerd.host)
    reg = open_store("registry", registry.host, insecure_http=True)
    ctrd = open_store("containerd", containerd.address)
    oci = open_store("oci", os.path.join(workdir, "layout"))
    pod = open_store("podman", "unix://" + podman.service())
    fresh = dockerd_factory()
    target = open_store("docker", fresh.host)

    hop(docker, APPS, reg, workdir, "docker-to-registry")
    assert_same(reg, docker_images, APPS)
    assert sorted(repo for repo in registry.catalog() if repo.startswith("airgap-test/")) == ["airgap-test/app-a", "airgap-test/app-b"]
    # a registry store mirrors names: docker.io/airgap-test/app-a:1 lives at <registry>/airgap-test/app-a:1
    pulled = hop(reg, APPS, ctrd, workdir, "registry-to-containerd")
    with open_archive(pulled) as archive:
        assert sorted(tag for image in archive.images for tag in image.repo_tags) == sorted(APPS)
    assert_same(ctrd, docker_images, APPS)
    hop(ctrd, APPS, oci, workdir, "containerd-to-oci")
    assert_same(oci, docker_images, APPS)
    hop(oci, APPS, pod, workdir, "oci-to-podman")
    assert_same(pod, docker_images, APPS)
    hop(pod, APPS, target, workdir, "podman-to-docker")
    for name in APPS:
        found = target.find(name)
        assert found.id == docker_images[name].id
        assert found.diff_ids == docker_images[name].diff_ids
        assert found.repo_tags == [name]


class CountingContainerdStore(ContainerdImageStore):
    """The real store, counting its ``ctr`` runs."""

    def __init__(self, *args, **kwargs):
        ContainerdImageStore.__init__(self, *args, **kwargs)
        self.ctr_runs = []

    def run(self, *args, **kwargs):
        self.ctr_runs.append(args[:2])
        return ContainerdImageStore.run(self, *args, **kwargs)


@pytest.mark.parametrize("generation", generation_params("containerd"))
def test_containerd_plans_a_load_in_two_ctr_runs(generation, engines, tmp_path):
    """Planning a load reads no image of the namespace when it can answer from ``ctr images ls`` and ``ctr content ls``:
    an image it holds is found by its manifest digest (a name points there, the manifest and config are in the
    content store); an image whose config blob the content store lacks cannot be there under any name, so it is to
    load (one that lost its config blob too: the load makes it whole again); an image held under another name is
    found by its manifest digest, to be tagged."""
    if generation.missing:
        pytest.skip("%s cannot run here: %s" % (generation.name, generation.missing))
    daemon = engines.containerd(generation=generation)
    base = layer_from_bytes(layer_tar({"base/data": b"base" * 1000}), "base")
    made = {name: build_image([base, layer_from_bytes(layer_tar({name + "/data": name.encode() * 1000}), name)],
                              [parse_reference("site/%s:1" % name)]) for name in ("app-a", "app-b", "app-c", "app-d", "new")}
    layout = OCIStore(str(tmp_path / "layout"))
    layout.import_images(list(made.values()))
    every = layout.images()
    assert all(image.manifest is not None for image in every)
    images = [image for image in every if "site/new:1" not in image.repo_tags]
    new = next(image for image in every if "site/new:1" in image.repo_tags)
    archive = str(tmp_path / "apps.tar")
    save_archive(images, archive)
    ContainerdImageStore(daemon.address, ctr=daemon.ctr_path).load(archive)
    two_runs = [("images", "ls"), ("content", "ls")]

    store = CountingContainerdStore(daemon.address, ctr=daemon.ctr_path)
    plan = plan_load(store, images + [new])
    assert not plan.to_tag and len(plan.present) == 4 and plan.to_load == [new]
    assert store.ctr_runs == two_runs
    verify_loaded(store, images)  # the same answers, no more ctr runs
    assert store.ctr_runs == two_runs

    app_a = next(image for image in images if "site/app-a:1" in image.repo_tags)
    daemon.ctr("content", "rm", app_a.id)
    store = CountingContainerdStore(daemon.address, ctr=daemon.ctr_path)
    plan = plan_load(store, images)
    assert plan.to_load == [app_a] and len(plan.present) == 3
    assert store.ctr_runs == two_runs
    ContainerdImageStore(daemon.address, ctr=daemon.ctr_path).load(archive, images=["site/app-a:1"])
    store = CountingContainerdStore(daemon.address, ctr=daemon.ctr_path)
    assert len(plan_load(store, images).present) == 4
    verify_loaded(store, images)

    renamed = app_a.with_references([parse_reference("site/renamed:1")])
    store = CountingContainerdStore(daemon.address, ctr=daemon.ctr_path)
    plan = plan_load(store, [renamed])
    assert [(image.repo_tags, [str(ref) for ref in missing]) for image, _present, missing in plan.to_tag] == [
        (["site/renamed:1"], ["docker.io/site/renamed:1"])]
    assert store.ctr_runs == two_runs  # a name points at its manifest: found by digest, to be tagged


@pytest.mark.parametrize("generation", generation_params("podman"))
def test_podman_plans_loads_and_checks_without_asking_for_its_info(generation, engines, tmp_path):
    """Podman's ``/info`` gathers the host's and the storage's whole state (0.2 s on Podman 4.3), and all it could tell
    the store is that Podman has no containerd image store: the plan, the load and the check never ask for it."""
    if generation.missing:
        pytest.skip("%s cannot run here: %s" % (generation.name, generation.missing))
    podman = engines.podman(generation=generation)
    base = layer_from_bytes(layer_tar({"base/data": b"base" * 1000}), "base")
    images = [build_image([base, layer_from_bytes(layer_tar({name + "/data": name.encode() * 1000}), name)],
                          [parse_reference("site/%s:1" % name)]) for name in ("app-a", "app-b")]
    archive_path = str(tmp_path / "apps.tar")
    save_archive(images, archive_path)
    store = open_store("podman", "unix://" + podman.service())
    asked = []
    send = store.client._send  # pylint: disable=protected-access

    def recording(method, url, stream, **kwargs):
        asked.append("%s %s" % (method, url.split("?", 1)[0]))
        return send(method, url, stream, **kwargs)
    store.client._send = recording  # pylint: disable=protected-access
    try:
        with open_archive(archive_path) as archive:
            assert len(plan_load(store, archive.images).to_load) == 2
            store.load(archive_path)
            verify_loaded(store, archive.images)
            plan = plan_load(store, archive.images)
        assert not plan.changed and sorted(entry["id"] for entry in plan.present) == sorted(image.id for image in images)
        assert any("/images/" in request for request in asked)
        assert not [request for request in asked if request.endswith("/info")]
    finally:
        store.close()


def test_thin_archive_loads_where_the_base_is_present(dockerd, dockerd_factory, containerd_factory, podman_factory,
                                                      docker_images, tmp_path):
    docker = open_store("docker", dockerd.host)
    base_path, thin_path = str(tmp_path / "base.tar"), str(tmp_path / "thin.tar")
    with docker.open_images(["airgap-test/lib:1", "airgap-test/app-a:1"], str(tmp_path)) as images:
        named = {image.repo_tags[0]: image for image in images}  # in the order Docker exported them
        lib, app = named["airgap-test/lib:1"], named["airgap-test/app-a:1"]
        save_archive([lib], base_path)
        save_archive([app], thin_path, omit_layers=lib.diff_ids)
    with open_archive(thin_path) as archive:
        assert [layer.available for layer in archive.images[0].layers] == [False, False, True]
    podman = podman_factory()
    targets = [open_store("docker", dockerd_factory().host), open_store("containerd", containerd_factory().address),
               open_store("podman", "unix://" + podman.service())]
    for target in targets:
        target.load(base_path)
        assert set(lib.diff_ids) <= target.held_layers()
        target.load(thin_path)
        found = target.find("airgap-test/app-a:1")
        assert found is not None and found.diff_ids == docker_images["airgap-test/app-a:1"].diff_ids, str(target)
        assert docker_images["airgap-test/app-a:1"].id in (found.id, found.config_digest)


def test_thin_archive_into_an_empty_engine_fails_clearly(dockerd, dockerd_factory, docker_images, tmp_path):
    docker = open_store("docker", dockerd.host)
    thin_path = str(tmp_path / "thin.tar")
    with docker.open_images(["airgap-test/app-b:1"], str(tmp_path)) as (app,):
        save_archive([app], thin_path, omit_layers=app.diff_ids[:1])
    empty = open_store("docker", dockerd_factory().host)
    with pytest.raises(StoreError) as err:
        empty.load(thin_path)
    assert "refused the load" in str(err.value)
    assert empty.find("airgap-test/app-b:1") is None


def test_tagging_and_subset_loading(dockerd, dockerd_factory, docker_images, docker_images_archive):
    target = open_store("docker", dockerd_factory().host)
    target.load(docker_images_archive, images=["airgap-test/app-b:1"])
    assert target.find("airgap-test/app-a:1") is None
    found = target.find("airgap-test/app-b:1")
    assert found.id == docker_images["airgap-test/app-b:1"].id
    target.tag(found, parse_reference("airgap-test/app-b:renamed"))
    assert target.find("airgap-test/app-b:renamed").id == found.id


def test_unreachable_engines_say_where_and_what_to_do(tmp_path):
    missing = str(tmp_path / "none.sock")
    for engine, host, fragment in (("docker", "unix://" + missing, "the socket does not exist"),
                                   ("podman", "unix://" + missing, "Podman at unix://"),
                                   ("containerd", missing, "is containerd running"),
                                   ("registry", "127.0.0.1:9", "cannot reach registry")):
        store = open_store(engine, host, insecure_http=True)
        with pytest.raises(StoreError) as err:
            store.find("airgap-test/app-a:1")
        assert fragment in str(err.value)
        assert missing in str(err.value) or "127.0.0.1:9" in str(err.value)


def test_registry_with_basic_auth_and_tls(registry_factory, dockerd, docker_images, tmp_path, capfd):
    secure = registry_factory(auth=("operator", "s3cret-Pa55"), tls=True)
    docker = open_store("docker", dockerd.host)
    archive = str(tmp_path / "app-a.tar")
    with docker.open_images(["airgap-test/app-a:1"], str(tmp_path)) as images:
        save_archive(images, archive)

    good = open_store("registry", secure.host, username="operator", password="s3cret-Pa55", ca_path=secure.ca_path)
    good.load(archive)
    found = good.find("airgap-test/app-a:1")
    assert found.config_digest == docker_images["airgap-test/app-a:1"].id
    assert found.diff_ids == docker_images["airgap-test/app-a:1"].diff_ids

    failures = []
    wrong = open_store("registry", secure.host, username="operator", password="wrong-Pa55", ca_path=secure.ca_path)
    with pytest.raises(StoreError) as err:
        wrong.find("airgap-test/app-a:1")
    failures.append(str(err.value))
    assert "authentication failed" in failures[-1]
    anonymous = open_store("registry", secure.host, ca_path=secure.ca_path, docker_config=str(tmp_path / "none.json"))
    with pytest.raises(StoreError) as err:
        anonymous.find("airgap-test/app-a:1")
    failures.append(str(err.value))
    assert "username and password" in failures[-1]
    untrusted = open_store("registry", secure.host, username="operator", password="s3cret-Pa55")
    with pytest.raises(StoreError) as err:
        untrusted.find("airgap-test/app-a:1")
    failures.append(str(err.value))
    assert "TLS verification failed" in failures[-1] and "ca_path" in failures[-1]
    unverified = open_store("registry", secure.host, username="operator", password="s3cret-Pa55", validate_certs=False)
    assert unverified.find("airgap-test/app-a:1").diff_ids == found.diff_ids

    captured = capfd.readouterr()
    for text in failures + [captured.out, captured.err]:
        assert "s3cret-Pa55" not in text and "wrong-Pa55" not in text


def test_registry_credentials_from_docker_config(registry_factory, dockerd, docker_images, tmp_path):
    secure = registry_factory(auth=("cfg-user", "cfg-Pa55"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {secure.host: {"auth": base64.b64encode(b"cfg-user:cfg-Pa55").decode()}}}))
    archive = str(tmp_path / "base.tar")
    with open_store("docker", dockerd.host).open_images(["airgap-test/base:1"], str(tmp_path)) as images:
        save_archive(images, archive)
    store = open_store("registry", secure.host, insecure_http=True, docker_config=str(config))
    store.load(archive)
    assert store.find("airgap-test/base:1").diff_ids == docker_images["airgap-test/base:1"].diff_ids


def test_docker_over_tcp_with_mutual_tls_from_the_environment(dockerd_factory, docker_images_archive, monkeypatch):
    secured = dockerd_factory(tls=True)
    monkeypatch.setenv("DOCKER_HOST", secured.tcp_host)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", secured.client_cert_path)
    store = open_store("docker")
    assert store.client.base_url == "https://" + secured.tcp_host.split("://", 1)[1]
    store.load(docker_images_archive, images=["airgap-test/base:1"])
    assert store.find("airgap-test/base:1").repo_tags == ["airgap-test/base:1"]
    assert store.client.api_version == "1.41"
    monkeypatch.setenv("DOCKER_CERT_PATH", "/nonexistent")
    with pytest.raises(StoreError) as err:
        open_store("docker").find("airgap-test/base:1")
    assert secured.tcp_host in str(err.value)


def test_stopped_engine_is_a_clear_error(dockerd_factory, docker_images_archive, engines):
    stopped = dockerd_factory()
    store = open_store("docker", stopped.host)
    store.load(docker_images_archive, images=["airgap-test/base:1"])
    engines.stop(stopped)
    with pytest.raises(StoreError) as err:
        store.find("airgap-test/base:1")
    assert "cannot reach Docker at %s" % stopped.host in str(err.value)
    assert "is the engine running" in str(err.value) or "socket does not exist" in str(err.value)


def test_registry_push_mounts_shared_layers_and_uploads_in_chunks(registry_factory, dockerd, docker_images, tmp_path):
    target = registry_factory()
    archive = str(tmp_path / "apps.tar")
    with open_store("docker", dockerd.host).open_images(list(APPS), str(tmp_path)) as images:
        save_archive(images, archive)
    store = open_store("registry", target.host, insecure_http=True)
    store.chunk_size = 256 * 1024  # every test layer (1.1 to 1.5 MB) goes up in several PATCH requests
    with open_archive(archive) as opened:
        uploaded = store.push(opened.images)
    shared = docker_images["airgap-test/lib:1"].diff_ids
    assert sorted(store.mounted) == sorted(shared)
    app_layers = [docker_images[name].diff_ids[-1] for name in APPS]
    assert uploaded < sum(docker_images[name].inspect["Size"] for name in APPS)
    for name in APPS:
        found = store.find(name)
        assert found.diff_ids == docker_images[name].diff_ids
        assert found.config_digest == docker_images[name].id
    for repo in ("airgap-test/app-a", "airgap-test/app-b"):
        for diff_id in shared:
            assert target.get("/v2/%s/blobs/%s" % (repo, diff_id))[0] == 200
    assert len(set(app_layers)) == 2


def test_registry_blob_download_resumes_after_a_broken_connection(registry, dockerd, docker_images, tmp_path):
    pushed = str(tmp_path / "base.tar")
    with open_store("docker", dockerd.host).open_images(["airgap-test/base:1"], str(tmp_path)) as images:
        save_archive(images, pushed)
    open_store("registry", registry.host, insecure_http=True).load(pushed)
    proxy = FaultProxy(int(registry.host.split(":")[1]))
    proxy.cut("GET", "/blobs/sha256:", after=200000)
    try:
        store = open_store("registry", "127.0.0.1:%d" % proxy.port, insecure_http=True)
        pulled = str(tmp_path / "pulled.tar")
        with store.open_images(["airgap-test/base:1"]) as images:
            save_archive(images, pulled)
        assert proxy.cuts == 1
        with open_archive(pulled) as archive:
            assert archive.images[0].id == docker_images["airgap-test/base:1"].id
            assert archive.images[0].diff_ids == docker_images["airgap-test/base:1"].diff_ids
    finally:
        proxy.close()


def test_registry_with_bearer_tokens(registry_factory, dockerd, docker_images, tmp_path):
    secured = registry_factory(auth=("robot", "t0ken-Pa55"), token=True)
    status, headers, _body = secured.get("/v2/", auth=False)
    assert status == 401 and headers.get("Www-Authenticate", headers.get("WWW-Authenticate", "")).startswith("Bearer ")
    archive = str(tmp_path / "lib.tar")
    with open_store("docker", dockerd.host).open_images(["airgap-test/lib:1"], str(tmp_path)) as images:
        save_archive(images, archive)
    store = open_store("registry", secured.host, username="robot", password="t0ken-Pa55", insecure_http=True)
    store.load(archive)
    assert store.find("airgap-test/lib:1").config_digest == docker_images["airgap-test/lib:1"].id
    assert secured.token_server.requests >= 2  # a push scope and a pull scope at least
    wrong = open_store("registry", secured.host, username="robot", password="nope", insecure_http=True)
    with pytest.raises(StoreError) as err:
        wrong.find("airgap-test/lib:1")
    assert "authentication failed" in str(err.value) and "nope" not in str(err.value)
