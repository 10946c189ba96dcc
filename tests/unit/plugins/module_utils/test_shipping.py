# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning what a host lacks of a bundle, and loading the partial layout it receives (OCI layout stores, no engine)."""

import base64
import hashlib
import os
import shutil

import pytest

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.formats import separated
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError
from ansible_collections.airgap.images.plugins.module_utils.operations import archive_info, layout_compression
from ansible_collections.airgap.images.plugins.module_utils.loading import (
    describe_held, images_sender, plan_load, plan_shipping, run_load, verify_loaded)
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.shipping import bundle_images_from
from ansible_collections.airgap.images.plugins.module_utils.stores.store import OCIStore


def layer(name, size):
    return layer_from_bytes(layer_tar({name: bytes(range(256)) * (size // 256)}), name)


@pytest.fixture
def images():
    base, lib, app_a, app_b = layer("base", 64 * 1024), layer("lib", 32 * 1024), layer("a", 8192), layer("b", 4096)
    return {
        "base": build_image([base], [parse_reference("site/base:1")]),
        "app-a": build_image([base, lib, app_a], [parse_reference("site/app-a:1")]),
        "app-b": build_image([base, lib, app_b], [parse_reference("site/app-b:1")]),
    }


@pytest.fixture
def bundle(tmp_path, images):
    root = str(tmp_path / "bundle")
    OCIStore(root).import_images(list(images.values()))
    return root, archive_info(root)


def ship(root, plan, staging):
    """What the role's copy task does: the listed layer files, into the staging directory."""
    for entry in plan.ship:
        target = os.path.join(staging, entry["file"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(root, entry["file"]), target)


def load(store, info, staging):
    """What image_load does with ``bundle`` and ``src``."""
    images = bundle_images_from(info, staging)
    plan = plan_load(store, images)
    run_load(store, plan, images_sender(store))
    verify_loaded(store, images)


def test_a_host_holding_the_base_receives_only_the_other_layers(tmp_path, images, bundle):
    root, info = bundle
    host = OCIStore(str(tmp_path / "host"))
    host.import_images([images["base"]])
    plan = plan_shipping(host, info, str(tmp_path / "staging"))
    result = plan.result()
    expected_layers = {"blobs/sha256/" + d.split(":", 1)[1] for d in images["app-a"].diff_ids[1:] + images["app-b"].diff_ids[2:]}
    shipped = [entry["file"] for entry in result["ship"]]
    every_layer_file = {layer["file"] for image in info["images"] for layer in image["layers"]}
    assert shipped == ["blobs/sha256/" + d.split(":", 1)[1] for d in images["app-a"].diff_ids[1:] + images["app-b"].diff_ids[2:]]
    assert set(shipped) == expected_layers <= every_layer_file
    assert result["missing_layers"] == images["app-a"].diff_ids[1:] + images["app-b"].diff_ids[2:]
    assert {(i["repo_tags"][0], i["state"]) for i in result["bundle_images"]} == {
        ("site/base:1", "present"), ("site/app-a:1", "load"), ("site/app-b:1", "load")}
    base_blob = os.path.getsize(os.path.join(root, "blobs", "sha256", images["base"].diff_ids[0].split(":", 1)[1]))
    assert result["skip_bytes"] == result["bundle_bytes"] - result["ship_bytes"] == base_blob
    assert result["naive_bytes"] == sum(image.size for image in images.values())

    ship(root, plan, str(tmp_path / "staging"))
    load(host, info, str(tmp_path / "staging"))
    assert {image.id for image in host.images()} == {image.id for image in images.values()}
    again = plan_shipping(host, info, str(tmp_path / "staging")).result()
    assert again["ship"] == [] and again["needs_load"] is False and again["skip_bytes"] == again["bundle_bytes"]


def test_intact_staged_files_are_not_shipped_again_and_partial_ones_are(tmp_path, images, bundle):
    root, info = bundle
    host, staging = OCIStore(str(tmp_path / "host")), str(tmp_path / "staging")
    first = plan_shipping(host, info, staging)
    ship(root, first, staging)
    partial = os.path.join(staging, "blobs", "sha256", images["app-b"].diff_ids[-1].split(":", 1)[1])
    with open(partial, "r+b") as handle:
        handle.truncate(100)
    resumed = plan_shipping(host, info, staging)
    assert [entry["file"] for entry in resumed.ship] == [os.path.relpath(partial, staging)]
    assert len(resumed.staged) == len(first.ship) - 1
    # What is there of the cut copy, for the sender to check against the start of its own file and send the rest.
    with open(os.path.join(root, resumed.ship[0]["file"]), "rb") as whole:
        start = whole.read(100)
    assert resumed.ship[0]["staged_bytes"] == 100
    assert resumed.ship[0]["staged_sha256"] == hashlib.sha256(start).hexdigest()
    assert all("staged_bytes" not in entry for entry in first.ship)
    ship(root, resumed, staging)
    load(host, info, staging)
    assert len(host.images()) == 3


def test_a_staged_file_longer_than_the_blob_is_shipped_whole(tmp_path, images, bundle):
    root, info = bundle
    host, staging = OCIStore(str(tmp_path / "host")), str(tmp_path / "staging")
    first = plan_shipping(host, info, staging)
    ship(root, first, staging)
    grown = os.path.join(staging, first.ship[0]["file"])
    with open(grown, "ab") as handle:
        handle.write(b"extra")
    again = plan_shipping(host, info, staging)
    assert [entry["file"] for entry in again.ship] == [first.ship[0]["file"]] and "staged_bytes" not in again.ship[0]


def test_an_image_held_under_another_tag_needs_no_file_and_is_tagged(tmp_path, images, bundle):
    _root, info = bundle
    host = OCIStore(str(tmp_path / "host"))
    host.import_images([image.with_references([parse_reference("other/%s:9" % name)]) for name, image in images.items()])
    result = plan_shipping(host, info).result()
    assert {entry["state"] for entry in result["bundle_images"]} == {"tag"}
    assert result["ship"] == [] and result["missing_layers"] == [] and result["needs_load"] is True
    load(host, info, str(tmp_path / "no-staging"))
    assert sorted(tag for image in host.images() for tag in image.repo_tags) == sorted(
        ["other/app-a:9", "other/app-b:9", "other/base:9", "site/app-a:1", "site/app-b:1", "site/base:1"])


def test_a_load_without_a_layer_the_target_lacks_fails_before_sending(tmp_path, bundle):
    _root, info = bundle
    host = OCIStore(str(tmp_path / "host"))
    with pytest.raises(ArchiveError, match="does not have it"):
        load(host, info, str(tmp_path / "empty"))
    assert host.images() == []


def test_a_config_that_does_not_hash_to_its_id_is_refused(tmp_path, bundle):
    _root, info = bundle
    info["images"][0]["config"] = info["images"][1]["config"]
    with pytest.raises(ArchiveError, match="does not hash to its ID"):
        bundle_images_from(info, str(tmp_path))


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "blobs/../../x", ""])
def test_a_bundle_naming_files_outside_the_staging_directory_is_refused(tmp_path, bundle, path):
    _root, info = bundle
    info["images"][0]["layers"][0]["file"] = path
    with pytest.raises(ArchiveError, match="would leave the staging directory"):
        plan_shipping(OCIStore(str(tmp_path / "host")), info)


def test_bundle_info_lists_each_layer_file_and_the_configs(bundle, images):
    root, info = bundle
    layer_files = {layer["file"] for image in info["images"] for layer in image["layers"]}
    assert layer_files == {"blobs/sha256/" + d.split(":", 1)[1] for image in images.values() for d in image.diff_ids}
    assert all(os.path.getsize(os.path.join(root, layer["file"])) == layer["file_size"]
               for image in info["images"] for layer in image["layers"])
    by_id = {image.id: image for image in images.values()}
    assert all(base64.b64decode(entry["config"]) == by_id[entry["id"]].config_bytes for entry in info["images"])


@pytest.fixture
def separated_bundle(tmp_path, images):
    root = str(tmp_path / "separated")
    parts, entries = separated.plan([images["app-a"], images["app-b"]], images["base"], None, "gzip", None)
    separated.write(root, parts, entries, images["base"], None, "gzip")
    return root, archive_info(root)


def load_separated(store, staging, key):
    """What image_load does with ``separated: {dir, app}``."""
    manifest = separated.read_manifest(staging)
    key, entry = separated.find_entry(manifest, key, staging)
    files = separated.entry_files(staging, entry)
    separated.verify_files(files, entry)
    with separated.SeparatedImage(files, key) as assembled:
        plan = plan_load(store, [assembled.image])
        run_load(store, plan, images_sender(store))


def test_separated_bundle_a_host_holding_the_base_gets_app_tarballs_and_the_manifest_only(tmp_path, images, separated_bundle):
    root, info = separated_bundle
    host, staging = OCIStore(str(tmp_path / "host")), str(tmp_path / "staging")
    host.import_images([images["base"]])
    plan = plan_shipping(host, info, staging)
    result = plan.result()
    assert sorted(entry["file"] for entry in result["ship"]) == ["app-a_1_app_image.tar.gz", "app-b_1_app_image.tar.gz", "manifest"]
    assert {entry["key"] for entry in result["bundle_images"] if entry["state"] == "load"} == {"site/app-a:1", "site/app-b:1"}
    assert result["skip_bytes"] == os.path.getsize(os.path.join(root, "app-a_1_base_image.tar.gz"))
    ship(root, plan, staging)
    for key in ("site/app-a:1", "site/app-b:1"):
        load_separated(host, staging, key)
    assert {image.id for image in host.images()} == {image.id for image in images.values()}
    assert plan_shipping(host, info, staging).result()["ship"] == []


def test_separated_bundle_an_empty_host_gets_the_base_tarball_once(tmp_path, separated_bundle):
    _root, info = separated_bundle
    result = plan_shipping(OCIStore(str(tmp_path / "host")), info).result()
    assert sorted(entry["file"] for entry in result["ship"]) == [
        "app-a_1_app_image.tar.gz", "app-a_1_base_image.tar.gz", "app-b_1_app_image.tar.gz", "manifest"]
    assert result["ship_bytes"] == result["bundle_bytes"]
    assert not os.path.exists(str(tmp_path / "host"))  # asking an OCI layout that is not there yet does not make it


@pytest.mark.parametrize("damage", [lambda info: info["images"][0].pop("id"), lambda info: info["images"][0].update(layers=None),
                                    lambda info: info.update(images="none")])
def test_a_bundle_description_of_the_wrong_shape_is_refused_clearly(tmp_path, bundle, damage):
    _root, info = bundle
    damage(info)
    with pytest.raises(ArchiveError, match="bundle: "):
        plan_shipping(OCIStore(str(tmp_path / "host")), info)


def test_describe_held_says_what_the_store_has_of_each_name(tmp_path, images):
    host = OCIStore(str(tmp_path / "host"))
    host.import_images([images["base"]])
    held = describe_held(host, ["site/base:1", "site/app-a:1", images["base"].id])
    assert held[0] == {"name": "site/base:1", "present": True, "id": images["base"].id, "repo_tags": ["site/base:1"],
                       "digest": host.images()[0].manifest_digest, "diff_ids": images["base"].diff_ids}
    assert held[1] == {"name": "site/app-a:1", "present": False}
    assert held[2]["present"] is True and held[2]["id"] == images["base"].id


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compressed_bundle_ships_compressed_layer_files_and_loads_the_same_images(tmp_path, images, compression):
    root = str(tmp_path / "bundle")
    OCIStore(root).import_images(list(images.values()), compression)
    info = archive_info(root)
    layers = [layer for image in info["images"] for layer in image["layers"]]
    assert {layer["media_type"] for layer in layers} == {"application/vnd.oci.image.layer.v1.tar+" + compression}
    assert all(layer["digest"] != layer["diff_id"] and layer["size"] is not None for layer in layers)
    assert len({layer["file"] for layer in layers}) == 4  # each distinct layer compressed once
    host, staging = OCIStore(str(tmp_path / "host")), str(tmp_path / "staging")
    host.import_images([images["base"]])
    every_file = {layer["file"] for layer in layers}
    assert {entry["file"] for entry in plan_shipping(host, info, staging).ship} == every_file, \
        "the host holds the base uncompressed, and the bundle's manifests name its compressed blob"
    host = OCIStore(str(tmp_path / "host-from-bundle"))
    with open_archive(root) as bundle:
        host.import_images([image for image in bundle.images if image.id == images["base"].id])
    plan = plan_shipping(host, info, staging)
    shipped = {entry["file"] for entry in plan.ship}
    assert shipped == {layer["file"] for layer in layers if layer["diff_id"] != images["base"].diff_ids[0]}
    assert plan.ship_bytes == sum({layer["file"]: layer["file_size"] for layer in layers if layer["file"] in shipped}.values())
    ship(root, plan, staging)
    load(host, info, staging)
    assert {image.id for image in host.images()} == {image.id for image in images.values()}
    blobs = {"sha256:" + layer["file"].rsplit("/", 1)[-1] for layer in layers}
    assert OCIStore(root).layer_ids() == {d for image in images.values() for d in image.diff_ids} | blobs


def test_save_reason_sees_how_an_oci_layout_compresses_its_layers(tmp_path, images):
    root = str(tmp_path / "layout")
    OCIStore(root).import_images([images["base"]], "gzip")
    with open_archive(root) as archive:
        assert layout_compression(archive.images) == "gzip"
