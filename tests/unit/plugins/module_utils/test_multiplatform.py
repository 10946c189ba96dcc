# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A multi-platform image keeps its index digest: read per platform selection, saved whole or in part, read back.

The image is made with the core (two configs, one per platform, each with its own layers: one gzip blob, one
uncompressed) and written as an OCI layout directory by ``TwoPlatformImage`` below, which the system tests
(tests/system/test_multiplatform.py) use too.
"""

import gzip
import json
import os
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.digest import sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import blob_path, canonical_json
from ansible_collections.airgap.images.plugins.module_utils.model import (MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX,
                                                                          MEDIA_OCI_LAYER, MEDIA_OCI_LAYER_GZIP,
                                                                          MEDIA_OCI_MANIFEST)
from ansible_collections.airgap.images.plugins.module_utils.operations import archive_info
from ansible_collections.airgap.images.plugins.module_utils.loading import plan_shipping
from ansible_collections.airgap.images.plugins.module_utils.shipping import bundle_images_from, for_platform
from ansible_collections.airgap.images.plugins.module_utils.stores.store import OCIStore
from ansible_collections.airgap.images.plugins.module_utils.platforms import host_platform, parse_platform

AMD64, ARM64 = "linux/amd64", "linux/arm64"
PLATFORMS = (AMD64, ARM64)
REFERENCE = "example.com/multi/app:1"


def _descriptor(media_type, data, **extra):
    descriptor = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    descriptor.update(extra)
    return descriptor


class PlatformPart:
    """One platform of the image: its model Image (config and layers), its manifest bytes and its layer blobs."""

    def __init__(self, name):
        self.name = name
        self.platform = parse_platform(name)
        arch = self.platform.architecture
        base = layer_tar({"etc": None, "etc/arch": arch.encode() + b"\n", "etc/filler": arch.encode() * 4096})
        app = layer_tar({"app": None, "app/run": ("#!/bin/sh\necho %s\n" % arch).encode()})
        self.raw_layers = [base, app]
        self.image = build_image([layer_from_bytes(base), layer_from_bytes(app)], platform=self.platform)
        self.layer_blobs = [gzip.compress(base, mtime=0), app]
        self.layer_types = [MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER]
        self.manifest = canonical_json({
            "schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
            "config": _descriptor(MEDIA_OCI_CONFIG, self.image.config_bytes),
            "layers": [_descriptor(kind, blob) for kind, blob in zip(self.layer_types, self.layer_blobs)]})

    @property
    def manifest_digest(self):
        return sha256_digest(self.manifest)

    @property
    def layer_digests(self):
        return [sha256_digest(blob) for blob in self.layer_blobs]

    def blobs(self):
        """Every blob of this platform: manifest, config, layers."""
        return [self.manifest, self.image.config_bytes] + self.layer_blobs

    def blob_digests(self):
        return {sha256_digest(blob) for blob in self.blobs()}

    def platform_object(self):
        return {"architecture": self.platform.architecture, "os": self.platform.os}


class TwoPlatformImage:
    """linux/amd64 and linux/arm64 behind one OCI index, written as an OCI layout directory by ``write``."""

    def __init__(self, reference=REFERENCE):
        self.reference = reference
        self.parts = {name: PlatformPart(name) for name in PLATFORMS}
        members = [_descriptor(MEDIA_OCI_MANIFEST, part.manifest, platform=part.platform_object())
                   for part in self.parts.values()]
        self.index = canonical_json({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": members})

    @property
    def index_digest(self):
        return sha256_digest(self.index)

    def blob_digests(self, platforms=PLATFORMS):
        """The blobs an archive of ``platforms`` holds: the index and those platforms' blobs."""
        return {self.index_digest}.union(*(self.parts[name].blob_digests() for name in platforms))

    def write(self, root, platforms=PLATFORMS):
        """An OCI layout directory at ``root`` of the index and the blobs of ``platforms``; returns ``root``."""
        os.makedirs(os.path.join(root, "blobs", "sha256"))
        blobs = [self.index] + [blob for name in platforms for blob in self.parts[name].blobs()]
        for blob in blobs:
            with open(os.path.join(root, blob_path(sha256_digest(blob))), "wb") as out:
                out.write(blob)
        annotations = {"io.containerd.image.name": self.reference, "org.opencontainers.image.ref.name": self.reference}
        index_json = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX,
                      "manifests": [_descriptor(MEDIA_OCI_INDEX, self.index, annotations=annotations)]}
        with open(os.path.join(root, "index.json"), "wb") as out:
            out.write(canonical_json(index_json))
        with open(os.path.join(root, "oci-layout"), "wb") as out:
            out.write(b'{"imageLayoutVersion":"1.0.0"}')
        return root


@pytest.fixture(name="multi")
def fixture_multi():
    return TwoPlatformImage()


@pytest.fixture(name="layout")
def fixture_layout(multi, tmp_path):
    return multi.write(str(tmp_path / "layout"))


