# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""image_separate and image_load's separated option, through ansible-playbook, against real engines."""

import json
import os
import shutil

import pytest

BASE, LIB = "airgap-test/base:1", "airgap-test/lib:1"
APP_A, APP_B = "airgap-test/app-a:1", "airgap-test/app-b:1"
ISULA_FIELDS = {"app", "appHash", "appLayers", "lib", "libHash", "libImageName", "libLayers",
                "base", "baseHash", "baseImageName", "baseLayer"}


def separate_task(dest, apps, engine, **options):
    args = dict(images=apps, base=BASE, dest=dest, **engine)
    args.update(options)
    return {"airgap.images.image_separate": args}


def load_separated(directory, app, engine, **options):
    separated = dict(dir=directory, app=app)
    separated.update(options)
    return {"airgap.images.image_load": dict(separated=separated, **engine)}


def snapshot(folder):
    return {name: (os.stat(os.path.join(folder, name)).st_mtime_ns, open(os.path.join(folder, name), "rb").read())
            for name in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def separated_dir(tmp_path_factory, collections_path, dockerd, docker_images):
    from ansible_collections.airgap.images.tests.system.playbooks import Playbook  # pylint: disable=import-outside-toplevel
    work = tmp_path_factory.mktemp("separated")
    dest = str(work / "out")
    engine = dict(engine="docker", engine_host=dockerd.host)
    (result,), _out = Playbook(collections_path, str(work)).run([separate_task(dest, [APP_B, APP_A], engine, lib=LIB)])
    return dest, result


def test_one_base_one_lib_two_apps_with_isula_manifest(separated_dir, docker_images):
    dest, result = separated_dir
    assert result["changed"]
    names = sorted(os.listdir(dest))
    assert names == ["app-a_1_app_image.tar.gz", "app-a_1_base_image.tar.gz", "app-a_1_lib_image.tar.gz",
                     "app-b_1_app_image.tar.gz", "manifest"]
    manifest = json.load(open(os.path.join(dest, "manifest")))
    assert sorted(manifest) == [APP_A, APP_B]
    for app in (APP_A, APP_B):
        entry = manifest[app]
        assert ISULA_FIELDS <= set(entry)
        assert entry["base"] == "app-a_1_base_image.tar.gz" and entry["lib"] == "app-a_1_lib_image.tar.gz"
        assert entry["baseImageName"] == BASE and entry["libImageName"] == LIB
        diff_ids = docker_images[app].diff_ids
        assert entry["baseLayer"] == diff_ids[0].split(":")[1]
        assert entry["libLayers"] == [diff_ids[1].split(":")[1]] and entry["appLayers"] == [diff_ids[2].split(":")[1]]
        import hashlib  # pylint: disable=import-outside-toplevel
        for kind in ("app", "lib", "base"):
            assert hashlib.sha256(open(os.path.join(dest, entry[kind]), "rb").read()).hexdigest() == entry[kind + "Hash"]
        assert entry["airgap"]["imageId"] == docker_images[app].id
    assert result["bytes_written"] < result["naive_bytes"]


@pytest.mark.parametrize("target_kind", ["docker", "containerd", "oci"])
def test_each_app_loads_with_its_id_and_tags(separated_dir, playbook, docker_images, target_kind, dockerd_factory,
                                             containerd_factory, tmp_path):
    dest, _result = separated_dir
    if target_kind == "docker":
        target = dict(engine="docker", engine_host=dockerd_factory().host)
    elif target_kind == "containerd":
        target = dict(engine="containerd", engine_host=containerd_factory().address)
    else:
        target = dict(engine="oci", engine_host=str(tmp_path / "layout"))
    (first, second, again), _out = playbook.run([load_separated(dest, APP_A, target), load_separated(dest, APP_B, target),
                                                 load_separated(dest, APP_A, target)])
    assert first["changed"] and first["loaded"] == [docker_images[APP_A].id]
    assert second["changed"] and second["loaded"] == [docker_images[APP_B].id]
    assert not again["changed"] and again["loaded"] == []
    (saved,), _out = playbook.run([{"airgap.images.image_save": dict(images=[APP_A, APP_B], dest=str(tmp_path / "check.tar"), **target)}])
    assert [image["id"] for image in saved["images"]] == [docker_images[APP_A].id, docker_images[APP_B].id]
    assert [image["repo_tags"] for image in saved["images"]] == [[APP_A], [APP_B]]


def test_rerun_is_unchanged_and_a_clean_dest_is_byte_identical(separated_dir, playbook, dockerd, tmp_path):
    dest, _result = separated_dir
    before = snapshot(dest)
    engine = dict(engine="docker", engine_host=dockerd.host)
    (again,), _out = playbook.run([separate_task(dest, [APP_A, APP_B], engine, lib=LIB)])
    assert not again["changed"] and all(item["reused"] for item in again["files"])
    assert snapshot(dest) == before
    clean = str(tmp_path / "clean")
    (fresh,), _out = playbook.run([separate_task(clean, [APP_A, APP_B], engine, lib=LIB)])
    assert fresh["changed"]
    assert {name: data for name, (_mtime, data) in snapshot(clean).items()} == {name: data for name, (_m, data) in before.items()}


def test_tampered_tarball_is_refused_before_loading(separated_dir, playbook, dockerd_factory, tmp_path):
    source, _result = separated_dir
    dest = str(tmp_path / "copy")
    shutil.copytree(source, dest)
    app = os.path.join(dest, "app-b_1_app_image.tar.gz")
    data = bytearray(open(app, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(app, "wb").write(bytes(data))
    target = dockerd_factory()
    engine = dict(engine="docker", engine_host=target.host)
    (refused, unverified), _out = playbook.run([load_separated(dest, APP_B, engine), load_separated(dest, APP_B, engine, verify=False)],
                                               expect_failure=True)
    assert refused["failed"] and "app-b_1_app_image.tar.gz" in refused["msg"] and "nothing was loaded" in refused["msg"]
    manifest = json.load(open(os.path.join(dest, "manifest")))
    assert manifest[APP_B]["appHash"] in refused["msg"]
    assert unverified["failed"]
    assert target.image_ids() == set()


def test_thin_load_without_the_base_tarball(separated_dir, playbook, dockerd_factory, docker_images, tmp_path):
    source, _result = separated_dir
    dest = str(tmp_path / "thin")
    shutil.copytree(source, dest)
    os.remove(os.path.join(dest, "app-a_1_base_image.tar.gz"))
    os.remove(os.path.join(dest, "app-a_1_lib_image.tar.gz"))
    target = dockerd_factory()
    engine = dict(engine="docker", engine_host=target.host)
    (empty,), _out = playbook.run([load_separated(dest, APP_B, engine)], expect_failure=True)
    assert empty["failed"] and "does not have it" in empty["msg"]
    target.cli("load", "-i", _lib_archive(target, docker_images, tmp_path, source))
    (thin,), _out = playbook.run([load_separated(dest, APP_B, engine)])
    assert thin["changed"] and thin["loaded"] == [docker_images[APP_B].id]
    assert target.inspect(APP_B)[0]["Id"] == docker_images[APP_B].id


def _lib_archive(target, docker_images, tmp_path, source):
    """The lib image (base + lib layers) as one archive, re-assembled from the separated base and lib tarballs."""
    del target, docker_images
    from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive  # pylint: disable=import-outside-toplevel
    path = str(tmp_path / "lib.tar")
    with open_archive(os.path.join(source, "app-a_1_lib_image.tar.gz")) as lib, \
            open_archive(os.path.join(source, "app-a_1_base_image.tar.gz")) as base:
        base_layer = base.images[0].layers[0]
        image = lib.images[0]
        layers = [base_layer if not layer.available else layer for layer in image.layers]
        save_archive([image.__class__(image.config_bytes, layers, image.references)], path)
    return path


def test_no_lib_and_a_base_that_is_not_a_prefix(playbook, dockerd, docker_images, tmp_path):
    engine = dict(engine="docker", engine_host=dockerd.host)
    no_lib = str(tmp_path / "no-lib")
    (result,), _out = playbook.run([separate_task(no_lib, [APP_A], engine)])
    manifest = result["manifest"][APP_A]
    assert manifest["lib"] == "" and manifest["libLayers"] == []
    assert manifest["appLayers"] == [d.split(":")[1] for d in docker_images[APP_A].diff_ids[1:]]
    wrong = str(tmp_path / "wrong")
    (failed,), _out = playbook.run([separate_task(wrong, [APP_A], engine, base=APP_B)], expect_failure=True)
    assert failed["failed"] and "not built on" in failed["msg"] and docker_images[APP_B].diff_ids[2] in failed["msg"]
    assert not os.path.exists(wrong)


def test_archive_info_describes_a_separated_directory(separated_dir, playbook, docker_images):
    dest, _result = separated_dir
    (info,), _out = playbook.run([{"airgap.images.image_archive_info": {"path": dest, "verify": True}}])
    assert info["format"] == "separated" and info["compression"] == "gzip"
    assert [image["id"] for image in info["images"]] == [docker_images[APP_A].id, docker_images[APP_B].id]
    assert info["images"][1]["files"]["app"] == "app-b_1_app_image.tar.gz"
    assert all(layer["verified"] for image in info["images"] for layer in image["layers"])
