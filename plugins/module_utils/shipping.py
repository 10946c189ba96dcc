# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host lacks of a bundle, layer file by layer file.

A bundle is an OCI layout directory on the controller. ``add_bundle_files``
extends ``archive_info``'s description of it with what a host needs to plan
and to load without the directory: each image's config (base64, a few KB)
and each layer's file and size. The config travels inside the task's
arguments, so the only files that cross the wire are layer blobs:
``files_to_ship`` lists the ones the host's store does not hold, and
``bundle_images_from`` turns the description plus a directory of whichever
layer files arrived into model images, for a thin load that completes them
from the layers the store has.
"""

import base64
import binascii
import os

from .errors import ArchiveError
from .model import Image, Layer
from .oci_layout import blob_path
from .reference import parse_reference
from .safetar import DirSource
from .digest import sha256_digest
from .separated import file_sha256


def add_bundle_files(root, info, images):
    """Add, per image of the OCI layout ``root``, its config (base64) and each layer's ``file`` and ``file_size``."""
    for entry, image in zip(info["images"], images):
        entry["config"] = base64.b64encode(image.config_bytes).decode("ascii")
        for layer in entry["layers"]:
            layer["file"] = blob_path(layer["digest"])
            full = os.path.join(root, *layer["file"].split("/"))
            layer["file_size"] = os.path.getsize(full) if os.path.isfile(full) else None
    return info


class BundleImage:
    """An image of a bundle as ``archive_info`` described it: what planning a load needs, no layer data."""

    def __init__(self, entry):
        self.id = entry["id"]
        self.repo_tags = list(entry.get("repo_tags") or [])
        self.references = [parse_reference(tag) for tag in self.repo_tags]
        self.digests = list(entry.get("digests") or [])
        self.layers = entry["layers"]
        self.diff_ids = [layer["diff_id"] for layer in self.layers]
        self.size = entry.get("size")
        self.config_bytes = _config_bytes(entry)

    def describe(self):
        return ", ".join(self.repo_tags) or self.id


def _config_bytes(entry):
    try:
        config = base64.b64decode(entry.get("config") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        config = b""
    if sha256_digest(config) != entry.get("id"):
        raise ArchiveError("bundle: the config given for image %s does not hash to its ID (describe the bundle with "
                           "image_archive_info on an OCI layout directory)" % entry.get("id"))
    return config


def bundle_images(bundle):
    """The bundle's images, after checking each config against its ID and that every file stays inside a directory."""
    if not isinstance(bundle, dict) or not isinstance(bundle.get("images"), list):
        raise ArchiveError("bundle: expected the result of image_archive_info on an OCI layout directory")
    for layer in [layer for image in bundle["images"] for layer in image.get("layers") or []]:
        path = layer.get("file") if isinstance(layer, dict) else None
        if not path or path.startswith("/") or ".." in path.split("/") or "\x00" in path:
            raise ArchiveError("bundle: file %r would leave the staging directory" % (path,))
        if layer.get("file_size") is None:
            raise ArchiveError("bundle: %s is not in the bundle directory" % path)
    return [BundleImage(entry) for entry in bundle["images"]]


def bundle_images_from(bundle, directory):
    """Model images of ``bundle`` whose layers are read from ``directory`` where their files are (verified as they stream)."""
    source = DirSource(directory) if os.path.isdir(directory) else None
    images = []
    for described in bundle_images(bundle):
        layers = [_layer(source, layer, "%s layer %d" % (described.describe(), index)) for index, layer in enumerate(described.layers)]
        images.append(Image(described.config_bytes, layers, described.references, described.digests, what=described.describe()))
    return images


def _layer(source, layer, what):
    path = layer["file"]
    digest = "sha256:" + path.rsplit("/", 1)[-1]
    return Layer(layer["diff_id"], lambda: source.open(path), layer.get("media_type") or "application/vnd.oci.image.layer.v1.tar",
                 layer.get("size"), digest, layer["file_size"], available=lambda: source is not None and source.exists(path), what=what)


class ShippingPlan:
    def __init__(self, load_plan, ship, staged, bundle):
        self.load_plan = load_plan
        self.ship = ship
        self.staged = staged
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
            "missing_layers": [entry["diff_id"] for entry in self.ship + self.staged],
            "bundle_bytes": bundle_bytes,
            "skip_bytes": bundle_bytes - self.ship_bytes,
            "naive_bytes": sum(entry.get("size") or 0 for entry in self.bundle["images"]),
            "needs_load": plan.changed,
        }


def _bundle_bytes(bundle):
    files = {layer["file"]: layer["file_size"] for entry in bundle["images"] for layer in entry["layers"]}
    return sum(files.values())


def files_to_ship(bundle, load_plan, held_layers, staging=None):
    """The layer files a host needs for ``load_plan``: those of images to load that it does not hold, minus intact
    staged copies (a file already in ``staging`` counts only when it hashes to its name)."""
    ship, staged, seen = [], [], set()
    for image in load_plan.to_load:
        for layer in image.layers:
            if layer["diff_id"] in held_layers or layer["file"] in seen:
                continue
            seen.add(layer["file"])
            entry = {"file": layer["file"], "size": layer["file_size"], "diff_id": layer["diff_id"]}
            (staged if _staged_intact(staging, layer["file"]) else ship).append(entry)
    return ShippingPlan(load_plan, ship, staged, bundle)


def _staged_intact(staging, path):
    if not staging:
        return False
    full = os.path.join(staging, *path.split("/"))
    return os.path.isfile(full) and file_sha256(full) == path.rsplit("/", 1)[-1]
