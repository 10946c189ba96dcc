# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Saving from a plain archive or a layout directory copies each layer that lies as it is stored in a file in the
kernel (``copy_file_range``), then checks it where it landed: the same bytes as the streamed path, every copied layer
verified, a corrupt one refused before the archive is renamed into place, and a copy that the kernel refuses done
through a buffer."""

import gzip
import hashlib
import io
import os
import shutil
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils import atomic, digest
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError, DigestMismatchError
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.stores.store import OCIStore
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images


@pytest.fixture
def copies(monkeypatch):
    """The (size) of every copy_file_range call."""
    calls = []
    real = os.copy_file_range

    def counting(source, target, count, offset_src=None, offset_dst=None):
        calls.append(count)
        return real(source, target, count, offset_src, offset_dst)
    monkeypatch.setattr(os, "copy_file_range", counting)
    return calls


def sha256_file(path):
    with open(path, "rb") as handle:
        return "sha256:" + hashlib.sha256(handle.read()).hexdigest()


def plain_and_gzipped(tmp_path):
    """Our archive of the sample images, plain and gzipped (a gzipped source has no regions: its layers stream)."""
    plain = str(tmp_path / "source.tar")
    save_archive(list(sample_images()), plain)
    with open(plain, "rb") as source, gzip.open(str(tmp_path / "source.tar.gz"), "wb") as packed:
        shutil.copyfileobj(source, packed)
    return plain, str(tmp_path / "source.tar.gz")


@pytest.mark.parametrize("archive_format", ["docker-archive", "oci-archive"])
def test_layers_of_a_plain_archive_are_copied_in_the_kernel_into_the_same_bytes(tmp_path, copies, archive_format):
    plain, gzipped = plain_and_gzipped(tmp_path)
    results = {}
    for name, source in (("copied", plain), ("streamed", gzipped)):
        del copies[:]
        dest = str(tmp_path / (name + ".tar"))
        with open_archive(source) as archive:
            results[name] = save_archive(archive.images, dest, archive_format)
        assert results[name].sha256 == sha256_file(dest) and results[name].size == os.path.getsize(dest)
        layers = {layer.diff_id: layer.size for image in sample_images() for layer in image.layers}
        assert sum(copies) == (sum(layers.values()) if name == "copied" else 0)
    assert open(str(tmp_path / "copied.tar"), "rb").read() == open(str(tmp_path / "streamed.tar"), "rb").read()


def test_a_layout_directory_s_blob_files_are_copied_whole(tmp_path, copies):
    layout = str(tmp_path / "layout")
    OCIStore(layout).import_images(list(sample_images()))
    dest = str(tmp_path / "out.tar")
    saved = save_archive(OCIStore(layout).images(), dest)
    assert copies and saved.sha256 == sha256_file(dest)
    with open_archive(dest) as archive:
        assert sorted(image.id for image in archive.images) == sorted(image.id for image in sample_images())


def test_a_corrupt_layer_is_copied_then_refused_and_nothing_is_renamed_into_place(tmp_path, copies):
    plain, _gzipped = plain_and_gzipped(tmp_path)
    image_b = sample_images()[1]
    target = "blobs/sha256/" + image_b.diff_ids[1].split(":", 1)[1]
    with tarfile.open(plain) as tar:
        offset = tar.getmember(target).offset_data
    with open(plain, "r+b") as handle:
        handle.seek(offset + 4096)
        byte = handle.read(1)
        handle.seek(offset + 4096)
        handle.write(bytes([byte[0] ^ 0x01]))
    dest = tmp_path / "out" / "saved.tar"
    dest.parent.mkdir()
    dest.write_bytes(b"the previous archive")
    with open_archive(plain) as archive:
        with pytest.raises(DigestMismatchError) as err:
            save_archive(archive.images, str(dest))
    assert copies, "the corrupt layer went the kernel copy path"
    assert image_b.diff_ids[1] in str(err.value) and "layer 1" in str(err.value)
    assert dest.read_bytes() == b"the previous archive" and os.listdir(str(dest.parent)) == ["saved.tar"]


def test_a_copy_the_kernel_refuses_goes_through_a_buffer(tmp_path, monkeypatch):
    plain, gzipped = plain_and_gzipped(tmp_path)

    def refuse(*_args):
        raise OSError(18, "Invalid cross-device link")
    monkeypatch.setattr(os, "copy_file_range", refuse)
    with open_archive(plain) as archive:
        copied = save_archive(archive.images, str(tmp_path / "copied.tar"))
    with open_archive(gzipped) as archive:
        streamed = save_archive(archive.images, str(tmp_path / "streamed.tar"))
    assert copied.sha256 == streamed.sha256 == sha256_file(str(tmp_path / "copied.tar"))


def test_a_source_shorter_than_its_region_fails_naming_it(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_bytes(b"x" * 1000)
    with open(str(source), "rb") as src, open(str(target), "wb") as out:
        with pytest.raises(ArchiveError, match="the layer: ended after 1000 of 5000 bytes"):
            digest.copy_file_region(src.fileno(), 0, out.fileno(), 0, 5000, "the layer")


def test_regions_are_hashed_in_order_with_the_bytes_written_around_them(tmp_path):
    source = tmp_path / "source"
    body = os.urandom(3 * digest.CHUNK_SIZE + 17)
    source.write_bytes(b"head" + body)
    with open(str(tmp_path / "write-only"), "wb") as out:
        writer = digest.BackgroundHashingWriter(out)
        assert not writer.copies_regions  # the copied bytes could not be read back
        writer.close()
    with open(str(tmp_path / "out"), "w+b") as out:
        writer = digest.BackgroundHashingWriter(out)
        assert writer.copies_regions
        writer.write(b"before")
        writer.copy_region(digest.FileRegion(str(source), 4, len(body)), "sha256:" + hashlib.sha256(body).hexdigest(), "the body")
        writer.write(b"after")
        writer.close()
    assert writer.count == len(body) + 11
    assert writer.digest == "sha256:" + hashlib.sha256(b"before" + body + b"after").hexdigest() == sha256_file(str(tmp_path / "out"))
    with open(str(tmp_path / "out2"), "w+b") as out:
        writer = digest.BackgroundHashingWriter(out)
        with pytest.raises(DigestMismatchError, match="the body: digest mismatch"):  # raised as soon as it is found
            try:
                writer.copy_region(digest.FileRegion(str(source), 4, len(body)), "sha256:" + "0" * 64, "the body")
            finally:
                writer.close()  # as save_archive does


@pytest.fixture
def written_back(monkeypatch):
    """The (offset, size) of every range the writer asked the kernel to start writing back."""
    calls = []
    real = digest.start_writeback

    def recording(fd, offset, size):
        calls.append((offset, size))
        real(fd, offset, size)
    monkeypatch.setattr(digest, "start_writeback", recording)
    return calls


def test_a_region_is_copied_in_pieces_each_checked_and_written_back_in_order(tmp_path, monkeypatch, copies, written_back):
    monkeypatch.setattr(digest.BackgroundHashingWriter, "PIECE_SIZE", digest.CHUNK_SIZE)
    first, second = os.urandom(3 * digest.CHUNK_SIZE + 5), os.urandom(digest.CHUNK_SIZE)
    source = tmp_path / "source"
    source.write_bytes(first + second)
    with open(str(tmp_path / "out"), "w+b") as out:
        writer = digest.BackgroundHashingWriter(out)
        writer.write(b"head")
        writer.copy_region(digest.FileRegion(str(source), 0, len(first)), "sha256:" + hashlib.sha256(first).hexdigest(), "first")
        writer.copy_region(digest.FileRegion(str(source), len(first), 0), "sha256:" + hashlib.sha256(b"").hexdigest(), "empty")
        writer.copy_region(digest.FileRegion(str(source), len(first), len(second)), "sha256:" + hashlib.sha256(second).hexdigest(), "second")
        writer.write(b"tail" * digest.CHUNK_SIZE)
        writer.close()
    assert copies == [digest.CHUNK_SIZE] * 3 + [5, digest.CHUNK_SIZE]  # the empty region copies nothing
    assert writer.digest == sha256_file(str(tmp_path / "out"))
    ends = [offset + size for offset, size in written_back]
    assert [offset for offset, _size in written_back] == [0] + ends[:-1], "contiguous, from the start of the file"
    assert ends[-1] == 4 + len(first) + len(second) + 4 * digest.CHUNK_SIZE, "every byte but a last partial piece"
    with open(str(tmp_path / "out2"), "w+b") as out:
        writer = digest.BackgroundHashingWriter(out)
        corrupt = first[:-1] + bytes([first[-1] ^ 1])
        with pytest.raises(DigestMismatchError, match="first: digest mismatch"):  # by the next copy, or at the close
            try:
                writer.copy_region(digest.FileRegion(str(source), 0, len(first)), "sha256:" + hashlib.sha256(corrupt).hexdigest(), "first")
                writer.copy_region(digest.FileRegion(str(source), len(first), len(second)), "sha256:" + hashlib.sha256(second).hexdigest(), "second")
            finally:
                writer.close()  # as save_archive does


def test_a_writer_into_memory_neither_copies_nor_writes_back(written_back):
    sink = io.BytesIO()
    writer = digest.BackgroundHashingWriter(sink)
    assert not writer.copies_regions
    writer.write(b"x" * (digest.BackgroundHashingWriter.PIECE_SIZE + 1))
    assert writer.digest == "sha256:" + hashlib.sha256(sink.getvalue()).hexdigest() and written_back == []


def test_start_writeback_leaves_the_file_as_written(tmp_path):
    path = tmp_path / "file"
    with open(str(path), "w+b") as out:
        out.write(b"data" * 4096)
        out.flush()
        atomic.start_writeback(out.fileno(), 0, 4 * 4096)
        atomic.start_writeback(out.fileno(), 0, 0)
        os.fsync(out.fileno())
    assert path.read_bytes() == b"data" * 4096
