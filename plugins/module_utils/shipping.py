# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host lacks of a bundle, file by file.

A bundle is an OCI layout directory on the controller (layer blobs under
their digest, plus the small metadata files: ``oci-layout``, ``index.json``,
manifests, configs). ``describe_bundle`` lists it; ``plan_shipping`` runs on
the host, asks its store which images and layers it holds, and returns the
files to copy: nothing when every image is there with all its tags; the
metadata alone when an image only needs a tag; the metadata and the layers
the store lacks otherwise. A thin load of that partial layout then completes
the images from the layers the store already has.
"""

import os

from .errors import ArchiveError
from .oci_layout import blob_path
from .reference import parse_reference
from .separated import file_sha256

LOCK_FILE = ".lock"


def add_bundle_files(root, info):
    """Add to ``archive_info``'s answer for an OCI layout directory where each layer's blob is, and every other file.

    Layers get ``file`` and ``file_size``; ``metadata_files`` lists the rest (``oci-layout``, ``index.json``,
    manifests, configs) with their sha256, so a host can check a staged copy.
    """
    layer_paths = set()
    for image in info["images"]:
        for layer in image["layers"]:
            layer["file"] = blob_path(layer["digest"])
            layer["file_size"] = _size(root, layer["file"])
            layer_paths.add(layer["file"])
    info["metadata_files"] = [
        {"file": path, "file_size": os.path.getsize(os.path.join(root, path)), "sha256": file_sha256(os.path.join(root, path))}
        for path in _files(root) if path not in layer_paths and path != LOCK_FILE]
    return info


def _files(root):
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        relative = os.path.relpath(folder, root)
        found.extend(os.path.normpath(os.path.join(relative, name)) for name in files if not name.startswith("."))
    return sorted(found)


def _size(root, path):
    full = os.path.join(root, *path.split("/"))
    return os.path.getsize(full) if os.path.isfile(full) else None


class BundleImage:
    """An image of a bundle as ``describe_bundle`` gave it: what planning a load needs, no layer data."""

    def __init__(self, entry):
        self.id = entry["id"]
        self.repo_tags = list(entry.get("repo_tags") or [])
        self.references = [parse_reference(tag) for tag in self.repo_tags]
        self.digests = list(entry.get("digests") or [])
        self.layers = entry["layers"]
        self.diff_ids = [layer["diff_id"] for layer in self.layers]
        self.size = entry.get("size")

    def describe(self):
        return ", ".join(self.repo_tags) or self.id


class ShippingPlan:
    def __init__(self, load_plan, ship, staged, missing_layers, bundle):
        self.load_plan = load_plan
        self.ship = ship
        self.staged = staged
        self.missing_layers = missing_layers
        self.bundle = bundle

    @property
    def ship_bytes(self):
        return sum(entry["size"] for entry in self.ship)

    def result(self):
        plan = self.load_plan
        states = [(image, "load") for image in plan.to_load] + [(image, "tag") for image, _p, _m in plan.to_tag]
        bundle_bytes = _bundle_bytes(self.bundle)
        return {
            "bundle_images": [{"id": image.id, "repo_tags": image.repo_tags, "state": state} for image, state in states]
            + [{"id": item["id"], "repo_tags": item["repo_tags"], "state": "present"} for item in plan.skipped],
            "ship": self.ship,
            "ship_bytes": self.ship_bytes,
            "staged": self.staged,
            "missing_layers": self.missing_layers,
            "bundle_bytes": bundle_bytes,
            "skip_bytes": bundle_bytes - self.ship_bytes,
            "naive_bytes": sum(entry.get("size") or 0 for entry in self.bundle["images"]),
            "needs_load": plan.changed,
        }


def _bundle_bytes(bundle):
    layers = {layer["file"]: layer["file_size"] or 0 for entry in bundle["images"] for layer in entry["layers"]}
    return sum(layers.values()) + sum(entry["file_size"] for entry in bundle["metadata_files"])


def bundle_images(bundle):
    """The bundle's images, after checking that every file it names stays inside a staging directory."""
    _check_bundle(bundle)
    return [BundleImage(entry) for entry in bundle["images"]]


def files_to_ship(bundle, load_plan, held_layers, staging=None):
    """The files a host needs for ``load_plan``: the layers it does not hold and the metadata, minus intact staged copies."""
    if not load_plan.changed:
        return ShippingPlan(load_plan, [], [], [], bundle)
    wanted, missing_layers = {}, []
    for image in load_plan.to_load:
        for layer in image.layers:
            if layer["diff_id"] not in held_layers and layer["file"] not in wanted:
                wanted[layer["file"]] = (layer["file_size"], layer["file"].rsplit("/", 1)[-1])
                missing_layers.append(layer["diff_id"])
    for entry in bundle["metadata_files"]:
        wanted[entry["file"]] = (entry["file_size"], entry["sha256"])
    ship, staged = [], []
    for path, (size, sha256) in sorted(wanted.items(), key=_metadata_last):
        entry = {"file": path, "size": size}
        (staged if _staged_intact(staging, path, sha256) else ship).append(entry)
    return ShippingPlan(load_plan, ship, staged, missing_layers, bundle)


def _metadata_last(item):
    """Layers first, ``index.json`` last: a copy cut short leaves a layout that names nothing it lacks."""
    path = item[0]
    return (path == "index.json", not path.startswith("blobs/"), path)


def _staged_intact(staging, path, sha256):
    """A file already in the staging directory counts only when it hashes to what the bundle has."""
    if not staging:
        return False
    full = os.path.join(staging, *path.split("/"))
    return os.path.isfile(full) and file_sha256(full) == sha256


def _check_bundle(bundle):
    if not isinstance(bundle, dict) or not isinstance(bundle.get("images"), list) or not isinstance(bundle.get("metadata_files"), list):
        raise ArchiveError("bundle: expected the result of image_archive_info on an OCI layout directory (images, metadata_files)")
    for entry in bundle["metadata_files"] + [layer for image in bundle["images"] for layer in image.get("layers") or []]:
        path = entry.get("file") if isinstance(entry, dict) else None
        if not path or path.startswith("/") or ".." in path.split("/") or "\x00" in path:
            raise ArchiveError("bundle: file %r would leave the staging directory" % (path,))
        if entry.get("file_size") is None:
            raise ArchiveError("bundle: %s is not in the bundle directory" % path)
