# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning what a host lacks of a bundle, and loading the partial layout it receives (OCI layout stores, no engine)."""

import os
import shutil

import pytest

from ansible_collections.airgap.images.plugins.module_utils.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError
from ansible_collections.airgap.images.plugins.module_utils.operations import (
    archive_info, archive_sender, plan_load, plan_shipping, run_load, verify_loaded)
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.store import OCIStore


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
    for entry in plan.ship:
        target = os.path.join(staging, entry["file"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(root, entry["file"]), target)


def load(store, staging):
    with open_archive(staging) as archive:
        plan = plan_load(store, archive.images)
        run_load(store, plan, archive_sender(store, staging, archive.images))
        verify_loaded(store, archive.images)


def test_a_host_holding_the_base_receives_the_other_layers_and_the_metadata(tmp_path, images, bundle):
    root, info = bundle
    host = OCIStore(str(tmp_path / "host"))
    host.import_images([images["base"]])
    plan = plan_shipping(host, info, str(tmp_path / "staging"))
    result = plan.result()
    expected_layers = {"blobs/sha256/" + d.split(":", 1)[1] for d in images["app-a"].diff_ids[1:] + images["app-b"].diff_ids[2:]}
    shipped = [entry["file"] for entry in result["ship"]]
    every_layer_file = {layer["file"] for image in info["images"] for layer in image["layers"]}
    assert {f for f in shipped if f in every_layer_file} == expected_layers
    assert shipped[-1] == "index.json" and "oci-layout" in shipped
    assert result["missing_layers"] == images["app-a"].diff_ids[1:] + images["app-b"].diff_ids[2:]
    assert {(i["repo_tags"][0], i["state"]) for i in result["bundle_images"]} == {
        ("site/base:1", "present"), ("site/app-a:1", "load"), ("site/app-b:1", "load")}
    base_blob = os.path.getsize(os.path.join(root, "blobs", "sha256", images["base"].diff_ids[0].split(":", 1)[1]))
    assert result["skip_bytes"] == result["bundle_bytes"] - result["ship_bytes"] >= base_blob
    assert result["naive_bytes"] == sum(image.size for image in images.values())

    ship(root, plan, str(tmp_path / "staging"))
    load(host, str(tmp_path / "staging"))
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
    ship(root, resumed, staging)
    load(host, staging)
    assert len(host.images()) == 3


def test_an_image_held_under_another_tag_needs_the_metadata_only(tmp_path, images, bundle):
    _root, info = bundle
    host = OCIStore(str(tmp_path / "host"))
    host.import_images([image.with_references([parse_reference("other/%s:9" % name)]) for name, image in images.items()])
    result = plan_shipping(host, info).result()
    assert {entry["state"] for entry in result["bundle_images"]} == {"tag"}
    assert result["missing_layers"] == [] and all(not entry["file"].startswith("blobs/") or entry["size"] < 4096
                                                  for entry in result["ship"])


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "blobs/../../x", ""])
def test_a_bundle_naming_files_outside_the_staging_directory_is_refused(tmp_path, bundle, path):
    _root, info = bundle
    info["metadata_files"][0]["file"] = path
    with pytest.raises(ArchiveError, match="would leave the staging directory"):
        plan_shipping(OCIStore(str(tmp_path / "host")), info)


def test_bundle_info_lists_each_layer_file_and_the_metadata_with_sums(bundle, images):
    root, info = bundle
    layer_files = {layer["file"] for image in info["images"] for layer in image["layers"]}
    assert layer_files == {"blobs/sha256/" + d.split(":", 1)[1] for image in images.values() for d in image.diff_ids}
    metadata = {entry["file"] for entry in info["metadata_files"]}
    assert {"index.json", "oci-layout"} <= metadata and not metadata & layer_files and ".lock" not in metadata
    on_disk = {os.path.relpath(os.path.join(folder, name), root) for folder, _dirs, files in os.walk(root)
               for name in files if not name.startswith(".")}
    assert on_disk == metadata | layer_files
