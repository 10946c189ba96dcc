# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host lacks of a bundle, file by file.

A bundle is an OCI layout directory on the controller. ``add_bundle_files``
extends ``archive_info``'s description of it with what a host needs to plan
and to load without the directory: each image's config (base64, a few KB)
and each layer's file and size. The config travels inside the task's
arguments, so the only files that cross the wire are layer blobs:
``files_to_ship`` lists the ones the host's store does not hold, and
``bundle_images_from`` turns the description plus a directory of whichever
layer files arrived into model images, for a thin load that completes them
from the layers the store has.

A bundle can also be a directory of separated images (``image_separate``):
then the files are tarballs, and a host receives an application's app
tarball, and the lib and base tarballs only when it lacks some of their
layers, plus the ``manifest``.
"""

import base64
import binascii
import functools
import io
import os

from .digest import file_sha256, sha256_digest
from .errors import ArchiveError
from .model import Artifact, BlobRef, Image, Layer, RawDocument, held_blobs
from .formats.oci_layout import blob_path
from .platforms import parse_platforms
from .reference import parse_reference
from .formats.safetar import DirSource


def add_bundle_files(root, info, images):
    """Add, per image of the OCI layout ``root``, its config, manifest and index (base64: a host loads the image
    with the same digests) and each layer's ``file`` and ``file_size``."""
    for entry, image in zip(info["images"], images):
        entry["config"] = _b64(image.config_bytes)
        for key, document in (("manifest", image.manifest), ("index", image.index)):
            if document is not None:
                entry[key] = {"media_type": document.media_type, "data": _b64(document.data)}
        entry["signatures"] = [_carried_signature(artifact) for artifact in image.referrers if artifact.kind == "signature"]
        for layer in entry["layers"]:
            layer["file"] = blob_path(layer["digest"])
            full = os.path.join(root, *layer["file"].split("/"))
            layer["file_size"] = os.path.getsize(full) if os.path.isfile(full) else None
    return info


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _carried_signature(artifact):
    """A signature of the bundle, whole (its manifest and blobs: a few KB), so that each host can check it."""
    blobs = {}
    for blob in artifact.blobs:
        with blob.open() as stream:
            blobs[blob.digest] = _b64(stream.read())
    return {"manifest": {"media_type": artifact.manifest.media_type, "data": _b64(artifact.manifest.data)},
            "tag": artifact.tag, "subject": artifact.subject, "blobs": blobs}


def carried_signatures(entry):
    """The signature Artifacts a bundle entry carries (each blob checked against its digest when it is read)."""
    artifacts = []
    for carried in entry.get("signatures") or []:
        try:
            manifest = RawDocument(base64.b64decode(carried["manifest"]["data"], validate=True), carried["manifest"]["media_type"])
            blobs = {digest: base64.b64decode(data, validate=True) for digest, data in carried["blobs"].items()}
            parsed = manifest.json()
        except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
            raise ArchiveError("bundle: a signature of image %s is not as image_archive_info describes it" % entry.get("id")) from None
        refs = [BlobRef(digest, len(data), functools.partial(io.BytesIO, data)) for digest, data in blobs.items()]
        tag = carried.get("tag")
        names = [parse_reference(name).with_tag(tag) for name in entry.get("repo_tags") or []] if tag else []
        artifacts.append(Artifact(manifest.digest, manifest.media_type, parsed.get("artifactType"),
                                  (parsed.get("config") or {}).get("mediaType"),
                                  [layer.get("mediaType") for layer in parsed.get("layers") or []], references=names,
                                  subject=carried.get("subject") if not tag else None, manifest=manifest,
                                  blobs=refs, tag=carried.get("tag"), annotations=parsed.get("annotations")))
    return artifacts


def separated_parts(root, entry):
    """Per tarball a manifest entry names: its file, size, recorded sha256 and the DiffIDs of the layers it carries."""
    carried = {"app": entry.get("appLayers"), "lib": entry.get("libLayers"), "base": entry.get("baseLayer")}
    parts = {}
    for kind in ("base", "lib", "app"):
        name = entry.get(kind)
        if not name:
            continue
        hexes = [carried[kind]] if isinstance(carried[kind], str) else list(carried[kind] or [])
        parts[kind] = {"file": name, "file_size": os.path.getsize(os.path.join(root, name)), "sha256": entry.get(kind + "Hash"),
                       "diff_ids": ["sha256:" + encoded for encoded in hexes]}
    return parts


