# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incremental OCI layout bundles: only missing blobs, index.json last and in one order, prune (no engine)."""

import json
import os

import pytest

from ansible_collections.airgap.images.plugins.module_utils import bundles
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.errors import StoreError
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.operations import (
    after_lines, find_wanted, run_save, save_reason)
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.store import OCIStore
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.test_referrers import layout_with_referrers

NAME = "io.containerd.image.name"


def layer(name, size):
    return layer_from_bytes(layer_tar({name: bytes(range(256)) * (size // 256)}), name)


@pytest.fixture
def source(tmp_path):
    """An OCI layout holding site/base:1, site/app-a:1 and site/app-b:1 (app-a and app-b share base and lib)."""
    base, lib, app_a, app_b = layer("base", 64 * 1024), layer("lib", 32 * 1024), layer("a", 8192), layer("b", 4096)
    store = OCIStore(str(tmp_path / "source"))
    store.import_images([build_image([base], [parse_reference("site/base:1")]),
                         build_image([base, lib, app_a], [parse_reference("site/app-a:1")]),
                         build_image([base, lib, app_b], [parse_reference("site/app-b:1")])])
    return store


class Opened:
    """Counts the blobs the source store streams (layer reads), by digest."""

    def __init__(self, store):
        self.digests = []
        original = store.source.open

        def counting(name):
            if name.startswith("blobs/"):
                self.digests.append("sha256:" + name.rsplit("/", 1)[-1])
            return original(name)
        store.source.open = counting


def save(store, selectors, dest, prune=False, dry_run=False, force=False, compression="none", convert=False,
         referrers=False):
    """What image_save does for format=oci-dir: (reason, result or None)."""
    wanted = find_wanted(store, selectors, referrers)
    reason, existing = save_reason(wanted, dest, "oci-dir", compression, force, convert, referrers, prune)
    if reason is None:
        return None, None
    return reason, run_save(store, wanted, dest, "oci-dir", compression, None, convert, referrers, prune, force,
                            existing, dry_run)[1]


def blob_files(root):
    folder = os.path.join(root, "blobs", "sha256")
    return {"sha256:" + name: os.stat(os.path.join(folder, name)) for name in os.listdir(folder) if not name.startswith(".")}


def held(root):
    with open_archive(root, platform="all") as archive:
        return {tag: image.manifest_digest for image in archive.images for tag in image.repo_tags}


def test_a_second_save_writes_only_the_new_images_blobs_and_keeps_the_others(tmp_path, source):
    dest = str(tmp_path / "bundle")
    _reason, first = save(source, ["site/app-a:1"], dest)
    assert first.blobs_written == 5 and first.blobs_kept == 0  # 3 layers, config, manifest
    before = blob_files(dest)
    opened = Opened(source)
    reason, second = save(source, ["site/app-b:1"], dest)
    assert "site/app-b:1 is not in the archive" in reason
    app_b = next(image for image in source.images() if image.repo_tags == ["site/app-b:1"])
    new_blobs = {app_b.layers[2].stored_digest, app_b.id, app_b.manifest_digest}
    assert second.blobs_written == 3 and second.blobs_kept == 2  # base and lib: never opened at the source
    assert opened.digests == [app_b.layers[2].stored_digest]
    assert second.bytes_written == sum(blob_files(dest)[digest].st_size for digest in new_blobs)
    after = blob_files(dest)
    assert set(after) == set(before) | new_blobs
    for digest, stat in before.items():
        assert (after[digest].st_ino, after[digest].st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert sorted(held(dest)) == ["site/app-a:1", "site/app-b:1"]
    assert second.changed and second.pruned == []
    assert save(source, ["site/app-b:1"], dest) == (None, None)  # a re-run: ok
    assert save(source, ["site/app-a:1", "site/app-b:1"], dest) == (None, None)


def test_the_index_is_the_same_bytes_whatever_order_the_images_came_in(tmp_path, source):
    one, two, three = (str(tmp_path / name) for name in ("one", "two", "three"))
    save(source, ["site/app-a:1"], one)
    save(source, ["site/app-b:1"], one)
    save(source, ["site/app-b:1"], two)
    save(source, ["site/app-a:1"], two)
    save(source, ["site/app-b:1", "site/app-a:1"], three)
    index = open(os.path.join(one, "index.json"), "rb").read()
    assert open(os.path.join(two, "index.json"), "rb").read() == index
    assert open(os.path.join(three, "index.json"), "rb").read() == index
    names = [entry["annotations"][NAME] for entry in json.loads(index)["manifests"]]
    assert names == sorted(names)


def test_prune_removes_the_dropped_image_and_its_blobs_but_not_shared_ones(tmp_path, source):
    dest = str(tmp_path / "bundle")
    save(source, ["site/app-a:1", "site/app-b:1"], dest)
    app_a = next(image for image in source.images() if image.repo_tags == ["site/app-a:1"])
    before = blob_files(dest)
    planned = save(source, ["site/app-b:1"], dest, prune=True, dry_run=True)[1]
    assert blob_files(dest) == before  # check mode changes nothing
    reason, pruned = save(source, ["site/app-b:1"], dest, prune=True)
    assert "also holds site/app-a:1" in reason
    assert pruned.pruned == [{"name": "docker.io/site/app-a:1", "digest": app_a.manifest_digest}] == planned.pruned
    gone = {app_a.id, app_a.manifest_digest, app_a.layers[2].stored_digest}
    assert set(before) - set(blob_files(dest)) == gone and pruned.blobs_deleted == 3 == planned.blobs_deleted
    assert pruned.blobs_written == 0 and planned.blobs_written == 0
    assert {app_a.layers[0].stored_digest, app_a.layers[1].stored_digest} <= set(blob_files(dest))
    assert held(dest) == {"site/app-b:1": next(image.manifest_digest for image in source.images()
                                               if image.repo_tags == ["site/app-b:1"])}
    assert save(source, ["site/app-b:1"], dest, prune=True) == (None, None)


def test_prune_also_cleans_blobs_nothing_references(tmp_path, source):
    dest = str(tmp_path / "bundle")
    save(source, ["site/base:1"], dest)
    stray = os.path.join(dest, "blobs", "sha256", "0" * 64)
    with open(stray, "wb") as out:
        out.write(b"left by a failed run")
    assert save(source, ["site/base:1"], dest) == (None, None)  # without prune, a stray blob is harmless
    reason, result = save(source, ["site/base:1"], dest, prune=True)
    assert "1 blobs (20 bytes) that no image in it references" in reason
    assert result.blobs_deleted == 1 and not os.path.exists(stray) and result.pruned == []


def test_a_tag_moves_and_the_image_that_had_it_stays_unnamed(tmp_path, source):
    dest = str(tmp_path / "bundle")
    save(source, ["site/app-a:1"], dest)
    app_b = next(image for image in source.images() if image.repo_tags == ["site/app-b:1"])
    source.tag(OCIStore(source.root).find("site/app-b:1"), parse_reference("site/app-a:1"))
    save(source, ["site/app-a:1"], dest)
    entries = json.loads(open(os.path.join(dest, "index.json"), "rb").read())["manifests"]
    assert [(entry.get("annotations") or {}).get(NAME) for entry in entries] == ["docker.io/site/app-a:1", None]
    assert entries[0]["digest"] == app_b.manifest_digest
    assert save(source, ["site/app-a:1"], dest) == (None, None)
    _reason, pruned = save(source, ["site/app-a:1"], dest, prune=True)
    assert [entry["name"] for entry in pruned.pruned] == [None] and pruned.blobs_deleted == 3


def test_a_failure_midway_leaves_the_old_index_and_keeps_the_new_blobs(tmp_path, source):
    dest = str(tmp_path / "bundle")
    save(source, ["site/base:1"], dest)
    index = open(os.path.join(dest, "index.json"), "rb").read()
    app_a = next(image for image in source.images() if image.repo_tags == ["site/app-a:1"])
    original = source.source.open

    def failing(name):
        if name.endswith(app_a.layers[2].stored_digest.split(":")[1]):
            raise StoreError("the source went away")
        return original(name)
    source.source.open = failing
    with pytest.raises(StoreError):
        save(source, ["site/app-a:1"], dest)
    assert open(os.path.join(dest, "index.json"), "rb").read() == index
    assert app_a.layers[1].stored_digest in blob_files(dest)  # written before the failure: kept for the next run
    assert not [name for name in os.listdir(os.path.join(dest, "blobs", "sha256")) if name.startswith(".")]
    source.source.open = original
    _reason, again = save(source, ["site/app-a:1"], dest)
    assert again.blobs_kept == 2 and again.blobs_written == 3


def test_a_blob_of_the_wrong_size_is_written_again(tmp_path, source):
    dest = str(tmp_path / "bundle")
    save(source, ["site/base:1"], dest)
    base = next(image for image in source.images() if image.repo_tags == ["site/base:1"])
    path = os.path.join(dest, "blobs", "sha256", base.layers[0].stored_digest.split(":")[1])
    os.chmod(path, 0o644)
    with open(path, "r+b") as out:
        out.truncate(100)
    _reason, result = save(source, ["site/base:1"], dest, force=True)
    assert os.path.getsize(path) == base.layers[0].blob_size
    assert result.blobs_written == 3 and not result.index_changed


def test_merge_entries_moves_names_keeps_unnamed_images_and_prunes():
    image_x = {"mediaType": "m", "digest": "sha256:" + "1" * 64, "annotations": {NAME: "app:1"}}
    image_y = {"mediaType": "m", "digest": "sha256:" + "2" * 64, "annotations": {NAME: "app:1"}}
    other = {"mediaType": "m", "digest": "sha256:" + "3" * 64, "annotations": {NAME: "other:1"}}
    referrer = {"mediaType": "m", "digest": "sha256:" + "4" * 64}
    entries, removed = bundles.merge_entries([image_x, referrer, other], [image_y], is_image=lambda d: d is image_x)
    assert entries == [image_y, other, {"mediaType": "m", "digest": image_x["digest"]}, referrer]
    assert removed == [("app:1", image_x["digest"])]
    entries, removed = bundles.merge_entries([image_x, referrer, other], [image_y], prune=True, keep=lambda d: d is referrer)
    assert entries == [image_y, referrer] and removed == [("app:1", image_x["digest"]), ("other:1", other["digest"])]
    unnamed_x = {"mediaType": "m", "digest": image_x["digest"]}
    assert bundles.merge_entries([unnamed_x], [image_x])[0] == [image_x]  # an unnamed entry goes when a name leads there
    assert bundles.index_order([referrer, other, image_x]) == bundles.index_order([image_x, other, referrer, other])


def test_after_lines_keep_the_other_images_of_a_bundle(tmp_path, source):
    dest = str(tmp_path / "bundle")
    save(source, ["site/app-a:1"], dest)
    wanted = find_wanted(source, ["site/app-b:1"])
    _reason, existing = save_reason(wanted, dest, "oci-dir", "none", False)
    lines = after_lines(wanted, existing, keeps_others=True)
    assert [line.split()[1] for line in lines] == sorted(["site/app-a:1", "site/app-b:1"], key=lambda tag: [
        image.id for image in source.images() if tag in image.repo_tags][0])
    assert [line.split()[1] for line in after_lines(wanted, existing)] == ["site/app-b:1"]


def test_layers_this_task_compressed_are_not_compressed_again(tmp_path, source):
    dest = str(tmp_path / "bundle")
    _reason, first = save(source, ["site/app-a:1"], dest, compression="gzip", convert=True)
    assert first.blobs_written == 5
    before = blob_files(dest)
    opened = Opened(source)
    _reason, second = save(source, ["site/app-a:1", "site/app-b:1"], dest, compression="gzip", convert=True)
    assert second.blobs_written == 3 and second.blobs_kept == 5
    assert len(opened.digests) == 1  # only app-b's own layer is read (and compressed)
    assert unchanged_files(before, blob_files(dest))
    assert save(source, ["site/app-a:1", "site/app-b:1"], dest, compression="gzip", convert=True) == (None, None)


def unchanged_files(before, after):
    return all((after[d].st_ino, after[d].st_mtime_ns) == (s.st_ino, s.st_mtime_ns) for d, s in before.items())


def test_prune_keeps_what_is_attached_to_kept_images_and_drops_the_rest(tmp_path):
    root, digests = layout_with_referrers(tmp_path)
    source = OCIStore(root)
    source.import_images([sample_images()[1]])  # localhost:5000/b:2
    dest = str(tmp_path / "bundle")
    save(source, ["example.com/apps/a:1", "localhost:5000/b:2"], dest, referrers=True)
    attached = {digests["signature"], digests["attestation"]}
    assert attached <= set(blob_files(dest))
    assert save(source, ["example.com/apps/a:1"], dest, referrers=True) == (None, None)  # b stays: no prune
    _reason, kept = save(source, ["example.com/apps/a:1"], dest, prune=True)
    assert [entry["name"] for entry in kept.pruned] == ["localhost:5000/b:2"]
    assert attached <= set(blob_files(dest))  # the signature and attestation of a kept image stay
    entries = json.loads(open(os.path.join(dest, "index.json"), "rb").read())["manifests"]
    assert [entry["digest"] for entry in entries] == [digests["index"], digests["signature"]]
    source.import_images([sample_images()[1]])
    save(source, ["localhost:5000/b:2"], dest)
    _reason, dropped = save(source, ["localhost:5000/b:2"], dest, prune=True)
    assert sorted(entry["digest"] for entry in dropped.pruned) == sorted([digests["index"], digests["signature"]])
    assert not attached & set(blob_files(dest)) and digests["manifest"] not in blob_files(dest)
    assert save(source, ["localhost:5000/b:2"], dest, prune=True) == (None, None)


def test_check_mode_counts_what_a_new_bundle_would_hold_and_makes_nothing(tmp_path, source):
    missing, a_file = str(tmp_path / "missing"), str(tmp_path / "a-file")
    with open(a_file, "wb") as out:
        out.write(b"not a layout")
    for dest in (missing, a_file):
        reason, planned = save(source, ["site/app-a:1", "site/app-b:1"], dest, prune=True, dry_run=True)
        assert reason and planned.blobs_written == 8 and planned.blobs_kept == 0 and planned.pruned == []
    assert not os.path.exists(missing) and open(a_file, "rb").read() == b"not a layout"
