# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core on other projects' published test data (tests/fixtures/README.md says where each comes from).

What skopeo reads, the core reads with the same config digests and layer counts; what skopeo refuses, the core
refuses naming the entry. Expected digests are skopeo 1.9.3's: ``skopeo --insecure-policy inspect --raw
docker-archive:FILE[:@N]`` (the config descriptor and the layers of the manifest it makes) for archives, and
``skopeo --insecure-policy copy oci:DIR:REF dir:OUT`` (the config and layer blobs it writes; linux/amd64 from an
index) for layouts.
"""

import json
import os
import shutil

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError, DigestMismatchError
from ansible_collections.airgap.images.plugins.module_utils.operations import archive_info
from ansible_collections.airgap.images.plugins.module_utils.digest import sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.model import MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures")
GGCR = os.path.join(FIXTURES, "go-containerregistry")
CONTAINERS_IMAGE = os.path.join(FIXTURES, "containers-image")
REGCLIENT = os.path.join(FIXTURES, "regclient")

BAZEL_IMAGE_1 = "sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e"
BAZEL_IMAGE_2 = "sha256:930705ce23e3b6ed4c08746b6fe880089c864fbaf62482702ae3fdd66b8c7fe9"
EMPTY_JSON = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import read_all


def contents(path, platform=None):
    """(config digest, layer count, sorted tags) per image, and the archive's artifacts."""
    with open_archive(path, platform) as archive:
        for image in archive.images:
            for layer in image.layers:
                read_all(layer)
        return [(image.id, len(image.layers), sorted(image.repo_tags)) for image in archive.images], archive.artifacts


def refusal(path, platform=None):
    with pytest.raises(ArchiveError) as err:
        with open_archive(path, platform) as archive:
            for image in archive.images:
                for layer in image.layers:
                    read_all(layer)
    return str(err.value)


# go-containerregistry: pkg/v1/tarball/testdata -------------------------------------------------------------

def test_docker25_save_of_an_untagged_image_is_read():
    """index.json says "manifests": null, manifest.json "RepoTags": null (issue 11).
    skopeo: config sha256:ee301c92…, 1 layer sha256:12660636…"""
    path = os.path.join(GGCR, "tarball", "hello-world-v25.tar")
    with open_archive(path) as archive:
        assert archive.format == "docker-archive+oci"
        assert archive.artifacts == []
        (image,) = archive.images
        assert image.id == "sha256:ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44"
        assert image.repo_tags == [] and image.digests == []
        assert image.diff_ids == ["sha256:12660636fe55438cc3ae7424da7ac56e845cdb52493ff9cf949c47a7f57f8b43"]
        assert image.layers[0].size == 10752  # from LayerSources
        assert len(read_all(image.layers[0])) == 10752
    info = archive_info(path)
    assert [entry["id"] for entry in info["images"]] == [image.id] and info["artifacts"] == []


@pytest.mark.parametrize("name, expected", [
    # skopeo inspect --raw docker-archive:test_image_1.tar: config 6e0b0504…, 1 layer
    ("test_image_1.tar", [(BAZEL_IMAGE_1, 1, ["bazel/v1/tarball:test_image_1"])]),
    # skopeo …:@0 config 930705ce…, @1 config 6e0b0504…, 1 layer each
    ("test_bundle.tar", [(BAZEL_IMAGE_2, 1, ["test_image_2:latest"]), (BAZEL_IMAGE_1, 1, ["test_image_1:latest"])]),
    # skopeo …:@0 config 6e0b0504… 1 layer, @1 config d4c9adac… 2 layers (the first a symlink to @0's layer)
    ("test_link.tar", [(BAZEL_IMAGE_1, 1, ["bazel/v1/tarball:test_image_1"]),
                       ("sha256:d4c9adacde69c3d92446e0484cea29493e9fd573cf0c8febfc700d80c46697a4", 2,
                        ["bazel/v1/tarball:test_image_3"])]),
])
def test_ggcr_docker_save_archives(name, expected):
    images, artifacts = contents(os.path.join(GGCR, "tarball", name))
    assert images == expected and artifacts == []


def test_ggcr_null_manifest_is_refused():
    """skopeo: "Unexpected tar manifest.json: expected 1 item, got 0"."""
    assert "manifest.json: manifest cannot be null" in refusal(os.path.join(GGCR, "tarball", "null_manifest.tar"))