class BundleImage:
    """An image of a bundle as ``archive_info`` described it: what planning a load needs, no layer data."""

    def __init__(self, entry):
        self.id = entry["id"]
        self.key = entry.get("key")
        self.repo_tags = list(entry.get("repo_tags") or [])
        self.references = [parse_reference(tag) for tag in self.repo_tags]
        self.digests = list(entry.get("digests") or [])
        self.layers = entry["layers"]
        self.parts = entry.get("parts") or {}
        self.diff_ids = [layer["diff_id"] for layer in self.layers]
        self.size = entry.get("size")
        self.manifest = _document(entry, "manifest")
        self.index = _document(entry, "index")
        self.platform = entry.get("platform_descriptor")
        self.digests = _unique([doc.digest for doc in (self.manifest, self.index) if doc is not None] + self.digests)

    @property
    def digest(self):
        return (self.index or self.manifest).digest if (self.index or self.manifest) else None

    def describe(self):
        return ", ".join(self.repo_tags) or self.id


def _document(entry, key):
    """The manifest or index a bundle entry carries, checked against the digest it gives for it."""
    value = entry.get(key)
    if not value:
        return None
    try:
        document = RawDocument(base64.b64decode(value.get("data") or "", validate=True), value.get("media_type"))
    except (binascii.Error, ValueError, TypeError, AttributeError):
        document = None
    if document is None or document.digest != entry.get(key + "_digest"):
        raise ArchiveError("bundle: the %s given for image %s does not hash to its %s_digest (describe the bundle with "
                           "image_archive_info on an OCI layout directory)" % (key, entry.get("id"), key))
    return document


def _unique(items):
    return list(dict.fromkeys(items))


