# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules through ansible-playbook, with the collection built and installed, against the real engines."""

import hashlib
import os
import signal
import subprocess
import tarfile
import threading
import time

import pytest

from ansible_collections.airgap.images.tests.system.playbooks import BIN, clean_env

APP_A, APP_B = "airgap-test/app-a:1", "airgap-test/app-b:1"


def save_task(dest, images, **options):
    args = dict(images=images, dest=dest)
    args.update(options)
    return {"airgap.images.image_save": args}


def load_task(src, **options):
    args = dict(src=src)
    args.update(options)
    return {"airgap.images.image_load": args}


def test_save_is_idempotent_atomic_and_check_mode_predicts(playbook, dockerd, docker_images, tmp_path):
    dest = str(tmp_path / "apps.tar.gz")
    engine = dict(engine="docker", engine_host=dockerd.host, compression="gzip")
    (checked,), _out = playbook.run([save_task(dest, [APP_A, APP_B], **engine)], check=True)
    assert checked["changed"] and not os.path.exists(dest)
    assert "does not exist" in checked["msg"]
    (first,), _out = playbook.run([save_task(dest, [APP_A, APP_B], mode="0640", **engine)])
    assert first["changed"] and first["sha256"].startswith("sha256:") and first["compressor"] in ("isal", "zlib")
    assert [image["id"] for image in first["images"]] == [docker_images[APP_A].id, docker_images[APP_B].id]
    assert oct(os.stat(dest).st_mode & 0o777) == "0o640"
    mtime = os.stat(dest).st_mtime_ns
    (second,), _out = playbook.run([save_task(dest, [APP_A, APP_B], mode="0640", **engine)], diff=True)
    assert not second["changed"] and second["sha256"] is None
    assert "already holds" in second["msg"]
    assert os.stat(dest).st_mtime_ns == mtime
    (third,), _out = playbook.run([save_task(dest, [APP_A], **engine)], check=True, diff=True)
    assert third["changed"] and "also holds" in third["msg"]
    assert os.stat(dest).st_mtime_ns == mtime


def test_save_notices_a_retag_and_names_it(playbook, dockerd_factory, docker_images_archive, tmp_path):
    engine = dockerd_factory()
    engine.cli("load", "-i", docker_images_archive)
    dest = str(tmp_path / "b.tar")
    options = dict(engine="docker", engine_host=engine.host)
    playbook.run([save_task(dest, [APP_B], **options)])
    engine.cli("tag", "airgap-test/lib:1", APP_B)  # the tag now points at another image
    (again,), _out = playbook.run([save_task(dest, [APP_B], **options)])
    assert again["changed"]
    assert APP_B in again["msg"] and "content differs" in again["msg"]


@pytest.mark.parametrize("engine_name", ["docker", "podman", "containerd", "registry", "oci"])
def test_round_trip_through_each_engine(playbook, engine_name, dockerd, dockerd_factory, containerd_factory, podman_factory,
                                        registry_factory, docker_images, tmp_path):
    if engine_name == "docker":
        target = dict(engine="docker", engine_host=dockerd_factory().host)
    elif engine_name == "podman":
        target = dict(engine="podman", engine_host="unix://" + podman_factory().service())
    elif engine_name == "containerd":
        target = dict(engine="containerd", engine_host=containerd_factory().address)
    elif engine_name == "registry":
        target = dict(engine="registry", engine_host=registry_factory().host, insecure_registry=True)
    else:
        target = dict(engine="oci", engine_host=str(tmp_path / "layout"))
    bundle = str(tmp_path / "bundle.tar")
    playbook.run([save_task(bundle, [APP_A, APP_B], engine="docker", engine_host=dockerd.host)])
    (predicted, predicted_again), _out = playbook.run([load_task(bundle, **target), load_task(bundle, **target)], check=True)
    assert predicted["changed"] and sorted(predicted["loaded"]) == sorted([docker_images[APP_A].id, docker_images[APP_B].id])
    assert predicted_again["loaded"] == predicted["loaded"]  # the first check-mode run changed nothing
    (loaded, archived), _out = playbook.run([load_task(bundle, **target),
                                            save_task(str(tmp_path / "back.tar"), [APP_A, APP_B], **target)])
    assert loaded["changed"] and loaded["bytes_sent"] == _layer_and_config_bytes(bundle, [docker_images[APP_A], docker_images[APP_B]])
    assert [image["id"] for image in archived["images"]] == [docker_images[APP_A].id, docker_images[APP_B].id]
    assert [image["diff_ids"] for image in archived["images"]] == [docker_images[APP_A].diff_ids, docker_images[APP_B].diff_ids]
    (reloaded, resaved), _out = playbook.run([load_task(bundle, **target), save_task(str(tmp_path / "back.tar"), [APP_A, APP_B], **target)])
    assert not reloaded["changed"] and reloaded["loaded"] == [] and len(reloaded["present"]) == 2
    assert not resaved["changed"]


