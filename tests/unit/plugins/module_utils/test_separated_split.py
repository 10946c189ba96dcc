# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cut of an application image at its base and lib, and the names and manifest it gives."""

import os

import pytest

from ansible_collections.airgap.images.plugins.module_utils import digest
from ansible_collections.airgap.images.plugins.module_utils.formats import separated
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import made_manifest
from ansible_collections.airgap.images.plugins.module_utils.model import Image
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference


def layer(name):
    return layer_from_bytes(layer_tar({name: name.encode() * 100}), name)


L = {name: layer(name) for name in ("os", "os2", "rt1", "rt2", "app-a", "app-b", "other")}


def image(names, tag):
    return build_image([L[name] for name in names], [parse_reference(tag)])


def ids(*names):
    return [L[name].diff_id for name in names]


def test_split_with_a_lib_of_base_plus_two_layers():
    base, lib = image(["os", "os2"], "base:1"), image(["os", "os2", "rt1", "rt2"], "lib:1")
    app = image(["os", "os2", "rt1", "rt2", "app-a"], "app-a:1")
    assert separated.split(app, "app-a:1", base, "base:1", lib, "lib:1") == (ids("os", "os2"), ids("rt1", "rt2"), ids("app-a"))


def test_split_without_lib():
    base, app = image(["os"], "base:1"), image(["os", "rt1", "app-a"], "app-a:1")
    assert separated.split(app, "app-a:1", base, "base:1") == (ids("os"), [], ids("rt1", "app-a"))


@pytest.mark.parametrize("base_layers, app_layers, fragment", [
    (["os"], ["other", "os", "app-a"], "layer 0 of base base:1 is %s" % L["os"].diff_id),
    (["os", "rt1"], ["os", "rt2", "app-a"], "app-a:1 has %s there" % L["rt2"].diff_id),
    (["os", "app-a"], ["os", "app-a"], "must have fewer layers"),
])
def test_base_that_is_not_a_proper_prefix_is_refused_naming_the_layer(base_layers, app_layers, fragment):
    with pytest.raises(separated.SeparationError) as err:
        separated.split(image(app_layers, "app-a:1"), "app-a:1", image(base_layers, "base:1"), "base:1")
    assert fragment in str(err.value)


def test_lib_not_built_on_base_is_refused():
    with pytest.raises(separated.SeparationError, match="lib lib:1 is not built on base base:1"):
        separated.split(image(["os", "rt1", "app-a"], "app-a:1"), "app-a:1", image(["os"], "base:1"), "base:1",
                        image(["other", "rt1"], "lib:1"), "lib:1")


def test_plan_shares_base_and_lib_named_after_the_first_app_and_renames(tmp_path):
    base, lib = image(["os"], "reg.example.com/base/os:12"), image(["os", "rt1"], "lib:1")
    apps = [image(["os", "rt1", "app-b"], "reg.example.com/shop/search:5.0"), image(["os", "rt1", "app-a"], "reg.example.com/shop/cart:2.1")]
    rename = [{"name": "cart_2.1_base_image.tar.gz", "rename": "os-12.tar.gz"}]
    parts, entries = separated.plan(apps, base, lib, "gzip", rename)
    expected = ["os-12.tar.gz", "cart_2.1_lib_image.tar.gz", "cart_2.1_app_image.tar.gz", "search_5.0_app_image.tar.gz"]
    assert [part.name for part in parts] == expected
    manifest = separated.write(str(tmp_path), parts, entries, base, lib, "gzip")
    assert manifest["reg.example.com/shop/search:5.0"]["base"] == "os-12.tar.gz"
    assert manifest["reg.example.com/shop/cart:2.1"]["baseLayer"] == L["os"].diff_id.split(":")[1]
    assert sorted(os.listdir(str(tmp_path))) == sorted(expected + ["manifest"])
    with open_archive(str(tmp_path / "cart_2.1_lib_image.tar.gz")) as lib_tar:
        assert [layer_.available for layer_ in lib_tar.images[0].layers] == [False, True]
    assert separated.unchanged_reason(str(tmp_path), parts, entries, base, lib, "gzip") is None
    assert "compression differs" in separated.unchanged_reason(str(tmp_path), parts, entries, base, lib, "zstd")


