# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core against the real tools: their archives read right, ours load everywhere."""

import json
import os

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.digest import chain_ids, drain

pytestmark = pytest.mark.engines


def read_and_verify(path, **kwargs):
    """Every image of an archive with every layer read to its end, so every DiffID is checked."""
    with open_archive(path, **kwargs) as archive:
        for image in archive.images:
            for layer in image.layers:
                with layer.open() as stream:
                    drain(stream)
        return archive.format, {image.id: (sorted(image.repo_tags), image.diff_ids) for image in archive.images}


def engine_view(documents):
    """{ID: (familiar tags, DiffIDs)} from docker/podman inspect documents."""
    return {doc["Id"] if doc["Id"].startswith("sha256:") else "sha256:" + doc["Id"]:
            (sorted(doc.get("RepoTags") or []), doc["RootFS"]["Layers"]) for doc in documents}


def familiar(tags):
    """podman reports docker.io/airgap-test/x:1 where docker says airgap-test/x:1."""
    return sorted(tag[len("docker.io/"):] if tag.startswith("docker.io/") else tag for tag in tags)


@pytest.fixture(scope="module")
def saved(docker_images, docker_images_archive):
    return docker_images_archive


def test_docker_save_legacy_archive_reads_as_the_engine_reports(dockerd, docker_images, saved):
    archive_format, images = read_and_verify(saved)
    assert archive_format == "docker-archive"
    assert images == engine_view(dockerd.inspect(*docker_images))


def test_chain_ids_match_dockers_layer_database(dockerd, docker_images, saved):
    layerdb = os.path.join(dockerd.data_root, "image", "vfs", "layerdb", "sha256")
    with open_archive(saved) as archive:
        for image in archive.images:
            for chain_id in image.chain_ids:
                assert os.path.isdir(os.path.join(layerdb, chain_id.split(":")[1])), chain_id
            assert image.chain_ids == chain_ids(image.diff_ids)
            assert len(set(image.chain_ids)) == len(image.diff_ids)


def test_round_trip_through_our_writer_keeps_ids_and_is_deterministic(dockerd, dockerd_factory, docker_images, saved, tmp_path):
    first, second = str(tmp_path / "1.tar"), str(tmp_path / "2.tar")
    with open_archive(saved) as archive:
        result = save_archive(archive.images, first)
    with open_archive(saved) as archive:
        assert save_archive(archive.images, second).sha256 == result.sha256
    assert open(first, "rb").read() == open(second, "rb").read()
    fresh = dockerd_factory()
    loaded = fresh.cli("load", "-i", first).stdout
    assert "Loaded image: airgap-test/app-a:1" in loaded
    assert engine_view(fresh.inspect(*docker_images)) == engine_view(dockerd.inspect(*docker_images))


def test_gzip_archive_loads_in_docker(dockerd_factory, docker_images, saved, tmp_path):
    dest = str(tmp_path / "images.tar.gz")
    with open_archive(saved) as archive:
        save_archive(archive.images, dest, compression="gzip")
    fresh = dockerd_factory()
    fresh.cli("load", "-i", dest)
    assert {doc["Id"] for doc in fresh.inspect(*docker_images)} == {img.id for img in docker_images.values()}


@pytest.fixture(scope="module")
def ours(saved, tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("ours") / "ours.tar")
    with open_archive(saved) as archive:
        save_archive(archive.images, dest)
    return dest


def test_podman_loads_our_archive_with_the_same_ids(podman, docker_images, ours):
    podman.cli("load", "-i", ours)
    documents = json.loads(podman.cli("image", "inspect", *docker_images).stdout)
    view = {doc["Id"] if doc["Id"].startswith("sha256:") else "sha256:" + doc["Id"]: (familiar(doc["RepoTags"]), doc["RootFS"]["Layers"])
            for doc in documents}
    assert view == {img.id: ([img.name], img.diff_ids) for img in docker_images.values()}


def test_podman_saves_read_as_podman_reports(podman, docker_images, ours, tmp_path):
    podman.cli("load", "-i", ours)
    names = list(docker_images)
    truth = {img.id: ([img.name], img.diff_ids) for img in docker_images.values()}
    docker_archive = str(tmp_path / "podman-docker.tar")
    podman.cli("save", "--multi-image-archive", "--format", "docker-archive", "-o", docker_archive, *names)
    archive_format, images = read_and_verify(docker_archive)
    assert archive_format == "docker-archive"
    assert {image_id: (familiar(tags), diff_ids) for image_id, (tags, diff_ids) in images.items()} == truth
    oci_archive = str(tmp_path / "podman-oci.tar")
    podman.cli("save", "--format", "oci-archive", "-o", oci_archive, "airgap-test/app-b:1")
    _format, images = read_and_verify(oci_archive)
    app_b = docker_images["airgap-test/app-b:1"]
    assert list(images.values()) == [(["airgap-test/app-b:1"], app_b.diff_ids)]


