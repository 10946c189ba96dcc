# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An archive sent to an engine as it is: which files are checked, and that a corrupt one stops the stream in time.

The loads themselves, into every Docker and Podman generation, are in tests/system (test_modules.py, test_hostile_load.py).
"""

import gzip
import hashlib
import os
import shutil
import threading
import time

import pytest

from ansible_collections.airgap.images.plugins.module_utils.digest import CHUNK_SIZE, Region, verified_file_chunks
from ansible_collections.airgap.images.plugins.module_utils.errors import DigestMismatchError
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures")


def region_of(data, offset, size, what):
    return Region(offset, size, "sha256:" + hashlib.sha256(data[offset:offset + size]).hexdigest(), what)


def test_the_chunks_are_the_file_and_every_region_is_checked(tmp_path):
    data = os.urandom(3 * CHUNK_SIZE + 12345)
    path = tmp_path / "file"
    path.write_bytes(data)
    regions = [region_of(data, 10, 100, "small"), region_of(data, CHUNK_SIZE - 7, CHUNK_SIZE + 14, "across"),
               region_of(data, 2 * CHUNK_SIZE + 5, 0, "empty"), region_of(data, 3 * CHUNK_SIZE, 12345, "last")]
    assert b"".join(verified_file_chunks(str(path), len(data), regions)) == data


def test_a_corrupt_region_stops_the_stream_before_the_chunk_that_ends_it(tmp_path):
    data = bytearray(os.urandom(4 * CHUNK_SIZE))
    region = region_of(bytes(data), CHUNK_SIZE // 2, 2 * CHUNK_SIZE, "layer 1 of example.com/apps/a:1")
    data[CHUNK_SIZE] ^= 0xFF
    path = tmp_path / "file"
    path.write_bytes(bytes(data))
    sent = []
    with pytest.raises(DigestMismatchError) as err:
        for chunk in verified_file_chunks(str(path), len(data), [region]):
            sent.append(chunk)
    assert "layer 1 of example.com/apps/a:1: digest mismatch: expected " + region.digest in str(err.value)
    assert sum(len(chunk) for chunk in sent) < region.offset + region.size  # the region's end never left


def test_a_file_shorter_than_announced_fails(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(Exception, match="ended at byte 1000 of 2000"):
        list(verified_file_chunks(str(path), 2000, []))


def test_our_docker_archive_goes_as_it_is_with_every_file_the_engine_reads_checked(tmp_path):
    images = sample_images()
    dest = str(tmp_path / "images.tar")
    save_archive(images, dest, "docker-archive")
    with open(dest, "rb") as handle:
        data = handle.read()
    with open_archive(dest) as archive:
        regions = archive.as_is_regions(archive.images)
        assert regions is not None
        by_digest = {region.digest: region for region in regions}
        for image in archive.images:
            for wanted in [image.id, image.manifest_digest] + [layer.stored_digest for layer in image.layers]:
                region = by_digest[wanted]
                assert "sha256:" + hashlib.sha256(data[region.offset:region.offset + region.size]).hexdigest() == wanted
        assert any(region.what.endswith(": manifest.json") for region in regions)
        assert any(region.what.endswith(": index.json") for region in regions)
        assert archive.as_is_regions(archive.images[:1]) is None  # a subset is re-written


def test_a_legacy_docker_save_is_checked_by_diffid(tmp_path):
    """go-containerregistry's test_image_1.tar: Docker <= 24's ``<id>/layer.tar`` layout (see tests/fixtures/README.md)."""
    path = os.path.join(FIXTURES, "go-containerregistry", "tarball", "test_image_1.tar")
    with open_archive(path) as archive:
        regions = archive.as_is_regions(archive.images)
        digests = {region.digest for region in regions}
        assert {layer.diff_id for image in archive.images for layer in image.layers} <= digests
        assert {image.id for image in archive.images} <= digests


def test_archives_an_engine_cannot_take_as_they_are_are_rewritten(tmp_path):
    images = sample_images()
    plain = str(tmp_path / "images.tar")
    save_archive(images, plain, "docker-archive")
    packed = str(tmp_path / "images.tar.gz")
    with open(plain, "rb") as source, gzip.open(packed, "wb") as out:
        shutil.copyfileobj(source, out)
    oci = str(tmp_path / "oci.tar")
    save_archive(images, oci, "oci-archive")
    for path, platform in ((packed, None), (oci, None), (plain, "linux/amd64")):
        with open_archive(path, platform) as archive:
            assert archive.as_is_regions(archive.images) is None, path


def test_what_an_engine_would_read_otherwise_is_rewritten():
    """Podman reads ``bazel/v1/tarball:test_image_1`` as ``localhost/...``; an engine keyed on manifest digests would
    make a manifest of its own for an image that comes without one."""
    path = os.path.join(FIXTURES, "go-containerregistry", "tarball", "test_image_1.tar")
    with open_archive(path) as archive:
        assert archive.as_is_regions(archive.images) is not None
        assert archive.as_is_regions(archive.images, qualified_tags=True) is None
        assert archive.as_is_regions(archive.images, with_manifests=True) is None


def test_our_archive_suits_every_engine(tmp_path):
    dest = str(tmp_path / "images.tar")
    save_archive(sample_images(), dest, "docker-archive")
    with open_archive(dest) as archive:
        assert archive.as_is_regions(archive.images, with_manifests=True, qualified_tags=True) is not None


def test_a_consumer_that_stops_early_leaves_no_thread_behind(tmp_path):
    """The engine may hang up mid-body: closing the generator must return even when the reader has read to the end."""
    data = os.urandom(5 * CHUNK_SIZE)  # one taken, four fill the queue: the reader is done and waits to say so
    path = tmp_path / "file"
    path.write_bytes(data)
    chunks = verified_file_chunks(str(path), len(data), [region_of(data, 0, len(data), "all of it")])
    assert next(chunks) == data[:CHUNK_SIZE]
    time.sleep(0.5)  # the reader fills the queue and reaches the end meanwhile
    closer = threading.Thread(target=chunks.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()
    assert not [thread for thread in threading.enumerate() if thread is not threading.current_thread()
                and thread is not closer and thread.daemon and thread.is_alive() and "produce" in repr(thread)]