def _config_bytes(entry):
    try:
        config = base64.b64decode(entry.get("config") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        config = b""
    if sha256_digest(config) != entry.get("id"):
        raise ArchiveError("bundle: the config given for image %s does not hash to its ID (describe the bundle with "
                           "image_archive_info on an OCI layout directory)" % entry.get("id"))
    return config


def is_separated(bundle):
    return bundle.get("format") == "separated"


def bundle_images(bundle):
    """The bundle's images, after checking that every file it names stays inside a directory."""
    if not isinstance(bundle, dict) or not isinstance(bundle.get("images"), list):
        raise ArchiveError("bundle: expected the result of image_archive_info on an OCI layout directory or separated images")
    for entry in _bundle_files(bundle):
        path = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/") or "\x00" in path:
            raise ArchiveError("bundle: file %r would leave the staging directory" % (path,))
        if entry.get("file_size") is None:
            raise ArchiveError("bundle: %s is not in the bundle directory" % path)
    try:
        return [BundleImage(entry) for entry in bundle["images"]]
    except (KeyError, TypeError, AttributeError) as err:
        raise ArchiveError("bundle: an image entry lacks %s: pass image_archive_info's result unchanged" % err) from None


def for_platform(bundle, platform=None):
    """The bundle with, of each multi-platform image, only the entries of ``platform`` (default: this host's): a
    mixed amd64/arm64 fleet shares one bundle, and each host plans, receives and loads its own platform."""
    if not isinstance(bundle, dict) or not isinstance(bundle.get("images"), list):
        return bundle  # bundle_images says what is wrong with it
    selection = parse_platforms(platform)
    kept, offered = [], {}
    for entry in bundle["images"]:
        index_digest = entry.get("index_digest") if isinstance(entry, dict) else None
        if index_digest is None:
            kept.append(entry)
            continue
        offered.setdefault(index_digest, []).append(entry.get("platform"))
        if selection.matches(entry.get("platform_descriptor")):
            kept.append(entry)
    served = {entry.get("index_digest") for entry in kept}
    for index_digest, platforms in offered.items():
        if index_digest not in served:
            raise ArchiveError("bundle: index %s has no image for platform %s (the bundle holds %s): save the bundle "
                               "with platforms that include it" % (index_digest, selection, ", ".join(map(str, platforms))))
    return dict(bundle, images=kept)


def _bundle_files(bundle):
    if is_separated(bundle):
        return [bundle.get("manifest") or {}] + [part for image in bundle["images"] for part in (image.get("parts") or {}).values()]
    return [layer for image in bundle["images"] for layer in image.get("layers") or []]


def bundle_images_from(bundle, directory):
    """Model images of an OCI layout ``bundle`` whose layers are read from ``directory`` where their files are."""
    if is_separated(bundle):
        raise ArchiveError("bundle: a directory of separated images is loaded with the separated option")
    source = DirSource(directory) if os.path.isdir(directory) else None
    images = []
    for entry, described in zip(bundle["images"], bundle_images(bundle)):
        layers = [_layer(source, layer, "%s layer %d" % (described.describe(), index)) for index, layer in enumerate(described.layers)]
        images.append(Image(_config_bytes(entry), layers, described.references, described.digests, what=described.describe(),
                            manifest=described.manifest, index=described.index, platform=described.platform,
                            referrers=carried_signatures(entry)))
    return images


def _layer(source, layer, what):
    path = layer["file"]
    digest = "sha256:" + path.rsplit("/", 1)[-1]
    return Layer(layer["diff_id"], lambda: source.open(path), layer.get("media_type") or "application/vnd.oci.image.layer.v1.tar",
                 layer.get("size"), digest, layer["file_size"], available=lambda: source is not None and source.exists(path), what=what)


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
        keys = {entry["id"]: entry.get("key") for entry in self.bundle["images"]}
        digests = {entry["id"]: entry.get("index_digest") or entry.get("manifest_digest") for entry in self.bundle["images"]}
        to_change = [{"id": image.id, "digest": image.digest, "repo_tags": image.repo_tags, "key": image.key, "state": state}
                     for image, state in states]
        present = [{"id": item["id"], "digest": digests.get(item["id"]), "repo_tags": item["repo_tags"],
                    "key": keys.get(item["id"]), "state": "present"} for item in plan.present]
        return {
            "bundle_images": to_change + present,
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
    return sum({entry["file"]: entry["file_size"] for entry in _bundle_files(bundle)}.values())


def files_to_ship(bundle, load_plan, held_layers, staging=None, key="diff_id"):
    """The files a host needs for ``load_plan``, minus intact staged copies (a file already in ``staging`` counts
    only when it hashes to its recorded sha256; a shorter one is listed with the size and sha256 of what is there).
    ``key`` says how the host's store holds layers: by blob ``digest`` (containerd, OCI layouts) or by ``diff_id``
    (Docker, Podman)."""
    wanted = _separated_files(load_plan, held_layers) if is_separated(bundle) else _layer_files(load_plan, held_layers, key)
    if wanted and is_separated(bundle):
        wanted.append((bundle["manifest"], []))
    ship, staged, missing = [], [], []
    for entry, diff_ids in wanted:
        listed = {"file": entry["file"], "size": entry["file_size"]}
        if is_separated(bundle):
            listed["diff_ids"] = diff_ids
        else:
            listed.update(diff_id=diff_ids[0], digest=entry["digest"])
        partial = _staged_part(staging, entry)
        if partial == entry["file_size"] and file_sha256(_staged_path(staging, entry)) == entry["sha256"]:
            staged.append(listed)
        else:
            if 0 < partial < entry["file_size"]:
                listed.update(staged_bytes=partial, staged_sha256=file_sha256(_staged_path(staging, entry)))
            ship.append(listed)
        missing += diff_ids
    return ShippingPlan(load_plan, ship, staged, missing, bundle)


def _layer_files(load_plan, held_layers, key):
    """Layer files of the images to load that the store does not hold, each once, bottom layers first."""
    held_layers = held_blobs(held_layers) if key == "digest" else held_layers
    wanted, seen = [], set()
    for image in load_plan.to_load:
        for layer in image.layers:
            if layer[key] not in held_layers and layer["file"] not in seen:
                seen.add(layer["file"])
                wanted.append((dict(layer, sha256=layer["file"].rsplit("/", 1)[-1]), [layer["diff_id"]]))
    return wanted


def _separated_files(load_plan, held_layers):
    """Tarballs: each app to load or tag; its lib and base tarballs only when the store lacks one of their layers."""
    wanted, seen = [], set()
    needed = [(image, True) for image in load_plan.to_load] + [(image, False) for image, _present, _missing in load_plan.to_tag]
    for image, loading in needed:
        for kind in ("base", "lib", "app"):
            part = image.parts.get(kind)
            if part is None or part["file"] in seen:
                continue
            if kind != "app" and (not loading or all(diff_id in held_layers for diff_id in part["diff_ids"])):
                continue
            seen.add(part["file"])
            wanted.append((part, [diff_id for diff_id in part["diff_ids"] if diff_id not in held_layers] if loading else []))
    return wanted


def _staged_path(staging, entry):
    return os.path.join(staging, *entry["file"].split("/"))


def _staged_part(staging, entry):
    """Bytes of ``entry``'s file already in ``staging`` (0 for none): the whole file, or the start of a copy cut short
    (``staged_sha256`` then lets the sender check that start and send only the rest)."""
    full = _staged_path(staging, entry) if staging else None
    return os.path.getsize(full) if full and os.path.isfile(full) and not os.path.islink(full) else 0
