# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core's writers and readers against each other, on images built in memory."""

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils import compression
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.digest import chain_ids, sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError, CompressionError, DigestMismatchError

from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images, read_all

GO_EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def test_empty_layer_matches_docker_well_known_digest():
    assert sha256_digest(layer_tar({})) == GO_EMPTY_LAYER


def test_chain_ids_follow_the_oci_definition():
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    chain = chain_ids([a, b, c])
    second = "sha256:" + hashlib.sha256((a + " " + b).encode()).hexdigest()
    assert chain == [a, second, "sha256:" + hashlib.sha256((second + " " + c).encode()).hexdigest()]


def test_docker_archive_round_trip(tmp_path):
    image_a, image_b = sample_images()
    dest = str(tmp_path / "out.tar")
    result = save_archive([image_a, image_b], dest)
    assert result.size == os.path.getsize(dest)
    assert result.sha256 == sha256_digest(open(dest, "rb").read())
    with open_archive(dest) as archive:
        assert archive.format == "docker-archive+oci"
        assert archive.compression == "none"
        assert [img.id for img in archive.images] == [image_a.id, image_b.id]
        assert archive.images[0].repo_tags == ["example.com/apps/a:1", "a:latest"]
        assert archive.images[1].repo_tags == ["localhost:5000/b:2"]
        for read, original in zip(archive.images, (image_a, image_b)):
            assert read.diff_ids == original.diff_ids
            assert [read_all(layer) for layer in read.layers] == [read_all(layer) for layer in original.layers]
            assert read.size == original.size


def test_writer_layout_is_metadata_first_and_each_layer_once(tmp_path):
    image_a, image_b = sample_images()
    dest = str(tmp_path / "out.tar")
    save_archive([image_a, image_b], dest)
    with tarfile.open(dest) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:4] == ["manifest.json", "repositories", "oci-layout", "index.json"]
    layer_names = ["blobs/sha256/" + d.split(":")[1] for d in image_a.diff_ids + image_b.diff_ids[1:]]
    assert sorted(n for n in names if n in layer_names) == sorted(layer_names)
    first_layer = min(names.index(n) for n in layer_names)
    assert all(n in layer_names for n in names[first_layer:]), "every manifest, index and config precedes the first layer"
    assert len(names) == len(set(names))
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    with tarfile.open(dest) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        index = json.load(tar.extractfile("index.json"))
    assert manifest[0]["RepoTags"] == ["example.com/apps/a:1", "docker.io/library/a:latest"]
    annotations = [entry["annotations"] for entry in index["manifests"]]
    assert {"io.containerd.image.name": "docker.io/library/a:latest", "org.opencontainers.image.ref.name": "latest"} in annotations


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_output_is_byte_identical_across_runs(tmp_path, kind):
    first, second = str(tmp_path / "1"), str(tmp_path / "2")
    assert save_archive(sample_images(), first, compression=kind).sha256 == save_archive(sample_images(), second, compression=kind).sha256
    assert open(first, "rb").read() == open(second, "rb").read()


@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz", "bzip2"])
def test_compressed_archives_are_detected_and_read(tmp_path, kind):
    plain = str(tmp_path / "plain.tar")
    save_archive(sample_images(), plain)
    packed = str(tmp_path / "packed")
    data = open(plain, "rb").read()
    if kind in ("gzip", "zstd"):
        save_archive(sample_images(), packed, compression=kind)
    else:
        import bz2
        import lzma
        open(packed, "wb").write(lzma.compress(data) if kind == "xz" else bz2.compress(data))
    with open_archive(packed) as archive:
        assert archive.compression == kind
        assert [img.id for img in archive.images] == [img.id for img in sample_images()]
        assert read_all(archive.images[1].layers[1]) == read_all(sample_images()[1].layers[1])
        assert read_all(archive.images[0].layers[0]) == read_all(sample_images()[0].layers[0])