def _layer_and_config_bytes(archive, images):
    """What a load of ``images`` from the uncompressed ``archive`` sends: each layer blob and config once, by tar member size."""
    wanted = {"blobs/sha256/" + digest.split(":", 1)[1] for image in images for digest in image.diff_ids + [image.id]}
    with tarfile.open(archive) as tar:
        return sum(member.size for member in tar.getmembers() if member.name in wanted)


def test_load_only_tags_images_present_under_other_tags(playbook, dockerd_factory, docker_images, docker_images_archive, tmp_path):
    source, target = dockerd_factory(), dockerd_factory()
    source.cli("load", "-i", docker_images_archive)
    source.cli("tag", APP_A, "airgap-test/app-a:stable")
    bundle = str(tmp_path / "bundle.tar")
    playbook.run([save_task(bundle, [APP_A, "airgap-test/app-a:stable"], engine="docker", engine_host=source.host)])
    target.cli("load", "-i", docker_images_archive)
    time.sleep(1.1)  # docker events --since has one-second resolution
    since = int(time.time())
    (result,), _out = playbook.run([load_task(bundle, engine="docker", engine_host=target.host)])
    assert result["changed"] and result["loaded"] == [] and result["tagged"] == ["airgap-test/app-a:stable"]
    assert result["bytes_sent"] == 0
    assert target.inspect("airgap-test/app-a:stable")[0]["Id"] == docker_images[APP_A].id
    events = target.cli("events", "--since", str(since), "--until", str(int(time.time()) + 1), "--filter", "type=image",
                        "--format", "{{.Action}}").stdout.split()
    assert "tag" in events and "load" not in events


@pytest.mark.parametrize("way", ["module", "worker"])
def test_interrupted_save_leaves_the_previous_archive(playbook, dockerd_factory, docker_images_archive, tmp_path, way):
    """SIGTERM to the save midway, as a module process (another Python) and in Ansible's worker process (the
    controller's Python): the previous archive stays, no temporary file is left."""
    engine = dockerd_factory()
    engine.cli("load", "-i", docker_images_archive)
    context = tmp_path / "big"
    context.mkdir()
    with open(str(context / "blob"), "wb") as out:
        for _chunk in range(300):
            out.write(os.urandom(1 << 20))
    (context / "Dockerfile").write_text("FROM scratch\nCOPY blob /blob\n")
    engine.cli("build", "-q", "-t", "airgap-test/big:1", str(context))
    dest = str(tmp_path / "bundle.tar")
    options = dict(engine="docker", engine_host=engine.host)
    python = "/usr/bin/python3" if way == "module" else None
    playbook.run([save_task(dest, [APP_B], **options)], python=python)
    before = _sha256(dest)
    outcome = {}

    def interrupted_play():
        try:
            playbook.run([save_task(dest, ["airgap-test/big:1"], **options)], expect_failure=True, python=python)
            outcome["play"] = "failed task"
        except FileNotFoundError:  # a killed worker stops the play before it writes the results
            outcome["play"] = "stopped"
    play = threading.Thread(target=interrupted_play, daemon=True)
    play.start()
    temp = _wait_for_growing_temp(str(tmp_path), "airgap-export", deadline=time.time() + 60)
    assert temp, "the save never started writing"
    saving = _module_processes() if way == "module" else _ansible_workers()
    assert saving, "no %s process runs the save" % way
    for pid in saving:
        os.kill(pid, signal.SIGTERM)
    play.join(60)
    assert not play.is_alive() and outcome["play"] in (("failed task",) if way == "module" else ("failed task", "stopped"))
    assert _sha256(dest) == before
    leftovers = [name for name in os.listdir(str(tmp_path)) if name.startswith(".") and name.endswith((".tmp", ".tar"))]
    assert leftovers == []


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _ansible_workers():
    """PIDs of ansible-playbook's worker processes: children of an ansible-playbook that run it too (forked)."""
    playbooks = {pid: parent for pid, parent, cmdline in _processes() if b"ansible-playbook" in cmdline}
    return [pid for pid, parent in playbooks.items() if parent in playbooks]


def _processes():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ")
            with open("/proc/%s/stat" % pid) as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        yield int(pid), parent, cmdline


def _wait_for_growing_temp(folder, marker, deadline):
    while time.time() < deadline:
        for name in os.listdir(folder):
            if marker in name and os.path.getsize(os.path.join(folder, name)) > (1 << 20):
                return name
        time.sleep(0.05)
    return None


def _module_processes():
    """PIDs of running Ansible module processes (AnsiballZ payloads) of image_save."""
    return [pid for pid, _parent, cmdline in _processes() if b"AnsiballZ_image_save" in cmdline]


