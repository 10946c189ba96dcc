# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile archives (issue 7): each is refused with an ImageError naming the archive and the entry, writes nothing,
and is refused before anything could be loaded: opening the archive and reading every layer is what a load does first.

tests/system/test_hostile_load.py drives a few of these through image_load against a real dockerd.
"""

import gzip
import io
import json
import os
import tarfile
import time

import pytest

from ansible_collections.airgap.images.plugins.module_utils import compression

from ansible_collections.airgap.images.plugins.module_utils.formats import separated
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import OCI_ARCHIVE, open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.digest import drain, sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.errors import (
    ArchiveError, CompressionError, DigestMismatchError, ImageError, UnsafeArchiveError)
from ansible_collections.airgap.images.plugins.module_utils.formats.safetar import TarSource
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images

REG, SYM, LNK = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
GIB = 1024 ** 3


def read_everything(path):
    """What a load does with an archive before anything reaches a target: its images, every entry's header checked
    (a compressed archive is otherwise read only as far as needed), and every layer read and verified."""
    with open_archive(path) as archive:
        archive.source.names()
        for image in archive.images:
            for layer in image.layers:
                if layer.available:
                    with layer.open() as stream:
                        drain(stream)


def tree(folder):
    """Every path below ``folder`` (what must be unchanged after refusing an archive in it)."""
    found = set()
    for parent, dirs, files in os.walk(folder):
        found.update(os.path.join(parent, name) for name in dirs + files)
    return found


def assert_refused(path, entry, fragment="", error=ImageError):
    """Reading ``path`` fails with ``error`` naming the archive and ``entry``; nothing is written beside it."""
    folder = os.path.dirname(path)
    before = tree(folder)
    with pytest.raises(error) as raised:
        read_everything(path)
    message = str(raised.value)
    assert path in message and entry in message and fragment in message, message
    assert tree(folder) == before
    return message


# Archives made of entries ----------------------------------------------------------------------------------

def members_of(archive_bytes):
    """[(TarInfo, data or None)] of a tar, in order."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(archive_bytes)) as tar:
        for info in tar:
            found.append((info, tar.extractfile(info).read() if info.isreg() else None))
    return found


def our_archive(tmp_path, archive_format="docker-archive"):
    """The members of our own archive of sample image a (manifest.json, config, layers, OCI half)."""
    path = str(tmp_path / ("ours-%s.tar" % archive_format))
    save_archive(sample_images()[:1], path, archive_format)
    with open(path, "rb") as handle:
        data = handle.read()
    os.unlink(path)
    return members_of(data)


def entry(name, kind=REG, payload=b""):
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind in (SYM, LNK):
        info.linkname = payload
        return info, None
    info.size = len(payload) if kind == REG else 0
    return info, payload if kind == REG else None


def tar_of(members):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def write_file(tmp_path, data, name="hostile.tar"):
    path = str(tmp_path / name)
    with open(path, "wb") as out:
        out.write(data)
    return path


def replaced(members, name, data):
    """``members`` with the file ``name`` holding ``data`` instead."""
    result = []
    for info, old in members:
        if info.name == name:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            old = data
        result.append((info, old))
    return result


def manifest_of(members):
    return json.loads(dict((info.name, data) for info, data in members)["manifest.json"])


def with_manifest(members, change):
    """``members`` with manifest.json's first item changed by ``change(item)``."""
    manifest = manifest_of(members)
    change(manifest[0])
    return replaced(members, "manifest.json", json.dumps(manifest).encode())


# Entries that could escape, or make the archive ambiguous ---------------------------------------------------

@pytest.mark.parametrize("hostile, fragment", [
    (entry("../evil", REG, b"x"), "'..'"),
    (entry("blobs/../../evil", REG, b"x"), "'..'"),
    (entry("/etc/passwd", REG, b"x"), "absolute path"),
    (entry("escape", SYM, "../../etc/passwd"), "outside the archive"),
    (entry("escape", SYM, "/etc/passwd"), "absolute path"),
    (entry("escape", LNK, "../etc/passwd"), "outside the archive"),
    (entry("escape", LNK, "/etc/passwd"), "absolute path"),
    (entry("escape", LNK, "no-such-member"), "not an earlier entry"),
    (entry("dev", tarfile.CHRTYPE), "character device"),
    (entry("disk", tarfile.BLKTYPE), "block device"),
    (entry("fifo", tarfile.FIFOTYPE), "FIFO"),
    (entry("manifest.json", REG, b"[]"), "appears twice with different content"),
], ids=["dotdot", "inner-dotdot", "absolute", "symlink-up", "symlink-absolute", "hardlink-up", "hardlink-absolute",
        "hardlink-missing", "chardev", "blockdev", "fifo", "duplicate"])
