# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded OCI layout store."""

import json
import os
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.digest import sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images, tar_bytes


def test_import_then_list_then_save_gives_same_ids(tmp_path):
    store = LayoutStore(str(tmp_path / "store"))
    image_a, image_b = sample_images()
    assert store.import_images([image_a, image_b]) == [image_a.id, image_b.id]
    listed = {image.id: sorted(image.repo_tags) for image in store.images()}
    assert listed == {image_a.id: ["a:latest", "example.com/apps/a:1"], image_b.id: ["localhost:5000/b:2"]}
    assert store.layer_ids() == set(image_a.diff_ids + image_b.diff_ids)
    dest = str(tmp_path / "out.tar")
    save_archive(store.images(), dest)
    with open_archive(dest) as archive:
        assert sorted(img.id for img in archive.images) == sorted([image_a.id, image_b.id])


def test_reimport_is_a_no_op_and_a_tag_moves(tmp_path):
    store = LayoutStore(str(tmp_path / "store"))
    image_a, image_b = sample_images()
    store.import_images([image_a])
    index_before = open(str(tmp_path / "store" / "index.json"), "rb").read()
    store.import_images([image_a])
    assert open(str(tmp_path / "store" / "index.json"), "rb").read() == index_before
    store.import_images([image_b.with_references([parse_reference("a:latest")])])
    owners = {tag: image.id for image in store.images() for tag in image.repo_tags}
    assert owners == {"a:latest": image_b.id, "example.com/apps/a:1": image_a.id}


def test_thin_import_uses_layers_the_store_has(tmp_path):
    store = LayoutStore(str(tmp_path / "store"))
    image_a, image_b = sample_images()
    store.import_images([image_a])
    thin = str(tmp_path / "thin.tar")
    save_archive([image_b], thin, omit_layers=[image_b.diff_ids[0]])
    with tarfile.open(thin) as tar:
        assert "blobs/sha256/" + image_b.diff_ids[0].split(":")[1] not in tar.getnames()
    with open_archive(thin) as archive:
        assert archive.images[0].layers[0].available is False
        store.import_images(archive.images)
    assert image_b.id in [image.id for image in store.images()]
    empty = LayoutStore(str(tmp_path / "empty"))
    with open_archive(thin) as archive:
        with pytest.raises(ArchiveError, match="not in the archive"):
            empty.import_images(archive.images)
    assert json.load(open(str(tmp_path / "empty" / "index.json")))["manifests"] == []


def test_failed_import_leaves_index_untouched_and_no_temp_files(tmp_path):
    store_dir = tmp_path / "store"
    store = LayoutStore(str(store_dir))
    image_a, _image_b = sample_images()
    bad = str(tmp_path / "bad.tar")
    save_archive([image_a], bad)
    data = bytearray(open(bad, "rb").read())
    with tarfile.open(bad) as tar:
        offset = tar.getmember("blobs/sha256/" + image_a.diff_ids[1].split(":")[1]).offset_data
    data[offset + 600] ^= 0xFF
    open(bad, "wb").write(bytes(data))
    with open_archive(bad) as archive:
        with pytest.raises(ArchiveError, match="digest mismatch"):
            store.import_images(archive.images)
    assert store.images() == []
    leftovers = [name for _d, _s, files in os.walk(str(store_dir)) for name in files if name.endswith(".tmp")]
    assert leftovers == []


def test_legacy_docker_save_layout_with_symlinked_duplicate(tmp_path):
    image_a = sample_images()[0]
    layer0 = open_layer_bytes(image_a.layers[0])
    layer1 = open_layer_bytes(image_a.layers[1])
    dup_config = json.loads(image_a.config_bytes)
    dup_config["rootfs"]["diff_ids"] = [image_a.diff_ids[0], image_a.diff_ids[1], image_a.diff_ids[0]]
    config = json.dumps(dup_config).encode()
    config_hex = sha256_digest(config).split(":")[1]
    manifest = json.dumps([{"Config": config_hex + ".json", "RepoTags": None,
                            "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"]}]).encode()
    path = str(tmp_path / "legacy.tar")
    open(path, "wb").write(tar_bytes([
        (config_hex + ".json", tarfile.REGTYPE, config),
        ("aaa/VERSION", tarfile.REGTYPE, b"1.0"), ("aaa/layer.tar", tarfile.REGTYPE, layer0),
        ("bbb/layer.tar", tarfile.REGTYPE, layer1), ("ccc/layer.tar", tarfile.SYMTYPE, "../aaa/layer.tar"),
        ("manifest.json", tarfile.REGTYPE, manifest)]))
    with open_archive(path) as archive:
        (image,) = archive.images
        assert archive.format == "docker-archive"
        assert image.id == "sha256:" + config_hex
        assert image.repo_tags == []
        assert [layer.size for layer in image.layers] == [len(layer0), len(layer1), len(layer0)]
        assert open_layer_bytes(image.layers[2]) == layer0


def open_layer_bytes(layer):
    with layer.open() as stream:
        return stream.read()
