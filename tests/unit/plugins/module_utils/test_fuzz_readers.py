# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz the archive readers: real archives written by our core, mutated; reading them may only raise ImageError.

Each example opens the mutated archive, scans every entry and reads and verifies every layer (what a load does
first). Success is fine, an ImageError is fine; anything else (IndexError, KeyError, struct.error, zlib.error,
tarfile errors, RecursionError...) fails the test. The run is derandomized, so CI sees the same examples every time;
set AIRGAP_FUZZ_EXAMPLES (default 60 per test) to run longer, e.g. AIRGAP_FUZZ_EXAMPLES=5000.
"""

import functools
import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import OCI_ARCHIVE, save_archive
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.model import MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_MANIFEST, RawDocument
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import build_index, build_manifest, layer_descriptor
from ansible_collections.airgap.images.plugins.module_utils.digest import sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.test_hostile_archives import (
    compressed, members_of, read_everything, tar_of)

EXAMPLES = int(os.environ.get("AIRGAP_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KINDS = ("none", "gzip", "zstd")


# The corpus: small real archives, written by our own core -----------------------------------------------------

def tiny_images():
    base = layer_from_bytes(layer_tar({"etc": None, "etc/os-release": b"ID=fuzz\n"}), "base layer")
    app = layer_from_bytes(layer_tar({"app": None, "app/run": b"#!/bin/sh\necho hi\n", "app/link-target": b"x" * 700}), "app layer")
    return [build_image([base, app], [parse_reference("example.com/fuzz/app:1")]), build_image([base], [parse_reference("base:1")])]


@functools.lru_cache(maxsize=None)
def corpus(archive_format, kind):
    """The bytes of our archive of the tiny images: ``archive_format`` (docker-archive, oci-archive), compressed with ``kind``."""
    folder = tempfile.mkdtemp(prefix="airgap-fuzz-corpus-")
    try:
        path = os.path.join(folder, "corpus")
        save_archive(tiny_images(), path, archive_format, compression=kind)
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        shutil.rmtree(folder)


def layout_files():
    """{path: bytes} of an OCI layout directory whose layer blobs are gzip-compressed (as registries serve them)."""
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    entries = []
    for image in tiny_images():
        descriptors = []
        for layer in image.layers:
            with layer.open() as stream:
                blob = gzip.compress(stream.read(), mtime=0)
            files["blobs/sha256/" + sha256_digest(blob)[7:]] = blob
            descriptors.append(layer_descriptor(sha256_digest(blob), len(blob), MEDIA_OCI_LAYER_GZIP))
        files["blobs/sha256/" + image.id[7:]] = image.config_bytes
        manifest = build_manifest(image, descriptors)
        files["blobs/sha256/" + sha256_digest(manifest)[7:]] = manifest
        entries.append(RawDocument(manifest, MEDIA_OCI_MANIFEST).descriptor({"org.opencontainers.image.ref.name": str(image.references[0])}))
    files["index.json"] = build_index(entries)
    return files


def write_layout(files, folder):
    """An OCI layout directory of ``files`` ({path: bytes}) in ``folder``; returns its path."""
    root = os.path.join(folder, "layout")
    for path, content in files.items():
        target = os.path.join(root, *path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(content)
    return root


# The property ---------------------------------------------------------------------------------------------

def only_image_errors(write):
    """Write an archive with ``write(folder)`` (returns its path); reading it must succeed or raise ImageError."""
    folder = tempfile.mkdtemp(prefix="airgap-fuzz-")
    try:
        path = write(folder)
        try:
            read_everything(path)
        except ImageError as err:
            assert str(err), "an ImageError without a message"
    finally:
        shutil.rmtree(folder)


def write_bytes(data):
    def write(folder):
        path = os.path.join(folder, "fuzzed")
        with open(path, "wb") as out:
            out.write(data)
        return path
    return write


# Mutations of bytes ---------------------------------------------------------------------------------------

formats = st.sampled_from(["docker-archive", OCI_ARCHIVE])
kinds = st.sampled_from(KINDS)
flips = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8)


def at(data, fraction):
    return int(fraction * len(data))


@FUZZ
@given(formats, kinds, flips)
def test_byte_flips(archive_format, kind, changes):
    data = bytearray(corpus(archive_format, kind))
    for fraction, mask in changes:
        data[at(data, fraction)] ^= mask
    only_image_errors(write_bytes(bytes(data)))


@FUZZ
@given(formats, kinds, st.floats(0, 1, exclude_max=True))
def test_truncations(archive_format, kind, fraction):
    data = corpus(archive_format, kind)
    only_image_errors(write_bytes(data[:at(data, fraction)]))


@FUZZ
@given(formats, kinds, st.floats(0, 1), st.binary(min_size=1, max_size=1100), st.booleans())
def test_insertions_and_overwrites(archive_format, kind, fraction, junk, overwrite):
    data = corpus(archive_format, kind)
    where = at(data, fraction)
    tail = data[where + len(junk):] if overwrite else data[where:]
    only_image_errors(write_bytes(data[:where] + junk + tail))


# Mutations of tar headers (the checksum recomputed, so the change gets past it) ----------------------------

FIELDS = {"name": (0, 100), "mode": (100, 8), "uid": (108, 8), "size": (124, 12), "mtime": (136, 12), "type": (156, 1),
          "linkname": (157, 100), "magic": (257, 8), "prefix": (345, 155)}
field_values = st.one_of(
    st.binary(max_size=155),
    st.sampled_from([b"../../etc/passwd", b"/etc/passwd", b"manifest.json", b"index.json", b"0", b"1", b"2", b"3", b"4",
                     b"5", b"6", b"7", b"L", b"K", b"x", b"g", b"S", b"77777777777", b"\x80\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00",
                     b"\xff" * 12, b"-1", b"ustar\x0000", b"ustar  \x00"]),
)


def header_offsets(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [info.offset for info in tar] + [info.offset_data - 512 for info in tar.getmembers()]


def set_field(data, offset, field, value):
    start, length = FIELDS[field]
    block = bytearray(data[offset:offset + 512])
    block[start:start + length] = value[:length].ljust(length, b"\x00")
    block[148:156] = b" " * 8
    block[148:156] = ("%06o\x00 " % sum(block)).encode("ascii")
    return bytes(data[:offset]) + bytes(block) + bytes(data[offset + 512:])


@FUZZ
@given(formats, kinds, st.lists(st.tuples(st.integers(0, 10 ** 6), st.sampled_from(sorted(FIELDS)), field_values), min_size=1, max_size=3))
def test_tar_header_fields(archive_format, kind, changes):
    data = corpus(archive_format, "none")
    offsets = sorted(set(header_offsets(data)))
    for pick, field, value in changes:
        data = set_field(data, offsets[pick % len(offsets)], field, value)
    only_image_errors(write_bytes(compressed(data, kind)))


# Structure-aware: manifest.json and index.json changed as JSON --------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=True) | st.text(max_size=40)
    | st.sampled_from(["../x", "/etc/passwd", "blobs/sha256/" + "0" * 64, "sha256:" + "0" * 64, "sha256:zz", "layers",
                       "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)


def paths_in(value, prefix=()):
    """Every path (tuple of keys and indexes) into a JSON value, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_in(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths_in(child, prefix + (index,))


def replace_at(value, path, new):
    if not path:
        return new
    value[path[0]] = replace_at(value[path[0]], path[1:], new)
    return value


@FUZZ
@given(formats, kinds, st.sampled_from(["manifest.json", "index.json"]),
       st.lists(st.tuples(st.integers(0, 10 ** 6), json_values), min_size=1, max_size=3))
def test_metadata_json_changes(archive_format, kind, name, changes):
    members = members_of(corpus(archive_format, "none"))
    files = dict((info.name, data) for info, data in members)
    if name not in files:
        name = "index.json"
    document = json.loads(files[name])
    for pick, value in changes:
        paths = list(paths_in(document))
        document = replace_at(document, paths[pick % len(paths)], value)
    data = json.dumps(document).encode()
    changed = []
    for info, old in members:
        if info.name == name:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            old = data
        changed.append((info, old))
    only_image_errors(write_bytes(compressed(tar_of(changed), kind)))


@FUZZ
@given(st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=2), st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=2))
def test_deep_json_nesting(depths, picks):
    members = members_of(corpus("docker-archive", "none"))
    files = dict((info.name, data) for info, data in members)
    document = json.loads(files["manifest.json"])
    for depth, pick in zip(depths, picks):
        paths = list(paths_in(document))
        document = replace_at(document, paths[pick % len(paths)], "@%d" % (depth % 200000))
    data = json.dumps(document).encode()
    for depth in depths:
        data = data.replace(b'"@%d"' % (depth % 200000), b"[" * (depth % 200000) + b"]" * (depth % 200000))
    changed = [(info, old) for info, old in members if info.name != "manifest.json"]
    info = tarfile.TarInfo("manifest.json")
    info.size = len(data)
    only_image_errors(write_bytes(tar_of([(info, data)] + changed)))


