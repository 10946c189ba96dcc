# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archives written by the previous version (commit 1074943, before images kept their manifests) still load, and
the images they hold get the same manifest digests from this version: a host that loaded one sees them as present.

tests/fixtures/airgap-images/previous-*.tar.gz are archive_helpers.sample_images() saved by that commit's
save_archive (docker-archive gzip-compressed as a whole; oci-archive gzipped with ``gzip -9n`` afterwards).
"""

import gzip
import json
import os
import shutil
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import read_all, sample_images

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "airgap-images")


def index_digests(path):
    with tarfile.open(path) as tar:
        return sorted({entry["digest"] for entry in json.load(tar.extractfile("index.json"))["manifests"]})


@pytest.fixture(name="previous", params=["previous-docker-archive.tar.gz", "previous-oci-archive.tar.gz", "plain"])
def previous_archive(request, tmp_path):
    """Each fixture, and the docker-archive uncompressed (the plain tar the previous version wrote by default)."""
    if request.param != "plain":
        return os.path.join(FIXTURES, request.param)
    plain = str(tmp_path / "previous-docker-archive.tar")
    with gzip.open(os.path.join(FIXTURES, "previous-docker-archive.tar.gz")) as source, open(plain, "wb") as out:
        shutil.copyfileobj(source, out)
    return plain


def test_an_archive_of_the_previous_version_reads_with_its_manifests_and_verified_layers(previous):
    expected = {image.id: image for image in sample_images()}
    with open_archive(previous) as archive:
        assert sorted(image.id for image in archive.images) == sorted(expected)
        assert sorted(image.manifest_digest for image in archive.images) == index_digests(previous)
        for image in archive.images:
            assert sorted(image.repo_tags) == sorted(expected[image.id].repo_tags)
            assert [read_all(layer) for layer in image.layers] == [read_all(layer) for layer in expected[image.id].layers]


def test_the_same_images_written_now_have_the_previous_manifest_digests(previous, tmp_path):
    for archive_format in ("docker-archive", "oci-archive"):
        now = str(tmp_path / ("now-" + archive_format + ".tar"))
        save_archive(sample_images(), now, archive_format)
        assert index_digests(now) == index_digests(previous)