def host_name():
    """The host's platform name; these tests pick it by default, so it must be one of the image's two."""
    name = str(host_platform())
    if name not in PLATFORMS:
        pytest.skip("the host's platform %s is neither of the image's %s" % (name, ", ".join(PLATFORMS)))
    return name


def identities(images):
    """What names each image: platform -> (config digest, manifest digest, index digest, layer blob digests)."""
    return {image.platform_name: (image.id, image.manifest_digest, image.index_digest,
                                  [image.layer_blob_digest(layer) for layer in image.layers]) for image in images}


def expected_identities(multi, platforms):
    return {name: (multi.parts[name].image.id, multi.parts[name].manifest_digest, multi.index_digest,
                   multi.parts[name].layer_digests) for name in platforms}


def tar_members(path):
    with tarfile.open(path) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}


def blob_names(members):
    return {"sha256:" + name.rsplit("/", 1)[1] for name in members if name.startswith("blobs/sha256/")}


@pytest.mark.parametrize("selection, expected", [
    (None, None), (ARM64, [ARM64]), ("all", list(PLATFORMS)), ([AMD64, ARM64], list(PLATFORMS)),
    ([ARM64, AMD64], list(PLATFORMS)),
], ids=["host", "arm64", "all", "list", "list-reversed"])
def test_each_platform_selection_reads_its_images_with_the_index_digest(multi, layout, selection, expected):
    expected = expected or [host_name()]
    with open_archive(layout, selection) as archive:
        assert archive.format == "oci-dir"
        assert identities(archive.images) == expected_identities(multi, expected)
        for image in archive.images:
            assert image.digest == multi.index_digest
            assert image.digests[:2] == [image.manifest_digest, multi.index_digest]
            assert image.platform == multi.parts[image.platform_name].platform_object()
            assert (image.os, image.architecture) == tuple(image.platform_name.split("/"))
            assert [str(ref) for ref in image.references] == [REFERENCE]
            assert [read(layer) for layer in image.layers] == multi.parts[image.platform_name].raw_layers


def read(layer):
    with layer.open() as stream:
        return stream.read()


@pytest.mark.parametrize("archive_format", ["docker-archive", "oci-archive"])
@pytest.mark.parametrize("selection, platforms", [("all", PLATFORMS), (ARM64, [ARM64]), (AMD64, [AMD64])],
                         ids=["all", "arm64", "amd64"])
def test_save_keeps_the_index_byte_for_byte_and_only_the_selected_blobs(multi, layout, tmp_path, archive_format,
                                                                        selection, platforms):
    dest = str(tmp_path / "saved.tar")
    with open_archive(layout, selection) as archive:
        save_archive(archive.images, dest, archive_format)
    members = tar_members(dest)
    assert members[blob_path(multi.index_digest)] == multi.index
    assert blob_names(members) == multi.blob_digests(platforms)
    top = json.loads(members["index.json"])["manifests"]
    assert {entry["digest"] for entry in top} == {multi.index_digest}
    assert {entry["mediaType"] for entry in top} == {MEDIA_OCI_INDEX}
    assert {entry["annotations"]["io.containerd.image.name"] for entry in top} == {REFERENCE}
    with open_archive(dest, selection) as archive:
        assert archive.format == ("docker-archive+oci" if archive_format == "docker-archive" else "oci-archive")
        assert identities(archive.images) == expected_identities(multi, platforms)
        assert [read(layer) for image in archive.images for layer in image.layers] == \
            [raw for name in platforms for raw in multi.parts[name].raw_layers]
    with open_archive(dest, "all") as archive:
        assert sorted(image.platform_name for image in archive.images) == sorted(platforms)


def test_docker_archive_gives_each_tag_to_one_image_only(layout, tmp_path):
    dest = str(tmp_path / "all.tar")
    with open_archive(layout, "all") as archive:
        save_archive(archive.images, dest)
    items = json.loads(tar_members(dest)["manifest.json"])
    assert len(items) == 2
    assert sorted(tag for item in items for tag in item["RepoTags"]) == [REFERENCE]
    with open_archive(dest, "all") as archive:
        assert sorted(tag for image in archive.images for tag in image.repo_tags) == [REFERENCE, REFERENCE]


def test_manifest_json_layers_point_at_the_kept_blobs(multi, layout, tmp_path):
    dest = str(tmp_path / "all.tar")
    with open_archive(layout, "all") as archive:
        save_archive(archive.images, dest)
    items = json.loads(tar_members(dest)["manifest.json"])
    by_config = {item["Config"]: item["Layers"] for item in items}
    assert by_config == {blob_path(part.image.id): [blob_path(digest) for digest in part.layer_digests]
                         for part in multi.parts.values()}


def partial_archive(multi, tmp_path, archive_format):
    """An archive of ``multi``'s index that holds only linux/arm64's blobs."""
    dest = str(tmp_path / ("arm64-only." + archive_format))
    with open_archive(multi.write(str(tmp_path / "src")), ARM64) as archive:
        save_archive(archive.images, dest, archive_format)
    return dest