@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_hostile_entry_in_an_image_archive_is_refused(tmp_path, hostile, fragment, kind):
    members = our_archive(tmp_path)
    members.insert(3, hostile)  # among the metadata, before the layers
    path = write_file(tmp_path, compressed(tar_of(members), kind))
    assert_refused(path, repr(hostile[0].name), fragment, UnsafeArchiveError)


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_hostile_entry_after_everything_a_reader_needs_is_refused(tmp_path, kind):
    members = our_archive(tmp_path) + [entry("../evil", REG, b"x")]
    path = write_file(tmp_path, compressed(tar_of(members), kind))
    assert_refused(path, "'../evil'", "'..'", UnsafeArchiveError)


def compressed(data, kind):
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return compression._zstd.ZstdCompressor().compress(data)  # pylint: disable=protected-access
    return data


def test_a_layer_that_is_a_symlink_to_a_missing_member_is_refused(tmp_path):
    members = our_archive(tmp_path)
    layer = manifest_of(members)[0]["Layers"][1]
    members = [(info, data) for info, data in members if info.name != layer] + [entry(layer, SYM, "../gone")]
    assert_refused(write_file(tmp_path, tar_of(members)), repr(layer), "not in the archive", UnsafeArchiveError)


# manifest.json that points where it must not ------------------------------------------------------------

@pytest.mark.parametrize("field, value, fragment", [
    ("Config", "/etc/passwd", "absolute path"),
    ("Config", "../x", "'..'"),
    ("Layers", ["/etc/passwd", "x"], "absolute path"),
    ("Layers", ["../x", "x"], "'..'"),
])
def test_manifest_json_pointing_outside_the_archive_is_refused(tmp_path, field, value, fragment):
    members = with_manifest(our_archive(tmp_path), lambda item: item.update({field: value}))
    name = value if isinstance(value, str) else value[0]
    assert_refused(write_file(tmp_path, tar_of(members)), repr(name), fragment, UnsafeArchiveError)


def test_layer_count_differing_from_the_diffids_is_refused(tmp_path):
    members = with_manifest(our_archive(tmp_path), lambda item: item["Layers"].pop())
    assert_refused(write_file(tmp_path, tar_of(members)), "manifest.json entry 0", "lists 2 DiffIDs, manifest.json 1 layers",
                   ArchiveError)


def test_oci_manifest_with_a_layer_count_differing_from_the_diffids_is_refused(tmp_path):
    members = our_archive(tmp_path, OCI_ARCHIVE)
    files = dict((info.name, data) for info, data in members)
    index = json.loads(files["index.json"])
    old = index["manifests"][0]["digest"]
    manifest = json.loads(files["blobs/sha256/" + old.split(":")[1]])
    manifest["layers"].pop()
    data = json.dumps(manifest).encode()
    for descriptor in index["manifests"]:
        descriptor.update(digest=sha256_digest(data), size=len(data))
    members = replaced(members, "index.json", json.dumps(index).encode()) + [entry("blobs/sha256/" + sha256_digest(data)[7:], REG, data)]
    assert_refused(write_file(tmp_path, tar_of(members)), "manifest " + sha256_digest(data)[:19], "layers length mismatch", ArchiveError)


def test_a_layer_whose_bytes_differ_from_its_diffid_is_refused_naming_it(tmp_path):
    members = our_archive(tmp_path)
    layer = manifest_of(members)[0]["Layers"][1]
    original = dict((info.name, data) for info, data in members)[layer]
    tampered = original[:600] + bytes([original[600] ^ 1]) + original[601:]
    message = assert_refused(write_file(tmp_path, tar_of(replaced(members, layer, tampered))), "layer 1", "digest mismatch",
                             DigestMismatchError)
    assert layer.split("/")[-1] in message


def test_a_layer_longer_than_announced_stops_at_the_announced_size(tmp_path):
    members = our_archive(tmp_path)
    layer = manifest_of(members)[0]["Layers"][1]
    original = dict((info.name, data) for info, data in members)[layer]
    path = write_file(tmp_path, tar_of(replaced(members, layer, original + bytes(10240))))
    assert_refused(path, "layer 1", "more than the %d bytes announced" % len(original), DigestMismatchError)