def test_ggcr_archive_without_manifest_json_is_refused():
    """A pre-1.10 archive (repositories and <id>/json only). skopeo: "manifest.json: file does not exist"."""
    message = refusal(os.path.join(GGCR, "tarball", "no_manifest.tar"))
    assert "no_manifest.tar" in message and "neither manifest.json" in message


# go-containerregistry: pkg/v1/layout/testdata --------------------------------------------------------------

def test_ggcr_layout_with_an_image_behind_three_entries():
    """skopeo copy oci:test_index:1 and :3 both give config 6e0b0504… with 1 layer; :2 (media type
    application/vnd.oci.descriptor.v1+json) and :4 (a Docker manifest list) are "no descriptor found" to skopeo 1.9.
    The core reads :4 as an image too (Docker and containerd do) and reports :2 as an artifact of its media type."""
    path = os.path.join(GGCR, "layout", "test_index")
    images, artifacts = contents(path)
    assert images == [(BAZEL_IMAGE_1, 1, [])]  # ref names "1", "3", "4" are tags alone: no repository to name
    (other,) = artifacts
    assert other.id == "sha256:32589985702551b6c56033bb3334432a0a513bf9d6aceda0f67c42b003850720"
    assert other.artifact_type == "application/vnd.oci.descriptor.v1+json" and other.ref_names == ["2"]
    with open_archive(path) as archive:
        assert archive.images[0].digests == [
            "sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650",
            "sha256:05f95b26ed10668b7183c1e2da98610e91372fa9f510046d4ce5812addad86b5",
            "sha256:2b29a2b8dea3af91ea7d0154be1da0c92d55ddd098540930fc8d3db7de377fdb"]


def test_ggcr_layout_with_one_oci_image():
    """skopeo copy oci:test_index_one_image: config 381d958b…, 1 layer."""
    images, artifacts = contents(os.path.join(GGCR, "layout", "test_index_one_image"))
    assert images == [("sha256:381d958b555884ba59574ab5c066e9f6116b5aec3567675aa13bec63331f0810", 1, [])]
    assert artifacts == []


def test_ggcr_helm_chart_is_an_artifact():
    """skopeo inspect --config oci:test_index_media_type: "unsupported image-specific operation on artifact with type
    application/vnd.cncf.helm.config.v1+json"; its copy has config ca3d163b… and one layer dc52c6e4…"""
    path = os.path.join(GGCR, "layout", "test_index_media_type")
    images, (chart,) = contents(path)
    assert images == []
    assert chart.summary() == {
        "kind": "artifact", "digest": "sha256:b544f71ecd82372bc9a3c0dbef378abfd2734fe437df81ff6e242a0d720d8e3e",
        "digests": ["sha256:b544f71ecd82372bc9a3c0dbef378abfd2734fe437df81ff6e242a0d720d8e3e"],
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "artifact_type": "application/vnd.cncf.helm.config.v1+json",
        "config_media_type": "application/vnd.cncf.helm.config.v1+json", "layer_media_types": ["application/tar+gzip"],
        "ref_names": [], "references": [], "subject": None, "tag": None}
    assert archive_info(path)["artifacts"] == [chart.summary()]


def test_ggcr_layout_naming_a_missing_blob_is_refused():
    """skopeo: "open …/blobs/sha256/32589985…: no such file or directory"."""
    message = refusal(os.path.join(GGCR, "layout", "test_gc_image_unknown_mediatype"))
    assert "index.json entry 0" in message and "sha256:32589985702551b6" in message and "missing" in message


# containers/image -------------------------------------------------------------------------------------------

def test_containers_image_docker_1_13_archive():
    """skopeo inspect --raw docker-archive:almostempty.tar: config 9d7f147c…, 1 layer."""
    images, _artifacts = contents(os.path.join(CONTAINERS_IMAGE, "docker-archive", "almostempty.tar"))
    assert images == [("sha256:9d7f147c0d0c4d4538a04c7ef385809e56eb1aac7bf800fbe976612188025b68", 1, ["emptyimage:latest"])]