def test_containerd_imports_ours_and_its_export_reads_back(containerd, docker_images, ours, tmp_path):
    containerd.ctr("images", "import", ours)
    assert {"docker.io/" + name for name in docker_images} <= containerd.image_refs()
    exported = str(tmp_path / "ctr-export.tar")
    containerd.export(exported, ["docker.io/" + name for name in docker_images], ["--platform", "linux/amd64"])
    archive_format, images = read_and_verify(exported)
    assert archive_format == "docker-archive+oci"
    assert images == {img.id: ([img.name], img.diff_ids) for img in docker_images.values()}
    with open_archive(exported) as archive:
        listed = containerd.ctr("images", "ls").stdout
        for image in archive.images:
            assert image.digests and image.digests[0] in listed


def test_skopeo_reads_ours_and_writes_what_we_read(skopeo, docker_images, ours, tmp_path):
    app_a = docker_images["airgap-test/app-a:1"]
    seen = skopeo.inspect("docker-archive:%s:airgap-test/app-a:1" % ours)
    assert seen["Layers"] == app_a.diff_ids
    raw = json.loads(skopeo.run("inspect", "--raw", "oci-archive:%s" % _single(ours, tmp_path, app_a)).stdout)
    assert raw["config"]["digest"] == app_a.id
    copied = str(tmp_path / "skopeo-docker.tar")
    skopeo.run("copy", "docker-archive:%s:airgap-test/app-a:1" % ours, "docker-archive:%s:airgap-test/app-a:1" % copied)
    _format, images = read_and_verify(copied)
    assert images == {app_a.id: (["airgap-test/app-a:1"], app_a.diff_ids)}
    oci = str(tmp_path / "skopeo-oci.tar")
    skopeo.run("copy", "docker-archive:%s:airgap-test/app-a:1" % ours, "oci-archive:%s:airgap-test/app-a:1" % oci)
    oci_raw = json.loads(skopeo.run("inspect", "--raw", "oci-archive:%s" % oci).stdout)
    _format, images = read_and_verify(oci)
    ((image_id, (_tags, diff_ids)),) = images.items()
    assert image_id == oci_raw["config"]["digest"]
    assert diff_ids == app_a.diff_ids


def _single(ours, tmp_path, image):
    """An oci-archive of one image written by us (skopeo's oci-archive: needs one image or a ref)."""
    dest = str(tmp_path / "single-oci.tar")
    with open_archive(ours) as archive:
        save_archive([i for i in archive.images if i.id == image.id], dest, archive_format="oci-archive")
    return dest


def test_flipped_byte_in_docker_layer_names_the_layer(saved, docker_images, tmp_path):
    import tarfile  # pylint: disable=import-outside-toplevel
    corrupt = str(tmp_path / "corrupt.tar")
    with open(saved, "rb") as source, open(corrupt, "wb") as out:
        out.write(source.read())
    with tarfile.open(corrupt) as tar:
        member = max((m for m in tar.getmembers() if m.name.endswith("layer.tar") and m.isfile()), key=lambda m: m.size)
    with open(corrupt, "r+b") as handle:
        handle.seek(member.offset_data + member.size // 2)
        byte = handle.read(1)
        handle.seek(member.offset_data + member.size // 2)
        handle.write(bytes([byte[0] ^ 0x80]))
    from ansible_collections.airgap.images.plugins.module_utils.errors import DigestMismatchError  # pylint: disable=import-outside-toplevel
    with pytest.raises(DigestMismatchError) as err:
        read_and_verify(corrupt)
    assert "digest mismatch" in str(err.value) and "layer" in str(err.value)


def test_docker_save_by_id_is_untagged_and_loads_back_by_id(dockerd, dockerd_factory, docker_images, tmp_path):
    app_b = docker_images["airgap-test/app-b:1"]
    by_id = str(tmp_path / "by-id.tar")
    dockerd.cli("save", "-o", by_id, app_b.id)
    with open_archive(by_id) as archive:
        (image,) = archive.images
        assert (image.id, image.repo_tags, image.diff_ids) == (app_b.id, [], app_b.diff_ids)
        ours = str(tmp_path / "ours-by-id.tar")
        save_archive(archive.images, ours)
    with open_archive(ours) as archive:
        assert archive.images[0].repo_tags == []
    fresh = dockerd_factory()
    assert "Loaded image ID: %s" % app_b.id in fresh.cli("load", "-i", ours).stdout
    assert fresh.image_ids() == {app_b.id}