# An OCI layout directory ---------------------------------------------------------------------------------------

@FUZZ
@given(st.integers(0, 10 ** 6), st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("json"), st.integers(0, 10 ** 6), json_values),
    st.tuples(st.just("remove"), st.just(0), st.just(0)),
))
def test_oci_layout_directory(pick, mutation):
    files = layout_files()
    name = sorted(files)[pick % len(files)]
    action, where, what = mutation
    data = files[name]
    if action == "flip":
        data = bytearray(data)
        data[at(data, where)] ^= what
        files[name] = bytes(data)
    elif action == "truncate":
        files[name] = data[:at(data, where)]
    elif action == "json":
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        paths = list(paths_in(document))
        files[name] = json.dumps(replace_at(document, paths[where % len(paths)], what)).encode()
    else:
        del files[name]

    only_image_errors(functools.partial(write_layout, files))


def test_the_corpus_itself_reads_cleanly():
    """The unmutated corpus is valid, so the fuzzer starts from archives that reach every reader."""
    for archive_format in ("docker-archive", OCI_ARCHIVE):
        for kind in KINDS:
            folder = tempfile.mkdtemp(prefix="airgap-fuzz-")
            try:
                path = write_bytes(corpus(archive_format, kind))(folder)
                read_everything(path)
            finally:
                shutil.rmtree(folder)
    folder = tempfile.mkdtemp(prefix="airgap-fuzz-")
    try:
        read_everything(write_layout(layout_files(), folder))
    finally:
        shutil.rmtree(folder)


pytestmark = pytest.mark.timeout(300)