# Truncation, non-tar input, bad JSON -----------------------------------------------------------------------

def our_bytes(tmp_path, kind):
    path = str(tmp_path / "whole")
    save_archive(sample_images(), path, compression=kind)
    with open(path, "rb") as handle:
        data = handle.read()
    os.unlink(path)
    return data


@pytest.mark.parametrize("kind, fragment", [("none", "truncated"), ("gzip", "corrupt or truncated gzip"),
                                            ("zstd", "corrupt or truncated zstd")])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.99])
def test_truncated_archives_are_refused(tmp_path, kind, fragment, keep):
    data = our_bytes(tmp_path, kind)
    assert_refused(write_file(tmp_path, data[:int(len(data) * keep)]), "", fragment, ArchiveError)


def test_a_tar_cut_between_two_entries_is_truncated_not_thin(tmp_path):
    data = tar_of(our_archive(tmp_path))
    headers = [info.offset for info, _data in members_of(data)]
    path = write_file(tmp_path, data[:headers[-1]])  # a whole number of entries, and no end-of-archive marker
    assert_refused(path, "after entry", "without the tar end-of-archive marker", ArchiveError)


@pytest.mark.parametrize("data, fragment", [
    (os.urandom(4096), "not a tar archive"),
    (b"just some text, a README that was named .tar by mistake\n" * 40, "not a tar archive"),
    (b"", "not a tar archive"),
    (gzip.compress(os.urandom(4096)), "not a tar archive"),
    (b"\x1f\x8b" + os.urandom(4096), "corrupt or truncated gzip"),
    (b"\x28\xb5\x2f\xfd" + os.urandom(4096), "corrupt or truncated zstd"),
], ids=["random", "text", "empty", "gzip-of-random", "gzip-magic-then-random", "zstd-magic-then-random"])
def test_non_tar_input_is_refused(tmp_path, data, fragment):
    assert_refused(write_file(tmp_path, data, "not-an-archive.tar"), "", fragment, ArchiveError)


@pytest.mark.parametrize("name, data, fragment", [
    ("manifest.json", b"[{", "not valid JSON"),
    ("manifest.json", b"\xff\xfe[]", "not valid JSON"),
    ("manifest.json", b"{}", "expected a JSON array"),
    ("manifest.json", b'[{"Config": 5}]', "'Config' is missing or not a string"),
    ("manifest.json", b'[{"Config": "%s", "Layers": {"a": 1}}]', "'Layers' is not a list"),
    ("index.json", b"{{", "not valid JSON"),
])
def test_invalid_json_metadata_is_refused_naming_the_file(tmp_path, name, data, fragment):
    members = our_archive(tmp_path)
    if b"%s" in data:
        data = data % manifest_of(members)[0]["Config"].encode()
    path = write_file(tmp_path, tar_of(replaced(members, name, data)))
    assert_refused(path, "manifest.json" if name == "manifest.json" else "", fragment, ArchiveError)


def test_invalid_config_json_is_refused_naming_the_entry(tmp_path):
    members = our_archive(tmp_path)
    config = manifest_of(members)[0]["Config"]
    assert_refused(write_file(tmp_path, tar_of(replaced(members, config, b"{not json"))), "manifest.json entry 0",
                   "config is not valid JSON", ArchiveError)


# Sizes: metadata declared huge, bombs --------------------------------------------------------------------------

