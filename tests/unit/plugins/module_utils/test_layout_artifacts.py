# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI layouts holding artifacts beside images (issue 11): images are read, artifacts reported, never taken for images.

The layouts are written by the embedded store, then given what regclient, oras, Hauler or BuildKit add beside an
image: an SBOM (``artifactType``, empty config), a signature whose ``subject`` is the image, a Helm chart (its own
config media type).
"""

import json
import os

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.digest import sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError, ImageNotFoundError, NotAnImageError
from ansible_collections.airgap.images.plugins.module_utils.model import Artifact
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import IndexWalker, blob_path
from ansible_collections.airgap.images.plugins.module_utils.operations import archive_info
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference, resolve_all
from ansible_collections.airgap.images.plugins.module_utils.formats.safetar import DirSource
from ansible_collections.airgap.images.plugins.module_utils.stores.store import OCIStore
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore

from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = b"{}"
SBOM_TYPE = "application/spdx+json"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
SBOM_NAME = "example.com/apps/a:sbom"
CHART_NAME = "example.com/charts/a:1.0"


def descriptor(media_type, data, **extra):
    entry = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    entry.update(extra)
    return entry


def names(reference):
    return {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": reference}


def put_blob(root, data):
    with open(os.path.join(root, *blob_path(sha256_digest(data)).split("/")), "wb") as out:
        out.write(data)
    return data


def add_entries(root, *entries):
    path = os.path.join(root, "index.json")
    with open(path) as handle:
        index = json.load(handle)
    index["manifests"].extend(entries)
    with open(path, "w") as handle:
        json.dump(index, handle)


def artifact_manifest(root, config_type, config, layer_type, payload, **extra):
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(config_type, put_blob(root, config)),
                "layers": [descriptor(layer_type, put_blob(root, payload))]}
    manifest.update(extra)
    return put_blob(root, json.dumps(manifest).encode())


def image_manifest_descriptor(root):
    with open(os.path.join(root, "index.json")) as handle:
        return json.load(handle)["manifests"][0]


@pytest.fixture(name="layout")
def layout_with_artifacts(tmp_path):
    """Image a (two tags) written by the store, plus an SBOM, a signature of the image and a Helm chart."""
    root = str(tmp_path / "layout")
    image_a, _image_b = sample_images()
    LayoutStore(root).import_images([image_a])
    image_entry = image_manifest_descriptor(root)
    subject = {key: image_entry[key] for key in ("mediaType", "digest", "size")}
    sbom = artifact_manifest(root, "application/vnd.oci.empty.v1+json", EMPTY_CONFIG, SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3"}',
                             artifactType=SBOM_TYPE)
    signature = artifact_manifest(root, SIGNATURE_TYPE, EMPTY_CONFIG, "application/vnd.dev.cosign.simplesigning.v1+json",
                                  b'{"critical":{}}', subject=subject)
    chart = artifact_manifest(root, HELM_CONFIG, b'{"name":"a","version":"1.0"}', "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                              b"chart bytes")
    add_entries(root, descriptor(OCI_MANIFEST, sbom, artifactType=SBOM_TYPE, annotations=names(SBOM_NAME)),
                descriptor(OCI_MANIFEST, signature), descriptor(OCI_MANIFEST, chart, annotations=names(CHART_NAME)))
    return root, image_a, {"sbom": sha256_digest(sbom), "signature": sha256_digest(signature), "chart": sha256_digest(chart),
                           "image manifest": image_entry["digest"]}


def test_images_are_read_and_artifacts_reported(layout):
    root, image_a, digests = layout
    with open_archive(root) as archive:
        assert [image.id for image in archive.images] == [image_a.id]
        assert sorted(archive.images[0].repo_tags) == ["a:latest", "example.com/apps/a:1"]
        sbom, signature, chart = archive.artifacts
    assert sbom.summary() == {
        "kind": "sbom", "digest": digests["sbom"], "digests": [digests["sbom"]], "media_type": OCI_MANIFEST,
        "artifact_type": SBOM_TYPE, "config_media_type": "application/vnd.oci.empty.v1+json",
        "layer_media_types": [SBOM_TYPE], "ref_names": [SBOM_NAME], "references": [SBOM_NAME], "subject": None,
        "tag": None}
    assert (signature.artifact_type, signature.subject, signature.ref_names) == (SIGNATURE_TYPE, digests["image manifest"], [])
    assert (chart.artifact_type, chart.config_media_type, chart.ref_names) == (HELM_CONFIG, HELM_CONFIG, [CHART_NAME])
    info = archive_info(root)
    assert [entry["id"] for entry in info["images"]] == [image_a.id]
    assert [entry["digest"] for entry in info["artifacts"]] == [digests["sbom"], digests["signature"], digests["chart"]]


@pytest.mark.parametrize("selector, artifact_type", [(SBOM_NAME, SBOM_TYPE), (CHART_NAME, HELM_CONFIG)])
def test_selecting_an_artifact_as_an_image_says_what_it_is(layout, selector, artifact_type):
    root, image_a, _digests = layout
    with open_archive(root) as archive:
        assert [image.id for image in archive.select(["example.com/apps/a:1"])] == [image_a.id]
        with pytest.raises(NotAnImageError) as err:
            archive.select(["example.com/apps/a:1", selector])
    message = str(err.value)
    assert selector in message and "is an artifact (%s" % artifact_type in message and "not an image" in message


def test_a_name_that_is_neither_image_nor_artifact_is_not_found(layout):
    root, _image_a, _digests = layout
    with open_archive(root) as archive:
        with pytest.raises(ImageNotFoundError) as err:
            archive.select(["example.com/apps/nothing:1"])
    assert not isinstance(err.value, NotAnImageError) and "has no image example.com/apps/nothing:1" in str(err.value)


def test_the_oci_store_refuses_to_save_an_artifact_as_an_image(layout):
    root, image_a, _digests = layout
    store = OCIStore(root)
    with store.open_images(["example.com/apps/a:1"]) as images:
        assert [image.id for image in images] == [image_a.id]
    with pytest.raises(NotAnImageError) as err:
        with store.open_images([CHART_NAME]):
            pass
    assert CHART_NAME in str(err.value) and HELM_CONFIG in str(err.value)
    assert store.find(CHART_NAME) is None  # not an image the store holds


def test_resolve_all_tells_artifacts_from_absent_images():
    image_a, _image_b = sample_images()
    chart = Artifact(sha256_digest(b"chart"), OCI_MANIFEST, HELM_CONFIG, HELM_CONFIG, references=[parse_reference(CHART_NAME)])
    with pytest.raises(NotAnImageError) as err:
        resolve_all(["example.com/apps/a:1", CHART_NAME], [image_a], "here", [chart])
    assert str(err.value).startswith("here: %s is an artifact (%s, manifest %s)" % (CHART_NAME, HELM_CONFIG, chart.id))
    with pytest.raises(NotAnImageError):
        resolve_all([chart.id], [image_a], "here", [chart])
    assert resolve_all(["example.com/apps/a:1"], [image_a], "here") == [image_a]


def test_a_registry_style_lookup_of_an_artifact_fails_saying_so(layout):
    """The registry store walks a manifest it fetched by name the same way (IndexWalker.choose_image)."""
    root, _image_a, digests = layout
    walker = IndexWalker(DirSource(root), None)
    sbom = {"mediaType": OCI_MANIFEST, "digest": digests["sbom"], "size": os.path.getsize(os.path.join(root, blob_path(digests["sbom"])))}
    with pytest.raises(NotAnImageError) as err:
        walker.choose_image(sbom, SBOM_NAME)
    assert "%s is an artifact (%s)" % (SBOM_NAME, SBOM_TYPE) in str(err.value)


def test_an_image_config_media_type_with_an_invalid_config_is_still_refused(layout):
    root, _image_a, _digests = layout
    broken = artifact_manifest(root, "application/vnd.oci.image.config.v1+json", EMPTY_CONFIG,
                               "application/vnd.oci.image.layer.v1.tar", b"not a layer")
    add_entries(root, descriptor(OCI_MANIFEST, broken, annotations=names("example.com/apps/broken:1")))
    with pytest.raises(ArchiveError) as err:
        open_archive(root)
    assert "index.json entry 5 (example.com/apps/broken:1)" in str(err.value) and "invalid image config" in str(err.value)


def test_an_artifact_type_that_is_not_a_string_is_refused(layout):
    root, _image_a, _digests = layout
    odd = artifact_manifest(root, "application/vnd.oci.empty.v1+json", EMPTY_CONFIG, SBOM_TYPE, b"{}", artifactType=["x"])
    add_entries(root, descriptor(OCI_MANIFEST, odd))
    with pytest.raises(ArchiveError) as err:
        open_archive(root)
    assert "index.json entry 5" in str(err.value) and "artifactType" in str(err.value)


def test_an_index_of_artifacts_reports_each_under_the_index_name(layout):
    root, _image_a, digests = layout
    with open(os.path.join(root, blob_path(digests["sbom"])), "rb") as handle:
        sbom = handle.read()
    with open(os.path.join(root, blob_path(digests["signature"])), "rb") as handle:
        signature = handle.read()
    index = put_blob(root, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        descriptor(OCI_MANIFEST, sbom, artifactType=SBOM_TYPE), descriptor(OCI_MANIFEST, signature)]}).encode())
    add_entries(root, descriptor(OCI_INDEX, index, annotations=names("example.com/apps/a:referrers")))
    with open_archive(root) as archive:
        assert len(archive.images) == 1
        by_digest = {artifact.id: artifact for artifact in archive.artifacts}
    assert len(by_digest) == 3  # the index's members merge with the entries that name them directly
    assert by_digest[digests["sbom"]].ref_names == [SBOM_NAME, "example.com/apps/a:referrers"]
    assert by_digest[digests["signature"]].digests == [digests["signature"], sha256_digest(index)]


def test_an_index_with_an_image_and_an_artifact_gives_the_image(tmp_path):
    """An image index whose first member is an artifact without a platform, then the image, then an attestation."""
    root = str(tmp_path / "layout")
    image_a, _image_b = sample_images()
    LayoutStore(root).import_images([image_a.with_references([])])
    image_entry = image_manifest_descriptor(root)
    sbom = artifact_manifest(root, "application/vnd.oci.empty.v1+json", EMPTY_CONFIG, SBOM_TYPE, b"{}", artifactType=SBOM_TYPE)
    attestation = {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"absent"), "size": 6,
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
                   "platform": {"os": "unknown", "architecture": "unknown"}}
    platform = {"os": image_a.os, "architecture": image_a.architecture}
    index = put_blob(root, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        descriptor(OCI_MANIFEST, sbom, artifactType=SBOM_TYPE), dict(image_entry, platform=platform), attestation]}).encode())
    with open(os.path.join(root, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "manifests": [descriptor(OCI_INDEX, index, annotations=names("example.com/apps/a:2"))]}, handle)
    with open_archive(root, platform="%s/%s" % (image_a.os, image_a.architecture)) as archive:
        (image,) = archive.images
        assert image.id == image_a.id and image.repo_tags == ["example.com/apps/a:2"]
        assert image.digests == [image_entry["digest"], sha256_digest(index)]
        assert archive.artifacts == []


def test_an_entry_of_an_unknown_media_type_is_an_artifact_when_its_blob_is_there(layout):
    root, _image_a, _digests = layout
    blob = put_blob(root, b"whatever a tool stores")
    add_entries(root, descriptor("application/x-completely-unknown", blob, annotations=names("example.com/x:1")))
    with open_archive(root) as archive:
        unknown = archive.artifacts[-1]
    assert (unknown.artifact_type, unknown.config_media_type, unknown.layer_media_types) == ("application/x-completely-unknown", None, [])
    add_entries(root, {"mediaType": "application/x-completely-unknown", "digest": sha256_digest(b"absent"), "size": 6})
    with pytest.raises(ArchiveError) as err:
        open_archive(root)
    assert "index.json entry 6" in str(err.value) and "missing from the archive" in str(err.value)