def test_truncated_gzip_archive_is_a_clear_error(tmp_path):
    packed = str(tmp_path / "packed.tar.gz")
    save_archive(sample_images(), packed, compression="gzip")
    data = open(packed, "rb").read()
    open(packed, "wb").write(data[: len(data) // 2])
    with pytest.raises((CompressionError, ArchiveError)) as err:
        with open_archive(packed) as archive:
            for image in archive.images:
                for layer in image.layers:
                    read_all(layer)
    assert "packed.tar.gz" in str(err.value)


def test_flipped_byte_in_layer_is_a_diffid_mismatch_naming_the_layer(tmp_path):
    image_a, image_b = sample_images()
    dest = str(tmp_path / "out.tar")
    save_archive([image_b], dest)
    target = image_b.diff_ids[1].split(":")[1]
    with tarfile.open(dest) as tar:
        offset = tar.getmember("blobs/sha256/" + target).offset_data
    with open(dest, "r+b") as handle:
        handle.seek(offset + 5000)
        byte = handle.read(1)
        handle.seek(offset + 5000)
        handle.write(bytes([byte[0] ^ 0x01]))
    with open_archive(dest) as archive:
        with pytest.raises(DigestMismatchError) as err:
            read_all(archive.images[0].layers[1])
    message = str(err.value)
    assert "layer 1" in message and image_b.diff_ids[1] in message


def test_truncated_plain_archive_is_refused(tmp_path):
    dest = str(tmp_path / "out.tar")
    save_archive(sample_images(), dest)
    size = os.path.getsize(dest)
    with open(dest, "r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(ArchiveError) as err:
        open_archive(dest)
    assert "truncated" in str(err.value)


def test_oci_archive_round_trip_and_full_ref_names(tmp_path):
    dest = str(tmp_path / "oci.tar")
    save_archive(sample_images(), dest, archive_format="oci-archive")
    with tarfile.open(dest) as tar:
        names = tar.getnames()
        index = json.load(tar.extractfile("index.json"))
    assert names[:2] == ["oci-layout", "index.json"]
    assert "manifest.json" not in names
    ref_names = [entry["annotations"]["org.opencontainers.image.ref.name"] for entry in index["manifests"]]
    assert ref_names == ["example.com/apps/a:1", "docker.io/library/a:latest", "localhost:5000/b:2"]
    with open_archive(dest) as archive:
        assert archive.format == "oci-archive"
        assert sorted(archive.images[0].repo_tags) == ["a:latest", "example.com/apps/a:1"]
        assert [img.id for img in archive.images] == [img.id for img in sample_images()]


def write_layout(root, blobs, index, layout=True):
    os.makedirs(os.path.join(root, "blobs", "sha256"))
    for data in blobs:
        with open(os.path.join(root, "blobs", "sha256", sha256_digest(data).split(":")[1]), "wb") as out:
            out.write(data)
    with open(os.path.join(root, "index.json"), "w") as out:
        json.dump(index, out)
    if layout:
        with open(os.path.join(root, "oci-layout"), "w") as out:
            out.write('{"imageLayoutVersion": "1.0.0"}')


def descriptor(media_type, data, **extra):
    entry = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    entry.update(extra)
    return entry


def compressed_layout(tmp_path, kind):
    """An OCI layout whose layer is compressed (as registries and containerd store them), behind a nested index."""
    raw = layer_tar({"hello.txt": b"hello world\n" * 1000})
    blob = gzip.compress(raw, mtime=0) if kind == "gzip" else __import__("zstandard").ZstdCompressor().compress(raw)
    image = build_image([layer_from_bytes(raw)])
    config = image.config_bytes
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+" + kind, blob)]}).encode()
    missing_arm = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64, "size": 10,
                   "platform": {"os": "linux", "architecture": "arm64"}}
    inner = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        missing_arm, descriptor("application/vnd.oci.image.manifest.v1+json", manifest, platform={
            "os": "linux", "architecture": image.architecture})]}).encode()
    root = str(tmp_path / ("layout-" + kind))
    write_layout(root, [blob, config, manifest, inner], {"schemaVersion": 2, "manifests": [
        descriptor("application/vnd.oci.image.index.v1+json", inner,
                   annotations={"io.containerd.image.name": "docker.io/library/hello:1", "org.opencontainers.image.ref.name": "1"})]})
    return root, image, raw


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_oci_layout_with_compressed_layers_and_nested_index(tmp_path, kind):
    root, image, raw = compressed_layout(tmp_path, kind)
    with open_archive(root) as archive:
        assert archive.format == "oci-dir"
        (read,) = archive.images
        assert read.id == image.id
        assert read.repo_tags == ["hello:1"]
        assert read.layers[0].size is None
        assert read_all(read.layers[0]) == raw
        assert read.layers[0].measured_size() == len(raw)