def header(name, size):
    """The header block(s) of a member of ``size`` bytes (without its data)."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.PAX_FORMAT)


@pytest.mark.parametrize("kind", ["none", "gzip"])
def test_a_multi_gigabyte_manifest_json_is_refused_before_reading(tmp_path, kind):
    data = header("manifest.json", 5 * GIB) + bytes(64 * 1024)  # the header claims 5 GiB; nobody reads them
    data = gzip.compress(data, mtime=0) if kind == "gzip" else data
    started = time.monotonic()
    assert_refused(write_file(tmp_path, data), "'manifest.json'", "", ArchiveError)
    assert time.monotonic() - started < 5


def test_metadata_just_over_the_limit_is_refused_by_its_declared_size(tmp_path):
    members = our_archive(tmp_path)
    big = b"[" + b" " * (16 * 1024 * 1024) + b"]"
    path = write_file(tmp_path, tar_of(replaced(members, "manifest.json", big)))
    assert_refused(path, "'manifest.json'", "more than the 16777216 allowed for metadata", ArchiveError)


def test_an_extended_header_claiming_gigabytes_is_not_read_into_memory(tmp_path):
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type = tarfile.XHDTYPE
    pax.size = 3 * GIB
    data = gzip.compress(pax.tobuf(tarfile.USTAR_FORMAT) + bytes(1024 * 1024), mtime=0)
    assert_refused(write_file(tmp_path, data), "", "extended header of %d bytes" % (3 * GIB), ArchiveError)


def zeros_gzip(size, chunk=64 * 1024 * 1024):
    """``size`` zero bytes as concatenated gzip members: about size/1000 bytes on disk."""
    member = gzip.compress(bytes(chunk), 9, mtime=0)
    whole, rest = divmod(size, chunk)
    return member * whole + (gzip.compress(bytes(rest), 9, mtime=0) if rest else b"")


def entries_bytes(members):
    """Tar entries without the end-of-archive marker, so more can follow."""
    return b"".join(info.tobuf(tarfile.PAX_FORMAT) + data + bytes(-len(data) % 512) for info, data in members)


def bomb_archive(tmp_path, layer_name, layer_size):
    """An archive whose one layer ``layer_name`` is ``layer_size`` zero bytes, all of it gzipped (~1000:1)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        sha256_digest(b"what the bomb claims to be")]}}).encode()
    config_name = sha256_digest(config)[7:] + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["bomb:1"], "Layers": [layer_name]}]).encode()
    head = entries_bytes([entry("manifest.json", REG, manifest), entry(config_name, REG, config)])
    return write_file(tmp_path, gzip.compress(head + header(layer_name, layer_size), mtime=0) + zeros_gzip(layer_size)
                      + gzip.compress(bytes(1024), mtime=0), "bomb.tar.gz")


def test_a_gzip_bomb_is_refused_quickly_with_bounded_memory(tmp_path):
    path = bomb_archive(tmp_path, "layer.tar", 10 * GIB)
    assert os.path.getsize(path) < 12 * 1024 * 1024
    started = time.monotonic()
    assert_refused(path, "'layer.tar'", "expands more than 1000:1", CompressionError)
    assert time.monotonic() - started < 20  # at most EXPANSION_FLOOR (256 MiB) is decompressed, 10 GiB never are


def test_a_gzip_layer_bomb_inside_a_plain_archive_is_refused_naming_the_layer(tmp_path):
    layer = zeros_gzip(2 * GIB)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        sha256_digest(b"not these zeros")]}}).encode()
    manifest = json.dumps([{"Config": "config.json", "Layers": ["bomb/layer.tar"]}]).encode()
    path = write_file(tmp_path, tar_of([entry("manifest.json", REG, manifest), entry("config.json", REG, config),
                                        entry("bomb/layer.tar", REG, layer)]))
    started = time.monotonic()
    assert_refused(path, "manifest.json entry 0 layer 0", "expands more than 1000:1", CompressionError)
    assert time.monotonic() - started < 20


def test_padding_after_the_end_of_archive_is_bounded(tmp_path):
    members = our_archive(tmp_path)
    last = "after entry %r" % members[-1][0].name
    data = tar_of(members)
    read_everything(write_file(tmp_path, gzip.compress(data + bytes(1024 * 1024), mtime=0), "padded.tar.gz"))
    path = write_file(tmp_path, gzip.compress(data, mtime=0) + zeros_gzip(GIB), "long-padded.tar.gz")
    started = time.monotonic()
    assert_refused(path, last, "more than 16777216 bytes of padding after the end-of-archive marker")
    assert time.monotonic() - started < 10
    path = write_file(tmp_path, data + b"trailing garbage", "trailing.tar")
    assert_refused(path, last, "no valid header")


def test_too_many_entries_are_refused(tmp_path, monkeypatch):
    from ansible_collections.airgap.images.plugins.module_utils.formats import safetar
    monkeypatch.setattr(safetar, "MAX_ENTRIES", 10)
    members = our_archive(tmp_path) + [entry("extra/%d" % number, REG, b"x") for number in range(20)]
    assert_refused(write_file(tmp_path, tar_of(members)), "more than 10 entries", "", UnsafeArchiveError)


# Separated images: a manifest or a rename map that points outside ---------------------------------------------