@pytest.mark.parametrize("name, entry, detail", [
    # skopeo copy …:1.0.0: "Size mismatch when copying sha256:913cf3a3…, expected 585, got 584" (its other six
    # references copy; the core reads a layout whole and refuses it, naming the entry)
    ("delete_image_multiple_images", "index.json entry 6 (1.0.0)", "descriptor says 585 bytes, blob has 584"),
    # skopeo copy …:latest: "Size mismatch when copying sha256:a5271791…, expected 585, got 740"
    ("delete_image_only_one_image", "index.json entry 0 (latest)", "descriptor says 585 bytes, blob has 740"),
    # skopeo (without --shared-blob-dir): "open …/blobs/sha256/eaa95f3c…: no such file or directory"
    ("delete_image_shared_blobs_dir", "index.json entry 0 (latest)", "sha256:eaa95f3cfaac07c8a5153eb77c933269586ad0226c83405776be08547e4d2a18 is missing"),
    # skopeo: "open …/blobs/sha256/84afb618…: no such file or directory"
    ("manifest", "index.json entry 0 (v0.1.1)", "is missing from the archive"),
    # skopeo …:a: "open …/blobs/sha256/aaaa…: no such file or directory"
    ("name_lookups", "index.json entry 0 (a)", "is missing from the archive"),
    # skopeo: "more than one image in oci, choose an image"; both manifests are missing
    ("two_images_manifest", "index.json entry 0", "is missing from the archive"),
])
def test_containers_image_broken_layouts_are_refused_naming_the_entry(name, entry, detail):
    message = refusal(os.path.join(CONTAINERS_IMAGE, "oci-layout", name))
    assert entry in message and detail in message


def test_containers_image_placeholder_layers_fail_their_diffid():
    """skopeo copy oci:…:1.0.0 copies config a5271791… and its layer without checking the DiffID; the core reads the
    metadata alike (two images, one per manifest, 1 layer each) and refuses the layer bytes when they are read."""
    path = os.path.join(CONTAINERS_IMAGE, "oci-layout", "delete_image_two_identical_references")
    with open_archive(path) as archive:
        assert [(image.id, len(image.layers)) for image in archive.images] == [
            ("sha256:a527179158cd5cebc11c152b8637b47ce96c838ba2aa0de66d14f45cedc11423", 1),
            ("sha256:ce229a4eb5797ecd3a3a1846613b6b49811f79e38b5b0ce666268ba4b6c68e41", 1)]
        with pytest.raises(DigestMismatchError) as err:
            read_all(archive.images[0].layers[0])
    assert "index.json entry 0 (1.0.0)" in str(err.value) and "layer 0" in str(err.value)


# regclient ---------------------------------------------------------------------------------------------------

# skopeo copy oci:testrepo:<ref> (linux/amd64): the config blob and the number of layer blobs it writes
REGCLIENT_IMAGES = [
    ("sha256:92e1351053a20d03653de6d9ff2064abfe3adc2105b1cf492b201813a3f12dae", 1, []),  # b1
    ("sha256:79f0b6d4f769ba152915c536b1108023487f946761673f20b46e38b256312632", 1, []),  # b2
    ("sha256:bb4828702beda05e2dee1a86d002928c0e3c1a7ac23ee338e54d425dac06843b", 1, []),  # b3
    ("sha256:03d7b3c657a4af5b4ff7967bf843d04a93008f28d658a7df3f679b2c7e519639", 2, []),  # v1
    ("sha256:265cf623914b139bb063c377e702759275910c1013005615cb400323d00608c1", 3, []),  # v2
    ("sha256:2097cbe98aab004aa60148c1b49515a86cd1ff514310dcf8654313259aad0b12", 5, []),  # v3 (and its .meta tag)
]
# The manifests whose config is {} under an image config media type, and the referrers index that lists one.
REGCLIENT_EMPTY_CONFIG_ENTRIES = ("a-docker", "a-docker-oci", "sha256-7e87ffc91b9ceafa85be2777b16b1be10e4664fd4f3acc86e4295b97da5163ba")


