# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tar reader refuses entries that could escape the archive or make it ambiguous."""

import io
import json
import os
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError, UnsafeArchiveError
from ansible_collections.airgap.images.plugins.module_utils.formats.safetar import DirSource, TarSource
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import tar_bytes


def write(tmp_path, entries, name="a.tar"):
    path = str(tmp_path / name)
    with open(path, "wb") as out:
        out.write(tar_bytes(entries))
    return path


@pytest.mark.parametrize("entries, fragment", [
    ([("../evil", tarfile.REGTYPE, b"x")], "'..'"),
    ([("a/../../evil", tarfile.REGTYPE, b"x")], "'..'"),
    ([("/etc/passwd", tarfile.REGTYPE, b"x")], "absolute path"),
    ([("link", tarfile.SYMTYPE, "../../etc/passwd")], "outside the archive"),
    ([("link", tarfile.SYMTYPE, "/etc/passwd")], "absolute path"),
    ([("hard", tarfile.LNKTYPE, "nothing-before")], "not an earlier entry"),
    ([("dev", tarfile.CHRTYPE, None)], "character device"),
    ([("fifo", tarfile.FIFOTYPE, None)], "FIFO"),
    ([("dup", tarfile.REGTYPE, b"one"), ("dup", tarfile.REGTYPE, b"two")], "appears twice"),
])
def test_hostile_entries_are_refused_naming_the_entry(tmp_path, entries, fragment):
    path = write(tmp_path, entries)
    with pytest.raises(UnsafeArchiveError) as err:
        TarSource(path).names()
    assert fragment in str(err.value)
    assert path in str(err.value)


def test_identical_duplicates_are_accepted(tmp_path):
    path = write(tmp_path, [("dup", tarfile.REGTYPE, b"same"), ("dup", tarfile.REGTYPE, b"same")])
    with TarSource(path) as source:
        assert source.read_bytes("dup") == b"same"


def test_links_inside_the_archive_resolve(tmp_path):
    path = write(tmp_path, [("a/real", tarfile.REGTYPE, b"data"), ("b/sym", tarfile.SYMTYPE, "../a/real"),
                            ("hard", tarfile.LNKTYPE, "a/real"), ("loop1", tarfile.SYMTYPE, "loop2"),
                            ("loop2", tarfile.SYMTYPE, "loop1"), ("dangling", tarfile.SYMTYPE, "missing")])
    with TarSource(path) as source:
        assert source.read_bytes("b/sym") == b"data"
        assert source.read_bytes("./hard") == b"data"
        with pytest.raises(UnsafeArchiveError, match="too many levels"):
            source.read_bytes("loop1")
        with pytest.raises(UnsafeArchiveError, match="not in the archive"):
            source.read_bytes("dangling")
        with pytest.raises(ArchiveError, match="no entry 'absent'"):
            source.read_bytes("absent")


def test_manifest_pointing_outside_is_refused(tmp_path):
    manifest = json.dumps([{"Config": "../../etc/passwd", "RepoTags": [], "Layers": []}]).encode()
    path = write(tmp_path, [("manifest.json", tarfile.REGTYPE, manifest)])
    with pytest.raises(UnsafeArchiveError, match="'..'"):
        open_archive(path)
    manifest = json.dumps([{"Config": "/etc/passwd", "RepoTags": [], "Layers": []}]).encode()
    path = write(tmp_path, [("manifest.json", tarfile.REGTYPE, manifest)], "b.tar")
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        open_archive(path)


def test_oversized_and_invalid_json_metadata(tmp_path):
    path = write(tmp_path, [("manifest.json", tarfile.REGTYPE, b"[{")])
    with pytest.raises(ArchiveError, match="not valid JSON"):
        open_archive(path)
    with TarSource(path) as source:
        with pytest.raises(ArchiveError, match="more than the 1 allowed"):
            source.read_json("manifest.json", limit=1)


def test_non_tar_input_says_what_was_expected(tmp_path):
    path = str(tmp_path / "x.tar")
    with open(path, "wb") as out:
        out.write(b"this is not a tar archive at all" * 100)
    with pytest.raises(ArchiveError, match="not a tar archive"):
        open_archive(path)


def test_rootfs_tarball_is_not_an_image_archive(tmp_path):
    path = write(tmp_path, [("etc/hostname", tarfile.REGTYPE, b"x")])
    with pytest.raises(ArchiveError, match="docker import"):
        open_archive(path)


def test_dir_source_is_confined(tmp_path):
    root = tmp_path / "layout"
    root.mkdir()
    (tmp_path / "secret").write_bytes(b"s")
    os.symlink(str(tmp_path / "secret"), str(root / "escape"))
    source = DirSource(str(root))
    with pytest.raises(UnsafeArchiveError, match="outside the directory"):
        source.read_bytes("escape")
    with pytest.raises(UnsafeArchiveError, match="'..'"):
        source.read_bytes("../secret")


@pytest.mark.parametrize("pax, fragment", [
    ({"GNU.sparse.map": "1,x"}, "not a tar archive"),  # tarfile raises ValueError parsing it
    ({"size": "-5"}, "negative size"),
    ({"path": "a\x00b"}, "NUL-containing name"),
])
def test_pax_records_tarfile_cannot_use_are_archive_errors(tmp_path, pax, fragment):
    info = tarfile.TarInfo("x")
    info.pax_headers = pax
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info)
    path = str(tmp_path / "pax.tar")
    with open(path, "wb") as handle:
        handle.write(out.getvalue())
    with pytest.raises(ArchiveError, match=fragment):
        TarSource(path).names()
