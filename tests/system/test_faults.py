# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults against the real thing: full disks, engines killed mid-load, two writers, a registry that fails."""

import fcntl
import glob
import os
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, write_directory_layer
from ansible_collections.airgap.images.plugins.module_utils.digest import drain
from ansible_collections.airgap.images.plugins.module_utils.errors import StoreError
from ansible_collections.airgap.images.plugins.module_utils.model import Layer
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
from ansible_collections.airgap.images.tests.system.faults import (
    FaultProxy, VerbosePlaybook, contents, fill, leftovers, lock_waiters, small_filesystem, wait_for)
from ansible_collections.airgap.images.tests.system.playbooks import Playbook
from ansible_collections.airgap.images.tests.system.test_modules import load_task, save_task

BASE, LIB, APP_A, APP_B = "airgap-test/base:1", "airgap-test/lib:1", "airgap-test/app-a:1", "airgap-test/app-b:1"
APPS = [APP_A, APP_B]
MIB = 1024 * 1024
BIG = "airgap-test/big:1"
BIG_SIZE = 200 * MIB


class BigArchive:
    def __init__(self, path, image_id):
        self.path = path
        self.id = image_id


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory):
    """An archive of one image with one ~200 MB layer, built without an engine."""
    folder = tmp_path_factory.mktemp("big")
    content = folder / "content"
    content.mkdir()
    with open(content / "big.bin", "wb") as out:
        for _chunk in range(BIG_SIZE // MIB):
            out.write(os.urandom(MIB))
    layer_path = str(folder / "layer.tar")
    with open(layer_path, "wb") as sink:
        diff_id, size = write_directory_layer(str(content), sink)
    os.unlink(content / "big.bin")
    image = build_image([Layer(diff_id, lambda: open(layer_path, "rb"), size=size)], [parse_reference(BIG)])
    path = str(folder / "big.tar")
    save_archive([image], path)
    os.unlink(layer_path)
    return BigArchive(path, image.id)


def distinct_layer_bytes(docker_images, names):
    """What an export of ``names`` weighs at least: each layer once (sizes from the engine's inspect)."""
    sizes = {}
    for name in names:
        inspect = docker_images[name].inspect
        sizes[inspect["Id"]] = inspect["Size"]
    lib_size = docker_images[LIB].inspect["Size"]
    return sum(sizes.values()) - lib_size * (len(names) - 1)


# Disk full ------------------------------------------------------------------------------------------------

def test_save_on_a_full_disk_fails_clearly_and_keeps_the_old_archive(playbook, dockerd, docker_images, tmp_path):
    mount = str(tmp_path / "small")
    engine = dict(engine="docker", engine_host=dockerd.host)
    with small_filesystem(mount, 9 * MIB):
        dest = os.path.join(mount, "apps.tar")
        playbook.run([save_task(dest, [BASE], **engine)])
        before = contents(mount)
        (mid_write, preflight), _out = playbook.run(
            [save_task(dest, APPS, compression="gzip", **engine), save_task(dest, APPS, **engine)], expect_failure=True)
        assert mid_write["failed"] and "no space left on %s for %s" % (mount, dest) in mid_write["msg"]
        assert preflight["failed"] and "no space left on %s for %s: need about" % (mount, dest) in preflight["msg"]
        for failed in (mid_write, preflight):
            assert "choose a dest on a larger filesystem" in failed["msg"] and "unexpected" not in failed["msg"]
        assert contents(mount) == before and leftovers(mount) == []

        largest = max(docker_images[name].inspect["Size"] for name in APPS)
        fill(os.path.join(mount, "filler"), (largest + distinct_layer_bytes(docker_images, APPS)) // 2)
        before = contents(mount)
        (export,), _out = playbook.run([save_task(dest, APPS, **engine)], expect_failure=True)
        assert export["failed"] and "no space left on %s for the export from Docker at %s" % (mount, dockerd.host) in export["msg"]
        assert contents(mount) == before and leftovers(mount) == []


def test_separate_on_a_full_disk_fails_clearly_and_keeps_the_old_tarballs(playbook, docker_images_archive, tmp_path):
    mount = str(tmp_path / "small")
    with small_filesystem(mount, 6 * MIB):
        dest = os.path.join(mount, "sep")
        options = dict(src=docker_images_archive, base=BASE, lib=LIB, dest=dest)
        playbook.run([{"airgap.images.image_separate": dict(options, images=[APP_A])}])
        before = contents(dest)
        assert len(before) == 4  # base, lib and app tarballs, manifest
        (mid_write, preflight), _out = playbook.run([
            {"airgap.images.image_separate": dict(options, images=APPS)},
            {"airgap.images.image_separate": dict(options, images=APPS, compression="none")}], expect_failure=True)
        assert mid_write["failed"] and "no space left on %s for %s: " % (mount, dest) in mid_write["msg"]
        assert preflight["failed"] and "no space left on %s for %s: need about" % (mount, dest) in preflight["msg"]
        assert contents(dest) == before and leftovers(mount) == []


# Engines killed mid-load ----------------------------------------------------------------------------------

def kill_during_load(playbook, task, daemon, loading, what):
    """Run ``task``, SIGKILL ``daemon`` once ``loading()`` says the load is under way; the task's result."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(playbook.run, [task], expect_failure=True)
        try:
            wait_for(loading, 120, what)
        finally:
            daemon.kill()
        (result,), _out = running.result()
    return result


def assert_converges(playbook, task, present_before):
    (again, third), _out = playbook.run([task, task])
    assert again["changed"] == (not present_before)
    assert not third["changed"]


def test_dockerd_killed_during_a_load(playbook, dockerd_factory, big_archive):
    daemon = dockerd_factory()
    task = load_task(big_archive.path, engine="docker", engine_host=daemon.host)
    failed = kill_during_load(playbook, task, daemon, lambda: glob.glob(os.path.join(daemon.data_root, "tmp", "docker-import-*")),
                              "dockerd receiving the load")
    assert failed["failed"]
    assert "Docker at %s" % daemon.host in failed["msg"] and "re-run the task" in failed["msg"], failed["msg"]
    daemon.restart()
    assert_converges(playbook, task, big_archive.id in daemon.image_ids())
    assert daemon.inspect(BIG)[0]["Id"] == big_archive.id


def ingesting_more_than(ingest, size):
    """Whether containerd's content store is receiving a blob and has more than ``size`` bytes of it."""
    return any(os.path.getsize(path) > size for path in glob.glob(os.path.join(ingest, "*", "data")))


def test_containerd_killed_during_a_load(playbook, containerd_factory, big_archive):
    daemon = containerd_factory()
    ingest = os.path.join(daemon.root, "io.containerd.content.v1.content", "ingest")
    task = load_task(big_archive.path, engine="containerd", engine_host=daemon.address)
    failed = kill_during_load(playbook, task, daemon, lambda: ingesting_more_than(ingest, 20 * MIB),
                              "containerd receiving the big layer")
    assert failed["failed"]
    assert "containerd at %s" % daemon.address in failed["msg"] and "re-run the task" in failed["msg"], failed["msg"]
    daemon.restart()
    assert_converges(playbook, task, "docker.io/" + BIG in daemon.image_refs())
    found = open_store("containerd", daemon.address).find(BIG)
    assert big_archive.id in (found.id, found.config_digest)


# Two writers ----------------------------------------------------------------------------------------------

def test_two_saves_to_one_dest_take_turns(collections_path, dockerd, docker_images, tmp_path):
    dest, sequential = str(tmp_path / "apps.tar.gz"), str(tmp_path / "sequential.tar.gz")
    engine = dict(engine="docker", engine_host=dockerd.host, compression="gzip")
    runs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        runs.append(Playbook(collections_path, str(tmp_path / name)))
    lock_path = str(tmp_path / ".apps.tar.gz.lock")
    with open(lock_path, "w") as held, ThreadPoolExecutor(max_workers=2) as pool:
        fcntl.flock(held, fcntl.LOCK_EX)  # both tasks start and wait here, so they really race for dest
        first = pool.submit(runs[0].run, [save_task(dest, APPS, **engine), save_task(sequential, APPS, **engine)])
        second = pool.submit(runs[1].run, [save_task(dest, APPS, **engine)])
        wait_for(lambda: lock_waiters(lock_path) == 2, 120, "both tasks waiting for the lock on %s" % dest, interval=0.1)
        assert not os.path.exists(dest)
        fcntl.flock(held, fcntl.LOCK_UN)
        (one, _sequential_result), _out = first.result()
        (two,), _out = second.result()
    assert sorted([one["changed"], two["changed"]]) == [False, True]
    assert "already holds" in (two if one["changed"] else one)["msg"]
    with open(dest, "rb") as raced, open(sequential, "rb") as alone:
        assert raced.read() == alone.read()
    with open_archive(dest) as archive:
        assert [image.id for image in archive.images] == [docker_images[name].id for name in APPS]
        for image in archive.images:
            for layer in image.layers:
                with layer.open() as stream:
                    assert drain(stream) > 0  # the DiffID is verified as the stream ends
    assert leftovers(str(tmp_path)) == []


# Registry errors ------------------------------------------------------------------------------------------

@pytest.fixture
def token_registry(registry_factory, dockerd, docker_images, tmp_path):  # pylint: disable=unused-argument
    """A registry with Bearer tokens holding airgap-test/base:1, behind a FaultProxy: (registry, proxy)."""
    secured = registry_factory(auth=("robot", SECRET), token=True)
    archive = str(tmp_path / "base.tar")
    with open_store("docker", dockerd.host).open_images([BASE], str(tmp_path)) as images:
        save_archive(images, archive)
    open_store("registry", secured.host, username="robot", password=SECRET, insecure_http=True).load(archive)
    proxy = FaultProxy(int(secured.host.split(":")[1]))
    yield secured, proxy
    proxy.close()


SECRET = "Regi5try-Pa55-w0rd"


def registry_store(proxy, password=SECRET):
    store = open_store("registry", proxy.host, username="robot", password=password, insecure_http=True)
    store.backoff = 0.01
    return store


def pull(store, tmp_path, name=BASE):
    path = str(tmp_path / "pulled.tar")
    with store.open_images([name]) as images:
        save_archive(images, path)
    return path


def secrets_in(texts, proxy):
    tokens = [value.split(" ", 1)[1] for value in proxy.authorizations if value.startswith("Bearer ")]
    assert tokens, "no bearer token went through the proxy"
    return [secret for secret in [SECRET] + tokens for text in texts if secret in text]


def test_registry_retries_what_is_safe_and_resumes_broken_downloads(token_registry, docker_images, tmp_path):
    _registry, proxy = token_registry
    proxy.fail("GET", "/manifests/1", 500, times=2)
    proxy.fail("HEAD", "/blobs/sha256:", 503, times=1)
    proxy.cut("GET", "/blobs/" + docker_images[BASE].diff_ids[0], after=300000, times=2)  # the layer, not the config
    with open_archive(pull(registry_store(proxy), tmp_path)) as archive:
        assert archive.images[0].id == docker_images[BASE].id
        for layer in archive.images[0].layers:
            with layer.open() as stream:
                drain(stream)
    assert proxy.cuts == 2
    assert [fault for method, path, fault in proxy.seen if "/manifests/1" in path].count("status") == 2
    assert not [rule for rule in proxy.rules if rule.times]


def test_registry_upload_restarts_after_a_reset(token_registry, dockerd, docker_images, tmp_path):
    _registry, proxy = token_registry
    archive = str(tmp_path / "lib.tar")
    with open_store("docker", dockerd.host).open_images([LIB], str(tmp_path)) as images:
        save_archive(images, archive)
    proxy.reset("PUT", "/blobs/uploads/", times=1)
    store = registry_store(proxy)
    store.load(archive)
    assert [fault for method, path, fault in proxy.seen].count("reset") == 1
    assert store.find(LIB).config_digest == docker_images[LIB].id


def test_registry_failures_say_what_failed_and_keep_secrets(token_registry, tmp_path):
    _registry, proxy = token_registry
    proxy.fail("GET", "/manifests/1", 500, times=100)
    failures = []
    with pytest.raises(StoreError) as err:
        registry_store(proxy).find(BASE)
    failures.append(str(err.value) + traceback.format_exc())
    assert "HTTP 500" in failures[-1] and "after 4 attempts" in failures[-1]
    assert [fault for method, path, fault in proxy.seen if "/manifests/1" in path].count("status") == 4
    proxy.rules.clear()
    proxy.cut("GET", "/blobs/sha256:", after=100000, times=100)
    with pytest.raises(StoreError) as err:
        pull(registry_store(proxy), tmp_path)
    failures.append(str(err.value) + traceback.format_exc())
    assert "broke 4 times" in failures[-1] and "airgap-test/base" in failures[-1]
    with pytest.raises(StoreError) as err:
        registry_store(proxy, password="not-" + SECRET).find(BASE)
    failures.append(str(err.value) + traceback.format_exc())
    assert "authentication failed for registry http://%s" % proxy.host in failures[-1]
    assert "check username and password" in failures[-1]
    assert secrets_in(failures, proxy) == []


def test_registry_faults_through_a_playbook(collections_path, token_registry, docker_images, tmp_path):
    _registry, proxy = token_registry
    proxy.fail("GET", "/manifests/1", 500, times=2)
    proxy.cut("GET", "/blobs/" + docker_images[BASE].diff_ids[0], after=300000, times=1)
    proxy.fail("GET", "/manifests/flaky", 502, times=100)
    run = VerbosePlaybook(collections_path, str(tmp_path))
    options = dict(engine="registry", engine_host=proxy.host, username="robot", password=SECRET, insecure_registry=True)
    dest = str(tmp_path / "saved.tar")
    wrong_password = dict(options)
    wrong_password["password"] = "wrong-" + SECRET
    results, out = run.run([save_task(dest, [BASE], **options),
                            save_task(str(tmp_path / "wrong.tar"), [BASE], **wrong_password),
                            save_task(str(tmp_path / "missing.tar"), ["airgap-test/base:missing"], **options),
                            save_task(str(tmp_path / "flaky.tar"), ["airgap-test/base:flaky"], **options)], expect_failure=True)
    saved, wrong, missing, flaky = results
    assert saved["changed"] and not saved.get("failed") and proxy.cuts == 1
    assert [image["id"] for image in saved["images"]] == [docker_images[BASE].id]
    assert wrong["failed"] and "authentication failed for registry http://%s" % proxy.host in wrong["msg"]
    assert "check username and password" in wrong["msg"]
    assert missing["failed"] and "airgap-test/base:missing" in missing["msg"] and "not found" in missing["msg"]
    assert flaky["failed"] and "HTTP 502" in flaky["msg"] and "after 4 attempts" in flaky["msg"]
    assert secrets_in([out, run.log()], proxy) == []
    assert leftovers(str(tmp_path)) == []