def without_entries(tmp_path, layout, ref_names):
    """A copy of ``layout`` whose index.json leaves out the entries named ``ref_names`` (the blobs stay)."""
    copy = str(tmp_path / os.path.basename(layout))
    shutil.copytree(layout, copy)
    with open(os.path.join(copy, "index.json")) as handle:
        index = json.load(handle)
    index["manifests"] = [entry for entry in index["manifests"]
                          if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") not in ref_names]
    with open(os.path.join(copy, "index.json"), "w") as handle:
        json.dump(index, handle)
    return copy


def test_regclient_manifest_with_an_image_config_type_but_no_layer_tar_is_an_artifact():
    """a-docker declares application/vnd.oci.image.config.v1+json, but the config is {} (skopeo inspect --config shows
    "diff_ids": null) and its one layer is application/vnd.example.build-type+json: no filesystem, so an artifact (as
    cosign's signatures are: an image config type, a JSON layer), not an image to refuse."""
    layout = os.path.join(REGCLIENT, "testrepo")
    with open_archive(layout, "linux/amd64") as archive:
        (entry,) = [artifact for artifact in archive.artifacts if "a-docker" in artifact.ref_names]
    assert (entry.artifact_type, entry.config_media_type) == ("application/vnd.example.build-type+json", MEDIA_OCI_CONFIG)


def test_regclient_image_with_an_empty_config_is_refused(tmp_path):
    """The same empty config under a manifest whose layer is a tar: an image no engine can load, refused naming it."""
    layout = without_entries(tmp_path, os.path.join(REGCLIENT, "testrepo"), ())
    with open(os.path.join(layout, "blobs", "sha256", "2b0db72b31002b09e32a25d634a98fc921c5863a11a3f0a4a32bb7485689df7f"), "rb") as handle:
        layer = handle.read()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST, "config": {
        "mediaType": MEDIA_OCI_CONFIG, "digest": EMPTY_JSON, "size": 2}, "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(layer), "size": len(layer)}]}).encode()
    with open(os.path.join(layout, "blobs", "sha256", sha256_digest(manifest).split(":")[1]), "wb") as handle:
        handle.write(manifest)
    with open(os.path.join(layout, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": MEDIA_OCI_MANIFEST, "digest": sha256_digest(manifest),
                                                      "size": len(manifest), "annotations": {
                                                          "org.opencontainers.image.ref.name": "broken"}}]}, handle)
    message = refusal(layout)
    assert "index.json entry 0 (broken)" in message and "invalid image config" in message


def test_regclient_images_are_read_and_artifacts_reported(tmp_path):
    """skopeo inspect --config oci:testrepo:a1 (a2, a3, ai, a-example, child, loop, mirror): "unsupported
    image-specific operation on artifact with type application/vnd.oci.empty.v1+json"."""
    layout = without_entries(tmp_path, os.path.join(REGCLIENT, "testrepo"), REGCLIENT_EMPTY_CONFIG_ENTRIES)
    images, artifacts = contents(layout, "linux/amd64")
    assert images == REGCLIENT_IMAGES
    by_type = {}
    for artifact in artifacts:
        assert artifact.kind == "artifact" and artifact.config_media_type == "application/vnd.oci.empty.v1+json"
        by_type.setdefault(artifact.artifact_type, []).append(artifact)
    assert sorted((kind, len(found)) for kind, found in by_type.items()) == [
        ("application/example", 1), ("application/example.arms", 3), ("application/example.child", 1),
        ("application/example.layers", 1), ("application/example.mirror", 1), ("application/example.sbom", 3),
        ("application/example.signature", 1)]
    sbom = next(a for a in by_type["application/example.sbom"] if "a1" in a.ref_names)
    assert sbom.id == "sha256:0484e93c23cddf24a8400547119558312023295af241d4cd1eaf1b27145c5026"
    assert sbom.ref_names == ["a1", "sha256-dfae8f425735a5e3a72e40d6609e03079995511d48157c74d54801ff4430491e", "ai"]
    assert sbom.subject == "sha256:dfae8f425735a5e3a72e40d6609e03079995511d48157c74d54801ff4430491e"  # v2's index
    assert sbom.layer_media_types == ["application/example.sbom.breakfast"]
    (layers,) = by_type["application/example.layers"]
    assert layers.ref_names == ["a3"] and len(layers.layer_media_types) == 3
    (child,) = by_type["application/example.child"]
    assert child.ref_names == ["child", "loop", "sha256-8e54c6754f08d22f85c7552bb1951b228b8194d29b14a1639dbe50868da0273e"]
    assert [entry["artifact_type"] for entry in archive_info(layout, platform="linux/amd64")["artifacts"]] == \
        [artifact.artifact_type for artifact in artifacts]


def test_regclient_layout_of_artifacts_only():
    """skopeo copy oci:external:a3 / :a4: configs {} (44136fa3…) of artifacts, one layer each."""
    images, artifacts = contents(os.path.join(REGCLIENT, "external"))
    assert images == []
    assert [(a.id, a.artifact_type, a.ref_names) for a in artifacts] == [
        ("sha256:30cc0c708132298dd05b03e22eab4ecf99aa0ed0ce9c4904c2b5895707381576", "application/example.sbom",
         ["a3", "sha256-dfae8f425735a5e3a72e40d6609e03079995511d48157c74d54801ff4430491e"]),
        ("sha256:c46d306320ae27079061660f74ec841b25d9a423fbaddeebe641b3d66f3e1206", "application/example.sbom",
         ["sha256-dfae8f425735a5e3a72e40d6609e03079995511d48157c74d54801ff4430491e", "a4"])]
