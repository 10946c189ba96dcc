# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incremental OCI layout bundles: add images to a layout writing only the blobs it lacks, then index.json.

``write_bundle`` stores the blobs of the images a save asks for that the layout does not hold (a blob under
``blobs/sha256/<hex>`` with the right size is kept: never read at the source, never rewritten; new ones are written
to a temp file, fsynced and renamed), then replaces ``index.json`` atomically, last. The images already in the layout
stay (a tag the save names moves to the saved image; an image left without a name stays as an unnamed entry); with
``prune``, index.json ends up with only the saved images and what is attached to them (and artifacts attached to no
image, which other tools put there), and the blobs nothing in it references are deleted after the rename. A failure
before the rename leaves the old index.json valid; the blobs already written are kept for the next run.

index.json lists its entries in one order whatever order the images were saved in: named entries first, by name
(``io.containerd.image.name``, else ``org.opencontainers.image.ref.name``), then unnamed ones; each by digest within.
"""

import contextlib
import json
import os
import re

from .atomic import atomic_file
from .digest import check_digest
from .errors import ArchiveError
from .formats.oci_layout import (ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, IndexWalker, _is_attestation, blob_path,
                                 canonical_json, layer_descriptor, read_verified_blob)
from .formats.safetar import DirSource
from .model import INDEX_TYPES, MANIFEST_TYPES
from .stores.layout import COMPRESSED_LAYER_TYPES, EMPTY_INDEX, LayoutStore

_HEX = re.compile(r"^[0-9a-f]{64}$")
_NAME_KEYS = (ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME)


class BundleResult:
    """What a bundle write did (or, dry, would do): blobs written and kept, whether index.json changed, what was pruned."""

    def __init__(self, stats, index_changed, pruned, deleted):
        self.blobs_written = stats.blobs_written
        self.bytes_written = stats.bytes_written
        self.blobs_kept = stats.blobs_kept
        self.bytes_kept = stats.bytes_kept
        self.index_changed = index_changed
        self.pruned = pruned
        self.blobs_deleted = len(deleted)
        self.bytes_deleted = sum(size for _digest, size in deleted)

    @property
    def changed(self):
        return bool(self.blobs_written or self.index_changed or self.blobs_deleted)

    def report(self):
        return dict(blobs_written=self.blobs_written, bytes_written=self.bytes_written, blobs_kept=self.blobs_kept,
                    bytes_kept=self.bytes_kept, pruned=self.pruned, blobs_deleted=self.blobs_deleted,
                    bytes_deleted=self.bytes_deleted)


def entry_name(descriptor):
    """The name an index.json entry carries (containerd's, else the full ``ref.name``), or None."""
    annotations = descriptor.get("annotations") or {}
    return next((annotations[key] for key in _NAME_KEYS if annotations.get(key)), None)


def index_order(descriptors):
    """index.json's entries in the bundle's order: named ones by name, then unnamed ones; by digest within (and by
    their bytes, for two entries that differ only in other annotations)."""
    def key(descriptor):
        name = entry_name(descriptor)
        return (name is None, name or "", descriptor.get("digest") or "", canonical_json(descriptor))
    unique = {canonical_json(descriptor): descriptor for descriptor in descriptors}
    return sorted(unique.values(), key=key)


def _unnamed(descriptor):
    annotations = {k: v for k, v in (descriptor.get("annotations") or {}).items() if k not in _NAME_KEYS}
    found = {k: v for k, v in descriptor.items() if k != "annotations"}
    if annotations:
        found["annotations"] = annotations
    return found


def merge_entries(existing, added, prune=False, keep=None, is_image=None):
    """index.json's entries after a save: ``added`` (the saved images' entries) and what of ``existing`` stays.

    A name in ``added`` moves there from the entry that had it; an image (``is_image(descriptor)``) that loses its
    last name stays as an unnamed entry, unless ``prune``. With ``prune``, only the existing entries ``keep`` accepts
    stay. An unnamed entry goes when a named one leads to the same digest. Returns (entries in ``index_order``, the
    existing (name, digest) pairs no longer there).
    """
    is_image = is_image or (lambda descriptor: False)
    claimed = {entry_name(d) for d in added} - {None}
    staying, moved = [], []
    for descriptor in existing:
        if prune and not (keep is not None and keep(descriptor)):
            continue
        if entry_name(descriptor) in claimed:
            moved.append(descriptor)
            continue
        staying.append(descriptor)
    entries = list(added) + staying
    if not prune:
        for descriptor in moved:
            if is_image(descriptor) and not any(d.get("digest") == descriptor.get("digest") for d in entries):
                entries.append(_unnamed(descriptor))
    named = {d.get("digest") for d in entries if entry_name(d) is not None}
    entries = index_order([d for d in entries if entry_name(d) is not None or d.get("digest") not in named])
    after = {(entry_name(d), d.get("digest")) for d in entries}
    removed = []
    for descriptor in existing:
        pair = (entry_name(descriptor), descriptor.get("digest"))
        if pair not in after and pair not in removed:
            removed.append(pair)
    return entries, removed


def reachable_blobs(source, entries, wanted_manifests=(), wanted_indexes=()):
    """The digests of every blob ``entries`` reference in the layout ``source``: the entries, the manifests an index
    lists (of an index in ``wanted_indexes``, only those in ``wanted_manifests`` and its attestations), each manifest's
    config and layers. Blobs that are not there are not followed; what is read is checked against its digest."""
    found = set()
    pending = [(descriptor, 0) for descriptor in entries]
    while pending:
        descriptor, depth = pending.pop()
        digest = check_digest(descriptor.get("digest"), "index.json entry")
        if digest in found:
            continue
        found.add(digest)
        media_type = descriptor.get("mediaType")
        if depth > 4 or not source.exists(blob_path(digest)) or (media_type not in MANIFEST_TYPES + INDEX_TYPES):
            continue
        document = read_verified_blob(source, descriptor, "bundle")
        try:
            parsed = _json(document)
        except ValueError:
            continue
        if media_type in INDEX_TYPES:
            for child in parsed.get("manifests") or []:
                if not isinstance(child, dict):
                    continue
                if digest in wanted_indexes and child.get("digest") not in wanted_manifests and not _is_attestation(child):
                    continue
                pending.append((child, depth + 1))
        else:
            for blob in [parsed.get("config")] + list(parsed.get("layers") or []):
                if isinstance(blob, dict) and isinstance(blob.get("digest"), str):
                    found.add(check_digest(blob["digest"], "%s blob" % digest))
    return found


def _json(data):
    parsed = json.loads(data.decode("utf-8"))
    if not isinstance(parsed, dict):
        raise ValueError("not an object")
    return parsed


def stray_blobs(root, referenced):
    """(digest, size) of each blob under ``blobs/sha256`` that is not in ``referenced``, by digest."""
    folder = os.path.join(root, "blobs", "sha256")
    stray = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        digest = "sha256:" + name
        path = os.path.join(folder, name)
        if _HEX.match(name) and digest not in referenced and os.path.isfile(path):
            stray.append((digest, os.path.getsize(path)))
    return stray


class _Existing:
    """What the existing index.json's entries are: images, or artifacts attached to a digest (or to nothing)."""

    def __init__(self, source, index):
        self.kinds = {}
        if not index.get("manifests"):
            return
        for descriptor, entry in zip(index["manifests"], IndexWalker(source, "all").entries(index)):
            subjects = set() if entry.is_image else {artifact.subject for artifact in entry.artifacts()}
            self.kinds[canonical_json(descriptor)] = (entry.is_image, subjects - {None})

    def is_image(self, descriptor):
        return self.kinds.get(canonical_json(descriptor), (False, set()))[0]

    def subjects(self, descriptor):
        return self.kinds.get(canonical_json(descriptor), (False, set()))[1]


def prune_keeper(existing, kept_digests, referrers):
    """Under ``prune``, which existing entries stay: an artifact attached to nothing; one attached to a kept image,
    unless ``referrers`` (then the source's attachments, saved again, are the ones to have)."""
    def keep(descriptor):
        if existing.is_image(descriptor):
            return False
        subjects = existing.subjects(descriptor)
        if not subjects:
            return True
        return not referrers and bool(subjects & set(kept_digests))
    return keep


def reusable_layers(images, compression):
    """DiffID: descriptor of the layers the layout's ``images`` hold compressed as this task makes them (with the
    uncompressed size our writer records), so that they are not compressed again."""
    found = {}
    for image in images:
        for layer in image.layers:
            if layer.compression == compression and compression in COMPRESSED_LAYER_TYPES and layer.size is not None \
                    and layer.blob_digest and layer.blob_size is not None:
                found.setdefault(layer.diff_id, layer_descriptor(layer.blob_digest, layer.blob_size,
                                                                 COMPRESSED_LAYER_TYPES[compression], layer.size))
    return found


def write_bundle(images, root, compression, level=None, prune=False, referrers=False, held=(), rewrite=False,
                 dry_run=False, fresh=False):
    """Add ``images`` to the OCI layout at ``root`` (made when missing, unless ``dry_run``); returns a BundleResult.

    ``held`` are the images the layout already holds (read by the idempotency check): their compressed layers are
    reused. ``rewrite`` writes every blob again (``force``); ``dry_run`` writes nothing and says what would change
    (``fresh``: were ``root`` written anew, what is there now left aside).
    """
    store = LayoutStore(root)
    store.rewrite, store.dry_run = rewrite or fresh, dry_run
    if not dry_run:
        store._create()  # pylint: disable=protected-access
    added = store.put_images(images, compression, level, reusable_layers(held, compression))
    wanted_manifests = {image.manifest_digest for image in images if image.manifest is not None}
    wanted_manifests.update(d["digest"] for d in added)
    wanted_indexes = {image.index_digest for image in images if image.index is not None}
    kept_digests = {digest for image in images for digest in image.digests} | wanted_manifests
    with _maybe_locked(store, dry_run):
        index_path = os.path.join(store.root, "index.json")
        before = None if fresh else _read_bytes(index_path)
        index = store._read_index() if before is not None else dict(EMPTY_INDEX)  # pylint: disable=protected-access
        source = DirSource(store.root)
        existing = _Existing(source, index) if before is not None else None
        keep = prune_keeper(existing, kept_digests, referrers) if prune else None
        entries, removed = merge_entries(index.get("manifests") or [], added, prune, keep,
                                         existing.is_image if existing is not None else None)
        data = canonical_json(dict(index, manifests=entries))
        deleted = []
        if prune and before is not None:
            referenced = reachable_blobs(source, entries, wanted_manifests, wanted_indexes)
            referenced.update(image_blobs(images))
            deleted = stray_blobs(store.root, referenced)
        if not dry_run:
            if data != before:
                _write_index(index_path, data)
            for digest, _size in deleted:
                _unlink(os.path.join(store.root, *blob_path(digest).split("/")))
    pruned = [{"name": name, "digest": digest} for name, digest in removed] if prune else []
    return BundleResult(store.stats, data != before, pruned, deleted)


def image_blobs(images):
    """The digests of the blobs the saved ``images`` are stored as, that the save knows before writing: configs,
    manifests, indexes, layers (a layer of a made manifest, uncompressed, under its DiffID), attachments."""
    found = set()
    for image in images:
        found.update(digest for digest in (image.id, image.manifest_digest, image.index_digest) if digest)
        found.update(image.layer_blob_digest(layer) for layer in image.layers)
        for artifact in image.referrers:
            found.add(artifact.id)
            found.update(blob.digest for blob in artifact.blobs)
    return found


def _maybe_locked(store, dry_run):
    if dry_run:
        return contextlib.nullcontext()
    return store._locked()  # pylint: disable=protected-access


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_index(path, data):
    with atomic_file(path) as out:
        out.write(data)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ArchiveError("cannot remove %s: %s" % (path, err.strerror)) from None