def test_a_rerun_reads_no_part_it_wrote_and_rereads_one_that_changed(tmp_path, monkeypatch):
    base, app = image(["os"], "base:1"), image(["os", "app-a"], "app-a:1")
    parts, entries = separated.plan([app], base, None, "none", None)
    separated.write(str(tmp_path), parts, entries, base, None, "none")
    app_part = str(tmp_path / parts[-1].name)
    assert os.getxattr(app_part, digest.HASH_ATTRIBUTE).decode().split(" ")[0] == parts[-1].sha256
    hashed = []
    real_hash = digest.file_sha256
    monkeypatch.setattr(digest, "file_sha256", lambda path, length=None: hashed.append(path) or real_hash(path, length))
    assert separated.unchanged_reason(str(tmp_path), parts, entries, base, None, "none") is None
    assert hashed == []
    written = os.stat(app_part)
    with open(app_part, "r+b") as handle:  # same size, other bytes
        handle.seek(-1, os.SEEK_END)
        handle.write(b"x")
    os.utime(app_part, ns=(written.st_atime_ns, written.st_mtime_ns + 1))  # as a later write leaves it, even within one clock tick
    assert "does not match its recorded sha256" in separated.unchanged_reason(str(tmp_path), parts, entries, base, None, "none")
    assert hashed == [app_part]
    os.removexattr(str(tmp_path / parts[0].name), digest.HASH_ATTRIBUTE)
    hashed.clear()
    parts, entries = separated.plan([app], base, None, "none", None)
    separated.unchanged_reason(str(tmp_path), parts, entries, base, None, "none")
    assert hashed == [str(tmp_path / parts[0].name)]  # no remembered hash: read, then remembered
    assert os.getxattr(str(tmp_path / parts[0].name), digest.HASH_ATTRIBUTE).decode().split(" ")[0] == parts[0].sha256


@pytest.mark.parametrize("rename", [[{"name": "x", "rename": "../escape"}], [{"name": "x", "rename": "a/b"}], [{"name": "x"}]])
def test_rename_maps_that_would_leave_dest_are_refused(rename):
    with pytest.raises(separated.SeparationError):
        separated.load_rename(rename)


def test_manifest_file_names_that_leave_the_directory_are_refused(tmp_path):
    with pytest.raises(Exception, match="would leave the directory"):
        separated.entry_files(str(tmp_path), {"app": "../../etc/passwd"})


def with_manifest(model):
    """``model`` as a store that keeps manifests holds it."""
    return Image(model.config_bytes, model.layers, model.references, manifest=made_manifest(model))


def meta(model, known_by_config=True, digest_=None):
    """What a store's answers give of ``model``: its config digest, or (Docker's containerd store) only a digest."""
    digests = [digest_] if digest_ else ([] if known_by_config else [model.digest])
    return separated.ImageMeta(model.id if known_by_config else None, digests, model.diff_ids, model.repo_tags)


@pytest.mark.parametrize("known_by_config", [True, False])
def test_a_store_that_knows_images_only_by_digest_plans_no_rewrite_of_what_was_written(tmp_path, known_by_config):
    base, lib = with_manifest(image(["os"], "base:1")), with_manifest(image(["os", "rt1"], "lib:1"))
    app = with_manifest(image(["os", "rt1", "app-a"], "app-a:1"))
    parts, entries = separated.plan([app], base, lib, "none", None)
    written = separated.write(str(tmp_path), parts, entries, base, lib, "none")
    assert written["app-a:1"]["airgap"]["digests"] == [app.digest] and written["app-a:1"]["airgap"]["libDigests"] == [lib.digest]
    metas = [meta(model, known_by_config) for model in (app, base, lib)]
    parts, entries = separated.plan(metas[:1], metas[1], metas[2], "none", None)
    assert separated.unchanged_reason(str(tmp_path), parts, entries, metas[1], metas[2], "none") is None
    other = with_manifest(image(["os", "rt1", "app-a", "app-b"], "app-a:1"))
    rebuilt = meta(app, known_by_config, digest_=None if known_by_config else other.digest)
    if known_by_config:
        rebuilt.id = other.id
    parts, entries = separated.plan([rebuilt], metas[1], metas[2], "none", None)
    assert separated.unchanged_reason(str(tmp_path), parts, entries, metas[1], metas[2], "none") == "app-a:1: imageId differs"