def test_platform_absent_from_archive_is_reported_with_what_is_there(tmp_path):
    root, _image, _raw = compressed_layout(tmp_path, "gzip")
    with pytest.raises(ArchiveError) as err:
        open_archive(root, platform="linux/arm64")
    assert "linux/arm64" in str(err.value) and "listed" in str(err.value)


def test_tampered_compressed_blob_fails_its_digest(tmp_path):
    root, _image, raw = compressed_layout(tmp_path, "gzip")
    blob_dir = os.path.join(root, "blobs", "sha256")
    blob = sha256_digest(gzip.compress(raw, mtime=0)).split(":")[1]
    path = os.path.join(blob_dir, blob)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))
    with open_archive(root) as archive:
        with pytest.raises((DigestMismatchError, CompressionError)) as err:
            read_all(archive.images[0].layers[0])
    assert blob[:12] in str(err.value) or "gzip" in str(err.value)


def test_a_compressed_oci_layout_saved_as_docker_archive_keeps_its_blobs_and_manifest(tmp_path):
    root, image, raw = compressed_layout(tmp_path, "zstd")
    dest = str(tmp_path / "kept.tar")
    with open_archive(root) as archive:
        source = archive.images[0]
        save_archive(archive.images, dest)
    with open_archive(dest) as archive:
        kept = archive.images[0]
        assert (kept.id, kept.manifest_digest, kept.manifest.data) == (image.id, source.manifest_digest, source.manifest.data)
        assert kept.layers[0].blob_digest == source.layers[0].blob_digest and kept.layers[0].compression == "zstd"
        assert read_all(kept.layers[0]) == raw
    with tarfile.open(dest) as tar:
        listed = json.load(tar.extractfile("manifest.json"))[0]["Layers"]
    assert listed == ["blobs/sha256/" + source.layers[0].blob_digest.split(":")[1]], "docker's side points at the same blob"


def test_converting_a_compressed_oci_layout_makes_a_new_uncompressed_manifest(tmp_path):
    root, image, raw = compressed_layout(tmp_path, "zstd")
    dest = str(tmp_path / "converted.tar")
    with open_archive(root) as archive:
        source_digest, pinned = archive.images[0].manifest_digest, archive.images[0].digest
        save_archive([archive.images[0].without_manifest()], dest)
    with open_archive(dest) as archive:
        converted = archive.images[0]
        assert converted.id == image.id and converted.manifest_digest != source_digest
        assert converted.layers[0].size == len(raw) and converted.layers[0].compression == "none"
        assert read_all(converted.layers[0]) == raw
        assert converted.converted_from == pinned  # the only name an engine keying on manifests knows it by
    again = str(tmp_path / "again.tar")
    with open_archive(dest) as archive:
        save_archive([archive.images[0].without_manifest()], again)  # converted once more: still named by the first
    with open_archive(again) as archive:
        assert archive.images[0].converted_from == pinned
    with open_archive(root) as archive:
        assert archive.images[0].converted_from is None
    classic = str(tmp_path / "classic.tar")
    save_archive([image.without_manifest()], classic)  # a source without a manifest: nothing to record
    with open_archive(classic) as archive:
        index = json.loads(archive.source.read_bytes("index.json"))
        assert archive.images[0].converted_from is None
        assert all("org.airgap-images.image.converted-from" not in (entry.get("annotations") or {}) for entry in index["manifests"])


def test_zstd_missing_gives_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(compression, "_zstd", None)
    with pytest.raises(CompressionError) as err:
        save_archive(sample_images(), str(tmp_path / "x.tar.zst"), compression="zstd")
    assert "pip install zstandard" in str(err.value)
    assert not os.listdir(str(tmp_path))


