# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The embedded store: an OCI image layout directory that needs no daemon.

Blobs are written to temp names, verified while they stream, fsynced and
renamed; ``index.json`` is replaced atomically under a file lock, last. A
failure therefore never leaves an image half-present: at worst unreferenced
blobs, which a later import reuses.
"""

import io
import os
import stat
import tempfile

from ..atomic import atomic_file, file_lock, reporting_full_disk

from ..compression import GZIP, NONE, ZSTD, open_compressing_writer
from ..digest import HashingWriter, check_digest, drain, sha256_digest
from ..errors import ArchiveError, StoreError
from ..model import MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_LAYER_ZSTD, MEDIA_OCI_MANIFEST, HeldLayers, RawDocument
from ..formats.oci_layout import (ANNOTATION_CONTAINERD_NAME, OCI_LAYOUT_BYTES, blob_path, build_manifest, canonical_json,
                                  index_annotations, layer_descriptor, merge_images, read_layout, read_layout_images,
                                  attached_descriptors, image_entry_annotations)
from ..formats.safetar import DirSource

COMPRESSED_LAYER_TYPES = {GZIP: MEDIA_OCI_LAYER_GZIP, ZSTD: MEDIA_OCI_LAYER_ZSTD}
EMPTY_INDEX = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}


class BlobStats:
    """How many blobs (and bytes) a write stored, and how many it found there already and kept."""

    def __init__(self):
        self.blobs_written = self.bytes_written = self.blobs_kept = self.bytes_kept = 0
        self.seen = set()

    def written(self, path, size):
        self.seen.add(path)
        self.blobs_written += 1
        self.bytes_written += size or 0

    def kept(self, path, size):
        self.seen.add(path)
        self.blobs_kept += 1
        self.bytes_kept += size or 0


class LayoutStore:
    """Images in an OCI layout directory, tagged through ``io.containerd.image.name`` and a full ``ref.name``."""

    kind = "oci"

    def __init__(self, root, create=True, platform=None):
        """A missing layout reads as empty and is made by the first import (so looking changes nothing); with
        ``create=False`` it is an error."""
        self.root = os.path.abspath(root)
        if not create and not self._exists():
            raise StoreError("OCI layout %s does not exist; create it by loading images into it" % self.root)
        self.source = DirSource(self.root)
        self.platform = platform
        self.stats = BlobStats()
        self.rewrite = False  # write every blob again, even one that is there
        self.dry_run = False  # count what would be written, write nothing
        self._counted = set()

    def _exists(self):
        return os.path.isdir(os.path.join(self.root, "blobs"))

    def _create(self):
        os.makedirs(os.path.join(self.root, "blobs", "sha256"), exist_ok=True)
        if not os.path.exists(os.path.join(self.root, "oci-layout")):
            _atomic_write(os.path.join(self.root, "oci-layout"), OCI_LAYOUT_BYTES)
        if not os.path.exists(os.path.join(self.root, "index.json")):
            _atomic_write(os.path.join(self.root, "index.json"), canonical_json(EMPTY_INDEX))

    def __str__(self):
        return "OCI layout %s" % self.root

    def close(self):
        """Nothing stays open between calls; here so that every store can be closed alike."""
        self.source.close()

    def images(self, platform=None):
        return read_layout_images(self.source, platform or self.platform) if self._exists() else []

    def artifacts(self):
        """What the layout holds beside images (SBOMs, signatures, charts: other tools put them there)."""
        return read_layout(self.source)[1] if self._exists() else []

    def layer_ids(self):
        """What a thin source may leave out for this store: the DiffID and blob digest of every layer it holds."""
        digests, blobs = set(), set()
        for image in self.images():
            for layer in image.layers:
                if self.has_blob(layer.stored_digest):
                    digests.update((layer.diff_id, layer.stored_digest))
                    blobs.add(layer.stored_digest)
        return HeldLayers(digests, blobs)

    def has_blob(self, digest):
        return os.path.isfile(self._blob_file(digest))

    def _blob_file(self, digest):
        return os.path.join(self.root, *blob_path(check_digest(digest, "blob")).split("/"))

    def import_images(self, images, compression=NONE, level=None):
        """Store ``images`` (layers the store has need not be available); returns the image IDs stored.

        An image that came with a manifest is stored as it came: its manifest, index and layer blobs unchanged. For one
        that came without, a manifest is made: its layers uncompressed under their DiffIDs, or with ``compression``
        (gzip, zstd) under the digest of the compressed bytes, their uncompressed size recorded on the descriptor.
        """
        self._create()
        images = merge_images(images)
        descriptors = self.put_images(images, compression, level)
        with self._locked():
            index = self._read_index()
            for descriptor in descriptors:
                _add_entry(index, descriptor)
            _atomic_write(os.path.join(self.root, "index.json"), canonical_json(index))
        return [image.id for image in images]

    def put_images(self, images, compression=NONE, level=None, reuse=None):
        """Store the blobs of ``images`` (merged: one per manifest) the layout lacks; returns index.json's entries for
        them (per image one per tag, or one unnamed; then the entries of what travels with them), in that order.

        A blob already under ``blobs/sha256/<hex>`` with the right size is kept, never opened at the source nor
        rewritten (``rewrite``: every blob is written again); ``stats`` counts what was written and kept. ``reuse``
        (DiffID: descriptor) names the compressed blobs of layers this layout already holds as this task makes them.
        """
        entries, made_layers, referrers = [], dict(reuse or {}), []
        for image in merge_images(images):
            if image.manifest is None:
                manifest = RawDocument(build_manifest(image, [self._put_made(layer, compression, level, made_layers)
                                                              for layer in image.layers]), MEDIA_OCI_MANIFEST)
            else:
                manifest = image.manifest
                for layer in image.layers:
                    self._put_kept(layer)
            self._put_bytes(image.config_bytes)
            for document in (manifest, image.index):
                if document is not None:
                    self._put_bytes(document.data)
            tagged = [ref for ref in image.references if ref.tag]
            kind = image_entry_annotations(image)
            top = image.index or manifest
            entries.extend(top.descriptor(annotations) for annotations
                           in [dict(index_annotations(ref, "full"), **kind) for ref in tagged] or [kind or None])
            for artifact in image.referrers:
                self._put_artifact(artifact)
                referrers.extend(attached_descriptors(artifact))
        return entries + referrers

    def _holds_blob(self, final, size):
        """Whether ``final`` is there with ``size`` bytes (any size when unknown): then it is kept, not written. A blob
        this store wrote or kept already counts once."""
        if final in self.stats.seen:
            return True
        if self.rewrite:
            return False
        try:
            found = os.stat(final)
        except OSError:
            return False
        if not stat.S_ISREG(found.st_mode) or (size is not None and found.st_size != size):
            return False
        self.stats.kept(final, found.st_size)
        return True

    def _put_artifact(self, artifact):
        """An artifact that travels with an image: its manifest and blobs as they came."""
        for blob in artifact.blobs:
            final = self._blob_file(blob.digest)
            if not self._holds_blob(final, blob.size):
                self._write_opened(final, blob.open, blob.size)
        self._put_bytes(artifact.manifest.data)

    def _put_made(self, layer, compression, level, made):
        if layer.diff_id not in made:
            made[layer.diff_id] = self._put_compressed(layer, compression, level) if compression != NONE \
                else layer_descriptor(layer.diff_id, self._put_layer(layer))
        elif layer.diff_id not in self._counted:
            descriptor = made[layer.diff_id]
            if not self._holds_blob(self._blob_file(descriptor["digest"]), descriptor["size"]):
                made[layer.diff_id] = self._put_compressed(layer, compression, level)
        self._counted.add(layer.diff_id)
        return made[layer.diff_id]

    def _put_kept(self, layer):
        """The layer's blob as it came (verified against its digest as it streams), unless the store has it."""
        final = self._blob_file(layer.stored_digest)
        if self._holds_blob(final, layer.blob_size if layer.blob_digest else layer.size):
            return
        if not layer.available:
            raise ArchiveError("%s is not in the archive and %s does not have it; load a full archive" % (layer.what, self))
        self._write_opened(final, layer.open_blob, layer.blob_size)

    def tag(self, image_id, reference):
        """Point ``reference`` at the stored image ``image_id`` (its index or manifest digest, or its config's)."""
        for image in self.images():
            if image_id in (image.digest, image.id):
                return self.import_images([image.with_references([reference])])
        raise StoreError("%s: no image %s to tag as %s" % (self, image_id, reference))

    def _put_layer(self, layer):
        final = self._blob_file(layer.diff_id)
        if self._holds_blob(final, layer.size):
            return os.path.getsize(final) if os.path.isfile(final) else layer.size
        if not layer.available:
            raise ArchiveError("%s is not in the archive and %s does not have it; load a full archive" % (layer.what, self))
        return self._write_opened(final, layer.open, layer.size)

    def _put_compressed(self, layer, compression, level):
        """Compress ``layer`` into a temp blob while hashing it, then rename it to its digest; returns its descriptor.
        A blob of that digest already there is kept (the temp one is dropped)."""
        if not layer.available:
            raise ArchiveError("%s is not in the archive; a compressed layout needs every layer" % layer.what)
        if self.dry_run:
            self.stats.written(layer.diff_id, layer.size)
            return layer_descriptor(layer.diff_id, layer.size, COMPRESSED_LAYER_TYPES[compression], layer.size)
        folder = os.path.join(self.root, "blobs", "sha256")
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".compressing-", delete=False) as temp:
            try:
                hashing = HashingWriter(temp)
                with reporting_full_disk(temp.name, what="%s in %s" % (layer.what, self), partial=True):
                    writer = open_compressing_writer(hashing, compression, level)
                    with layer.open() as stream:
                        size = drain(stream, writer)
                    writer.close()
                    temp.flush()
                    os.fsync(temp.fileno())
                final = self._blob_file(hashing.digest)
                if self._holds_blob(final, hashing.count):
                    os.unlink(temp.name)
                else:
                    os.chmod(temp.name, 0o444)
                    os.replace(temp.name, final)
                    self.stats.written(final, hashing.count)
            except BaseException:
                if os.path.exists(temp.name):
                    os.unlink(temp.name)
                raise
        return layer_descriptor(hashing.digest, hashing.count, COMPRESSED_LAYER_TYPES[compression], size)

    def _put_bytes(self, data):
        final = self._blob_file(sha256_digest(data))
        if not self._holds_blob(final, len(data)):
            self._write_opened(final, lambda: io.BytesIO(data), len(data))

    def _write_opened(self, final, opener, size=None):
        """Write the blob ``final`` from the stream ``opener`` gives (opened only here: a dry run opens nothing)."""
        if self.dry_run:
            self.stats.written(final, size)
            return size
        with opener() as stream:
            written = self._write_blob(final, stream)
        self.stats.written(final, written)
        return written

    def _write_blob(self, final, stream):
        with atomic_file(final, 0o444) as out:
            return drain(stream, out)

    def _read_index(self):
        index = self.source.read_json("index.json")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise StoreError("%s: index.json is not an image index" % self)
        return index

    def _locked(self):
        return file_lock(os.path.join(self.root, ".lock"), self)


def _add_entry(index, descriptor):
    """Add ``descriptor``; a name moves from the image it was on, an unnamed entry is added once."""
    name = (descriptor.get("annotations") or {}).get(ANNOTATION_CONTAINERD_NAME)
    kept = []
    for entry in index["manifests"]:
        entry_name = (entry.get("annotations") or {}).get(ANNOTATION_CONTAINERD_NAME)
        if name is not None and entry_name == name:
            continue
        if entry_name is None and entry.get("digest") == descriptor["digest"]:
            continue
        kept.append(entry)
    if name is None and any(entry.get("digest") == descriptor["digest"] for entry in kept):
        index["manifests"] = kept
        return
    kept.append(descriptor)
    index["manifests"] = kept


def _atomic_write(path, data):
    with atomic_file(path) as out:
        out.write(data)