def test_archive_info_reports_and_verifies(playbook, dockerd, docker_images, tmp_path):
    bundle = str(tmp_path / "bundle.tar.zst")
    playbook.run([save_task(bundle, [APP_A], engine="docker", engine_host=dockerd.host, compression="zstd")])
    (info, verified), _out = playbook.run([{"airgap.images.image_archive_info": {"path": bundle}},
                                           {"airgap.images.image_archive_info": {"path": bundle, "verify": True}}])
    assert not info["changed"] and info["format"] == "docker-archive+oci" and info["compression"] == "zstd"
    (image,) = info["images"]
    assert image["id"] == docker_images[APP_A].id and image["repo_tags"] == [APP_A]
    assert [layer["diff_id"] for layer in image["layers"]] == docker_images[APP_A].diff_ids
    assert image["os"] == "linux" and image["architecture"] == "amd64"
    assert all(layer["verified"] for layer in verified["images"][0]["layers"])


def test_ansible_doc_renders_every_module(collections_path):
    env = clean_env(ANSIBLE_COLLECTIONS_PATH=collections_path)
    for module in ("image_save", "image_load", "image_archive_info"):
        done = subprocess.run([os.path.join(BIN, "ansible-doc"), "airgap.images." + module], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert "EXAMPLES" in done.stdout and "RETURN VALUES" in done.stdout
        assert "engine_host" in done.stdout or module == "image_archive_info"


BARE_PYTHON = "/usr/bin/python3"  # Debian's python3: the standard library only, no requests, isal or zstandard
# (tests/system/test_bare_python_hosts.py runs every store and the role on a bare venv)


@pytest.mark.skipif(subprocess.run([BARE_PYTHON, "-c", "import requests"], capture_output=True, check=False).returncode == 0,
                    reason="Debian's python3 has requests here")
def test_a_host_with_only_the_standard_library(playbook, dockerd, docker_images, tmp_path):
    bundle = str(tmp_path / "bundle.tar")
    playbook.run([save_task(bundle, [APP_A], engine="docker", engine_host=dockerd.host)])
    layout = str(tmp_path / "layout")
    (saved, loaded, resaved, zstd), _out = playbook.run([
        save_task(str(tmp_path / "x.tar"), [APP_A], engine="docker", engine_host=dockerd.host),
        load_task(bundle, engine="oci", engine_host=layout),
        save_task(str(tmp_path / "again.tar.gz"), [APP_A], engine="oci", engine_host=layout, compression="gzip"),
        save_task(str(tmp_path / "again.tar.zst"), [APP_A], engine="oci", engine_host=layout, compression="zstd"),
    ], expect_failure=True, python=BARE_PYTHON)
    assert saved["changed"] and [image["id"] for image in saved["images"]] == [docker_images[APP_A].id]  # HTTP: the stdlib's
    assert loaded["changed"] and loaded["loaded"] == [docker_images[APP_A].id]
    assert resaved["changed"] and resaved["compressor"] == "zlib"
    assert zstd["failed"] and "pip install zstandard" in zstd["msg"]
    assert not os.path.exists(str(tmp_path / "again.tar.zst"))


def test_truncated_archive_fails_before_anything_is_loaded(playbook, dockerd, dockerd_factory, tmp_path):
    bundle = str(tmp_path / "bundle.tar")
    playbook.run([save_task(bundle, [APP_A, APP_B], engine="docker", engine_host=dockerd.host)])
    with open(bundle, "r+b") as handle:
        handle.truncate(os.path.getsize(bundle) - 700000)
    target = dockerd_factory()
    (result,), _out = playbook.run([load_task(bundle, engine="docker", engine_host=target.host)], expect_failure=True)
    assert result["failed"] and "truncated" in result["msg"] and bundle in result["msg"]
    assert target.image_ids() == set()


@pytest.mark.parametrize("archive_format", ["oci-archive", "oci-dir"])
def test_oci_formats_are_idempotent_and_read_by_skopeo(playbook, dockerd, docker_images, skopeo, tmp_path, archive_format):
    dest = str(tmp_path / ("out.tar" if archive_format == "oci-archive" else "layout"))
    task = save_task(dest, [APP_A], engine="docker", engine_host=dockerd.host, format=archive_format)
    (first, second), _out = playbook.run([task, task])
    assert first["changed"] and not second["changed"]
    transport = "oci-archive" if archive_format == "oci-archive" else "oci"
    raw = skopeo.inspect("%s:%s" % (transport, dest), "--raw")
    assert raw["config"]["digest"] == docker_images[APP_A].id
    assert [layer["digest"] for layer in raw["layers"]] == docker_images[APP_A].diff_ids
