# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Artifacts that travel with an image when asked: manifests whose ``subject`` is the image (a signature, an SBOM)
and the attestation manifests BuildKit lists in an image's index. They are copied as they came, found again as
referrers after the copy, and never given to an engine as images."""

import json
import os
import tarfile

from ansible_collections.airgap.images.plugins.module_utils.digest import sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import blob_path
from ansible_collections.airgap.images.plugins.module_utils.operations import archive_info
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore
from ansible_collections.airgap.images.plugins.module_utils.stores.store import images_only

from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.test_layout_artifacts import (
    EMPTY_CONFIG, OCI_INDEX, OCI_MANIFEST, SIGNATURE_TYPE, artifact_manifest, descriptor, image_manifest_descriptor,
    names, put_blob)

ATTESTATION_TYPE = "application/vnd.in-toto+json"


def layout_with_referrers(tmp_path):
    """Image a behind an index that also lists a BuildKit attestation manifest, and a signature whose subject is the
    index (as cosign signs a multi-platform image)."""
    root = str(tmp_path / "layout")
    image_a = sample_images()[0].with_references([])
    LayoutStore(root).import_images([image_a])
    manifest_entry = image_manifest_descriptor(root)
    manifest_entry["platform"] = {"os": image_a.os, "architecture": image_a.architecture}
    attestation = artifact_manifest(root, "application/vnd.oci.image.config.v1+json", EMPTY_CONFIG, ATTESTATION_TYPE,
                                    b'{"_type":"https://in-toto.io/Statement/v0.1"}')
    attestation_entry = descriptor(OCI_MANIFEST, attestation, platform={"os": "unknown", "architecture": "unknown"},
                                   annotations={"vnd.docker.reference.type": "attestation-manifest",
                                                "vnd.docker.reference.digest": manifest_entry["digest"]})
    index = put_blob(root, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                       "manifests": [manifest_entry, attestation_entry]}).encode())
    subject = descriptor(OCI_INDEX, index)
    signature = artifact_manifest(root, SIGNATURE_TYPE, EMPTY_CONFIG, "application/vnd.dev.cosign.simplesigning.v1+json",
                                  b'{"critical":{}}', subject=subject)
    with open(os.path.join(root, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            descriptor(OCI_INDEX, index, annotations=names("example.com/apps/a:1")), descriptor(OCI_MANIFEST, signature)]}, handle)
    return root, {"index": sha256_digest(index), "attestation": sha256_digest(attestation),
                  "signature": sha256_digest(signature), "manifest": manifest_entry["digest"]}


def referrer_digests(image):
    return sorted(artifact.id for artifact in image.referrers)


def test_an_image_carries_its_attestation_and_the_signature_whose_subject_is_its_index(tmp_path):
    root, digests = layout_with_referrers(tmp_path)
    with open_archive(root) as archive:
        (image,) = archive.images
        assert (image.index_digest, image.manifest_digest) == (digests["index"], digests["manifest"])
        assert referrer_digests(image) == sorted([digests["attestation"], digests["signature"]])
        assert [artifact.id for artifact in archive.artifacts] == [digests["signature"]]
    info = archive_info(root)
    assert sorted(ref["digest"] for ref in info["images"][0]["referrers"]) == sorted([digests["attestation"], digests["signature"]])


def test_referrers_are_copied_as_they_came_and_found_again(tmp_path):
    root, digests = layout_with_referrers(tmp_path)
    for archive_format in ("docker-archive", "oci-archive"):
        dest = str(tmp_path / ("copy-%s.tar" % archive_format))
        with open_archive(root) as archive:
            save_archive(archive.images, dest, archive_format)
        with open_archive(dest) as copied:
            (image,) = copied.images
            assert image.index_digest == digests["index"]
            assert referrer_digests(image) == sorted([digests["attestation"], digests["signature"]])
            for artifact in image.referrers:
                for blob in artifact.blobs:
                    with blob.open() as stream:
                        assert sha256_digest(stream.read()) == blob.digest
        with tarfile.open(dest) as tar:
            names_in_tar = set(tar.getnames())
            index = json.load(tar.extractfile("index.json"))
        assert {blob_path(digests[key]) for key in ("attestation", "signature", "index", "manifest")} <= names_in_tar
        assert [entry["digest"] for entry in index["manifests"] if "annotations" not in entry] == [digests["signature"]]
        if archive_format == "docker-archive":
            with tarfile.open(dest) as tar:
                listed = json.load(tar.extractfile("manifest.json"))
            assert len(listed) == 1, "docker's side lists the image only"
    store_root = str(tmp_path / "store")
    with open_archive(root) as archive:
        LayoutStore(store_root).import_images(archive.images)
    (stored,) = LayoutStore(store_root).images()
    assert referrer_digests(stored) == sorted([digests["attestation"], digests["signature"]])


def test_without_referrers_nothing_but_the_image_is_written_and_engines_never_get_them(tmp_path):
    root, digests = layout_with_referrers(tmp_path)
    dest = str(tmp_path / "plain.tar")
    with open_archive(root) as archive:
        (image,) = archive.images
        assert images_only([image])[0].referrers == [] and image.referrers
        save_archive([image.with_referrers([])], dest)
    with tarfile.open(dest) as tar:
        names_in_tar = set(tar.getnames())
    assert blob_path(digests["signature"]) not in names_in_tar and blob_path(digests["attestation"]) not in names_in_tar
    with open_archive(dest) as archive:
        assert archive.images[0].index_digest == digests["index"], "the index is kept whole all the same"
        assert archive.images[0].referrers == [] and archive.artifacts == []