@pytest.mark.parametrize("field, name", [("app", "../../etc/passwd"), ("lib", "/etc/passwd"), ("base", ".."),
                                         ("app", "a\x00b"), ("base", ["list"])])
def test_separated_manifest_naming_files_outside_its_directory_is_refused(tmp_path, field, name):
    folder = tmp_path / "separated"
    folder.mkdir()
    entry_fields = {"app": "app.tar", "appHash": "0", "lib": "", "base": "base.tar"}
    entry_fields[field] = name
    (folder / "manifest").write_text(json.dumps({"app:1": entry_fields}))
    before = tree(str(tmp_path))
    manifest = separated.read_manifest(str(folder))
    key, found = separated.find_entry(manifest, "app:1", str(folder))
    with pytest.raises(ArchiveError) as raised:
        separated.entry_files(str(folder), found)
    assert key == "app:1" and str(folder) in str(raised.value) and repr(name) in str(raised.value)
    assert "%s file name" % field in str(raised.value)
    assert tree(str(tmp_path)) == before


@pytest.mark.parametrize("manifest, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"app:1": ["not", "an", "object"]}', "entry app:1 is not a JSON object"),
])
def test_separated_manifest_that_is_not_what_it_should_be(tmp_path, manifest, fragment):
    (tmp_path / "manifest").write_bytes(manifest)
    with pytest.raises(ArchiveError, match=fragment) as raised:
        separated.find_entry(separated.read_manifest(str(tmp_path)), "app:1", str(tmp_path))
    assert str(tmp_path) in str(raised.value)


def test_separated_tarball_that_is_not_a_regular_file_is_refused(tmp_path):
    os.mkfifo(str(tmp_path / "app.tar"))  # hashing or opening a FIFO would hang the task
    files = separated.entry_files(str(tmp_path), {"app": "app.tar", "appHash": "0"})
    with pytest.raises(ArchiveError, match="not a regular file"):
        separated.verify_files(files, {"appHash": "0"})
    with pytest.raises(ArchiveError, match="not a regular file"):
        open_archive(files["app"])


@pytest.mark.parametrize("rename, fragment", [
    ([{"name": "a_1_app_image.tar", "rename": "../../etc/passwd"}], "'../../etc/passwd'"),
    ([{"name": "a_1_app_image.tar", "rename": "/etc/cron.d/x"}], "'/etc/cron.d/x'"),
    ([{"name": "..", "rename": "x.tar"}], "'..'"),
    ([{"name": "a_1_app_image.tar", "rename": 7}], "7"),
    ([{"name": "a_1_app_image.tar", "rename": ["x"]}], "['x']"),
    ({"name": "a", "rename": "b"}, "must be a list"),
    (["a.tar"], "need 'name' and 'rename'"),
])
def test_rename_map_that_leaves_the_directory_is_refused(tmp_path, rename, fragment):
    with pytest.raises(separated.SeparationError) as raised:
        separated.load_rename(rename)
    assert fragment in str(raised.value)
    path = str(tmp_path / "rename.json")
    with open(path, "w") as out:
        json.dump(rename, out)
    with pytest.raises(separated.SeparationError) as raised:
        separated.load_rename(path)
    assert fragment in str(raised.value)


def test_separated_manifest_that_is_huge_or_not_a_file_is_refused(tmp_path):
    with open(str(tmp_path / "manifest"), "wb") as out:
        out.truncate(17 * 1024 * 1024)  # sparse: 17 MiB declared, nothing to read
    with pytest.raises(ArchiveError, match="more than the 16777216 allowed for metadata"):
        separated.read_manifest(str(tmp_path))
    os.unlink(str(tmp_path / "manifest"))
    os.mkfifo(str(tmp_path / "manifest"))
    with pytest.raises(ArchiveError, match="manifest is not a regular file"):
        separated.read_manifest(str(tmp_path))


def test_the_end_of_a_compressed_archive_is_checked_without_reading_it_twice(tmp_path, monkeypatch):
    path = write_file(tmp_path, gzip.compress(tar_of(our_archive(tmp_path)), mtime=0), "once.tar.gz")
    opened = []
    original = compression.DecompressingReader.__init__

    def counting(self, raw, kind, what):
        opened.append(what)
        original(self, raw, kind, what)
    monkeypatch.setattr(compression.DecompressingReader, "__init__", counting)
    with TarSource(path) as source:
        source.names()  # tarfile steps back one block to the end-of-archive marker: served from memory, no reopen
    assert opened == [path]