def test_stdlib_gzip_fallback_reads_and_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(compression, "_isal_gzip", None)
    dest = str(tmp_path / "x.tar.gz")
    result = save_archive(sample_images(), dest, compression="gzip")
    assert result.compressor == "zlib"
    assert gzip.open(dest).read(512)[:13] == b"manifest.json"
    with open_archive(dest) as archive:
        assert len(archive.images) == 2


def test_failed_save_leaves_previous_file_and_no_temp(tmp_path):
    dest = str(tmp_path / "out.tar")
    save_archive(sample_images(), dest)
    before = open(dest, "rb").read()
    broken = build_image([layer_from_bytes(layer_tar({"x": b"1"}))])
    broken.layers[0]._open_blob = lambda: io.BytesIO(layer_tar({"x": b"2"}))  # pylint: disable=protected-access
    with pytest.raises(DigestMismatchError):
        save_archive([broken], dest)
    assert open(dest, "rb").read() == before
    assert os.listdir(str(tmp_path)) == ["out.tar"]


def absent(arch):
    """An index entry for a platform whose manifest is not in the archive."""
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_digest(arch.encode()),
            "size": 100, "platform": {"os": "linux", "architecture": arch}}


def test_docker29_containerd_store_archive(tmp_path):
    """Docker 29 with the containerd store: manifest.json points at gzip blobs, index.json at a multi-platform
    index whose other platforms (and attestations) are absent from the archive."""
    from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import tar_bytes
    raw = layer_tar({"hello.txt": b"hello from docker 29\n" * 500})
    blob = gzip.compress(raw, mtime=0)
    image = build_image([layer_from_bytes(raw)])
    config = image.config_bytes
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", blob)]}).encode()
    attestation = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_digest(b"att"), "size": 3,
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
                   "platform": {"os": "unknown", "architecture": "unknown"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        absent("arm64"), descriptor("application/vnd.oci.image.manifest.v1+json", manifest,
                                    platform={"os": "linux", "architecture": image.architecture}),
        absent("s390x"), attestation]}).encode()
    top = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        descriptor("application/vnd.oci.image.index.v1+json", index, annotations={
            "io.containerd.image.name": "docker.io/library/hello:29", "org.opencontainers.image.ref.name": "29"})]}).encode()
    hexes = {name: sha256_digest(data).split(":")[1] for name, data in (("blob", blob), ("config", config), ("manifest", manifest), ("index", index))}
    docker_manifest = json.dumps([{"Config": "blobs/sha256/" + hexes["config"], "RepoTags": ["hello:29"],
                                   "Layers": ["blobs/sha256/" + hexes["blob"]]}]).encode()
    path = str(tmp_path / "docker29.tar")
    entries = [("blobs/sha256/" + hexes[name], tarfile.REGTYPE, data)
               for name, data in (("blob", blob), ("config", config), ("manifest", manifest), ("index", index))]
    entries += [("index.json", tarfile.REGTYPE, top), ("manifest.json", tarfile.REGTYPE, docker_manifest),
                ("oci-layout", tarfile.REGTYPE, b'{"imageLayoutVersion":"1.0.0"}')]
    open(path, "wb").write(tar_bytes(entries))
    with open_archive(path) as archive:
        assert archive.format == "docker-archive+oci"
        (read,) = archive.images
        assert read.id == image.id and read.repo_tags == ["hello:29"]
        assert read.digests == [sha256_digest(manifest), sha256_digest(index)]
        assert read.layers[0].size is None
        assert read_all(read.layers[0]) == raw
    dest = str(tmp_path / "ours.tar")
    with open_archive(path) as archive:
        save_archive(archive.images, dest)
    with open_archive(dest) as archive:
        (ours,) = archive.images
        assert (ours.manifest_digest, ours.index_digest) == (sha256_digest(manifest), sha256_digest(index))
        assert ours.platform == {"os": "linux", "architecture": image.architecture}
        assert read_all(ours.layers[0]) == raw