@pytest.mark.parametrize("archive_format", ["docker-archive", "oci-archive", "oci-dir"])
@pytest.mark.parametrize("selection", [AMD64, [AMD64, ARM64]], ids=["amd64", "both"])
def test_a_platform_the_archive_lacks_fails_naming_what_it_holds(multi, tmp_path, archive_format, selection):
    if archive_format == "oci-dir":
        path = multi.write(str(tmp_path / "arm64-layout"), [ARM64])
    else:
        path = partial_archive(multi, tmp_path, archive_format)
    with pytest.raises(ArchiveError) as err:
        open_archive(path, selection)
    message = str(err.value)
    assert "no manifest for platform linux/amd64" in message, message
    assert "holds: linux/arm64" in message, message
    assert multi.index_digest in message or "index.json entry 0" in message, message


def test_the_host_default_fails_on_an_archive_without_its_platform(multi, tmp_path):
    other = [name for name in PLATFORMS if name != host_name()][0]
    path = multi.write(str(tmp_path / "other-only"), [other])
    with pytest.raises(ArchiveError, match="holds: %s" % other):
        open_archive(path)
    with open_archive(path, other) as archive:
        assert identities(archive.images) == expected_identities(multi, [other])


@pytest.mark.parametrize("source", ["layout", "docker-archive", "oci-archive"])
def test_archive_info_shows_index_platform_and_each_layer_blob(multi, layout, tmp_path, source):
    path = layout
    if source != "layout":
        path = str(tmp_path / "all.tar")
        with open_archive(layout, "all") as archive:
            save_archive(archive.images, path, source)
    info = archive_info(path, verify=True, platform="all")
    assert len(info["images"]) == 2
    for entry in info["images"]:
        part = multi.parts[entry["platform"]]
        assert (entry["id"], entry["manifest_digest"], entry["index_digest"]) == \
            (part.image.id, part.manifest_digest, multi.index_digest)
        assert entry["platform_descriptor"] == part.platform_object()
        assert entry["architecture"] == part.platform.architecture
        assert [(layer["digest"], layer["compression"], layer["blob_size"], layer["media_type"])
                for layer in entry["layers"]] == [
            (digest, kind, len(blob), media_type) for digest, kind, blob, media_type
            in zip(part.layer_digests, ("gzip", "none"), part.layer_blobs, part.layer_types)]
        assert [layer["diff_id"] for layer in entry["layers"]] == part.image.diff_ids
        assert [layer["size"] for layer in entry["layers"]] == [len(raw) for raw in part.raw_layers]
        assert all(layer["verified"] and layer["present"] for layer in entry["layers"])
    arm = archive_info(path, platform=ARM64)["images"]
    assert [(entry["platform"], entry["index_digest"]) for entry in arm] == [(ARM64, multi.index_digest)]


def test_resaving_a_saved_archive_gives_the_same_bytes(layout, tmp_path):
    first, second = str(tmp_path / "first.tar"), str(tmp_path / "second.tar")
    with open_archive(layout, "all") as archive:
        save_archive(archive.images, first)
    with open_archive(first, "all") as archive:
        save_archive(archive.images, second)
    with open(first, "rb") as one, open(second, "rb") as other:
        assert one.read() == other.read()


@pytest.mark.parametrize("host_platform_name", PLATFORMS)
def test_one_bundle_serves_a_mixed_fleet_each_host_gets_and_loads_its_own_platform(
        multi, layout, tmp_path, host_platform_name):
    bundle = archive_info(layout, platform="all")
    assert sorted(entry["platform"] for entry in bundle["images"]) == sorted(PLATFORMS)
    host = OCIStore(str(tmp_path / ("host-" + host_platform_name.replace("/", "-"))), platform=host_platform_name)
    plan = plan_shipping(host, bundle, str(tmp_path / "staging"))
    shipped = {"sha256:" + entry["file"].rsplit("/", 1)[-1] for entry in plan.ship}
    assert shipped == set(multi.parts[host_platform_name].layer_digests)
    assert [image["state"] for image in plan.result()["bundle_images"]] == ["load"]
    images = bundle_images_from(for_platform(bundle, host_platform_name), layout)
    host.import_images(images)
    (held,) = host.images()
    assert (held.platform_name, held.index_digest) == (host_platform_name, multi.index_digest)
    assert plan_shipping(host, bundle).ship == [], "the host holds its platform: nothing more to send"


def test_a_bundle_without_the_hosts_platform_says_so(multi, tmp_path):
    root = multi.write(str(tmp_path / "arm-only"), platforms=["linux/arm64"])
    bundle = archive_info(root, platform="all")
    with pytest.raises(ArchiveError) as err:
        for_platform(bundle, "linux/amd64")
    assert multi.index_digest in str(err.value) and "linux/arm64" in str(err.value)