def test_tar_writer_long_names_and_huge_sizes_use_pax():
    from ansible_collections.airgap.images.plugins.module_utils.formats.tarwriter import TarWriter
    out = io.BytesIO()
    writer = TarWriter(out)
    long_name = "blobs/" + "d" * 150
    writer.add_bytes(long_name, b"x")
    writer.close()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.getnames() == [long_name]
        assert tar.extractfile(long_name).read() == b"x"

    sink = io.BytesIO()
    TarWriter(sink)._header("big", tarfile.REGTYPE, size=9 * 1024 ** 3)  # pylint: disable=protected-access
    assert b"size=%d\n" % (9 * 1024 ** 3) in sink.getvalue()
    info = tarfile.TarInfo.frombuf(sink.getvalue()[-512:], "utf-8", "strict")
    assert info.name == "big"


def test_docker25_style_layer_sources_and_orphan_blobs(tmp_path):
    """Docker 25+ lists LayerSources (uncompressed sizes) and leaves legacy v1 JSON blobs unreferenced."""
    from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import tar_bytes
    image_a, _image_b = sample_images()
    ours = str(tmp_path / "ours.tar")
    save_archive([image_a], ours)
    with tarfile.open(ours) as tar:
        entries = [(m.name, m.type, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    sizes = {diff_id: len(read_all(layer)) for diff_id, layer in zip(image_a.diff_ids, image_a.layers)}
    rewritten = []
    for name, kind, data in entries:
        if name == "manifest.json":
            item = json.loads(data)[0]
            item["LayerSources"] = {d: {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": s, "digest": d}
                                    for d, s in sizes.items()}
            data = json.dumps([item]).encode()
        rewritten.append((name, kind, data))
    orphan = b'{"id":"legacy-v1-json"}'
    rewritten.insert(3, ("blobs/sha256/" + sha256_digest(orphan).split(":")[1], tarfile.REGTYPE, orphan))
    docker25 = str(tmp_path / "docker25.tar")
    open(docker25, "wb").write(tar_bytes(rewritten))
    with open_archive(docker25) as archive:
        (image,) = archive.images
        assert image.id == image_a.id
        assert [layer.size for layer in image.layers] == [sizes[d] for d in image_a.diff_ids]
        assert [read_all(layer) for layer in image.layers] == [read_all(layer) for layer in image_a.layers]


def docker25_untagged(tmp_path, index):
    """Our archive of an untagged image, rewritten as Docker 25 saves one: RepoTags null, and ``index`` as index.json."""
    from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import tar_bytes
    image = sample_images()[0].with_references([])
    ours = str(tmp_path / "ours.tar")
    save_archive([image], ours)
    with tarfile.open(ours) as tar:
        entries = [(m.name, m.type, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    rewritten = []
    for name, kind, data in entries:
        if name == "manifest.json":
            item = json.loads(data)[0]
            item["RepoTags"] = None
            data = json.dumps([item]).encode()
        elif name == "index.json":
            data = json.dumps(index).encode()
        rewritten.append((name, kind, data))
    path = str(tmp_path / "docker25-untagged.tar")
    open(path, "wb").write(tar_bytes(rewritten))
    return path, image


def test_docker25_untagged_save_with_null_index_manifests(tmp_path):
    """Docker 25 writes a Go nil slice, "manifests": null, when no image is tagged (issue 11)."""
    path, image = docker25_untagged(tmp_path, {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                               "manifests": None})
    with open_archive(path) as archive:
        assert archive.format == "docker-archive+oci"
        (read,) = archive.images
        assert read.id == image.id and read.repo_tags == [] and read.digests == []
        assert [read_all(layer) for layer in read.layers] == [read_all(layer) for layer in image.layers]


@pytest.mark.parametrize("index", [{"schemaVersion": 2}, {"schemaVersion": 2, "manifests": "none"},
                                   {"schemaVersion": 2, "manifests": {}}])
def test_index_without_a_manifests_list_is_still_refused(tmp_path, index):
    path, _image = docker25_untagged(tmp_path, index)
    with pytest.raises(ArchiveError) as err:
        open_archive(path)
    assert "index.json: not an image index (no 'manifests' list)" in str(err.value)
