# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one image model every reader produces and every writer and store consumes.

An image has two identities, and the model keeps both: its config bytes (the
image ID classic Docker and Podman use is their sha256) and, when the source
has one, the manifest it came with, byte for byte (the manifest digest that
Kubernetes, containerd, registries and signatures use), and the index it was
chosen from (a multi-platform image's digest). Each layer is named by its
DiffID and by the blob it is stored as (digest, media type, size), and opens
either way: ``open_blob`` gives the stored bytes, ``open`` the uncompressed
tar. Nothing here does I/O of its own: layers are opened through the
callable their reader gave them.
"""

import functools
import json

from .attachments import attachment_kind, parse_attachment_tag
from .compression import GZIP, NONE, ZSTD, open_maybe_compressed
from .digest import VerifyingReader, chain_ids, check_digest, drain, sha256_digest
from .errors import ArchiveError, DigestMismatchError

MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
IMAGE_CONFIG_TYPES = (MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG)
UNCOMPRESSED_LAYER_TYPES = (MEDIA_OCI_LAYER, MEDIA_DOCKER_LAYER)
LAYER_COMPRESSION = {MEDIA_OCI_LAYER_GZIP: GZIP, MEDIA_DOCKER_LAYER_GZIP: GZIP, MEDIA_OCI_LAYER_ZSTD: ZSTD}


class RawDocument:
    """A manifest or an index exactly as its source stored it: the bytes, their media type and digest."""

    def __init__(self, data, media_type):
        self.data = bytes(data)
        self.media_type = media_type
        self.digest = sha256_digest(self.data)

    @property
    def size(self):
        return len(self.data)

    def json(self):
        return json.loads(self.data.decode("utf-8"))

    def descriptor(self, annotations=None):
        descriptor = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if annotations:
            descriptor["annotations"] = dict(annotations)
        return descriptor

    def __eq__(self, other):
        return isinstance(other, RawDocument) and other.digest == self.digest

    def __hash__(self):
        return hash(self.digest)


class Layer:
    """One layer of an image.

    ``open_blob`` returns the stored bytes (maybe compressed) or raises when the
    blob is absent (a thin archive); ``blob_digest``/``blob_size`` are what the
    source announced for those bytes, when it announced anything. ``size`` is
    the uncompressed size when known without reading.
    """

    def __init__(self, diff_id, open_blob, media_type=MEDIA_OCI_LAYER, size=None,
                 blob_digest=None, blob_size=None, available=None, what="layer", region=None):
        self.diff_id = check_digest(diff_id, what + " DiffID")
        self.media_type = media_type
        self.size = size
        self.blob_digest = blob_digest
        self.blob_size = blob_size
        self.what = what
        self._open_blob = open_blob
        self._available = available
        self._region = region

    @property
    def stored_digest(self):
        """The digest of the blob this layer is stored as: the blob's, or the DiffID for an uncompressed layer."""
        return self.blob_digest or self.diff_id

    @property
    def compression(self):
        """How the stored blob is compressed, by its media type (none, gzip, zstd)."""
        return LAYER_COMPRESSION.get(self.media_type, NONE)

    @property
    def available(self):
        """False when the archive does not carry this layer (a thin archive)."""
        return self._available() if self._available is not None else True

    def open_blob(self):
        """The stored bytes, verified against ``blob_digest`` when the stream ends."""
        raw = self._open_blob()
        if self.blob_digest is None:
            return raw
        return VerifyingReader(raw, self.blob_digest, self.what + " blob", self.blob_size)

    def measured_size(self):
        """The uncompressed size, reading (and so verifying) the layer once when it is not known."""
        if self.size is None:
            with self.open() as stream:
                self.size = drain(stream)
        return self.size

    def blob_region(self):
        """The FileRegion of the stored bytes where they lie as they are in a plain file, or None. Whoever copies them
        from there checks them against ``blob_digest`` (or the DiffID, see ``tar_region``)."""
        region = self._region() if self._region is not None else None
        if region is None or (self.blob_size is not None and region.size != self.blob_size):
            return None
        return region

    def tar_region(self):
        """The ``blob_region`` when the stored bytes are the uncompressed layer tar itself: the blob is known by the
        DiffID, or known to be uncompressed (the reader gave ``size`` for a blob without a digest of its own)."""
        region = self.blob_region()
        if region is None or self.size is None or region.size != self.size or self.blob_digest not in (None, self.diff_id):
            return None
        return region

    def open(self):
        """The uncompressed layer tar, verified against the DiffID when the stream ends."""
        raw = self.open_blob()
        stream, compression = open_maybe_compressed(raw, self.what)
        at_end = None
        if compression != NONE and isinstance(raw, VerifyingReader):
            at_end = functools.partial(_finish_blob, raw)  # a compressed stream may stop before the blob's end
        size = self.size if compression == NONE else None
        return VerifyingReader(stream, self.diff_id, self.what, size, at_end=at_end)


def _finish_blob(raw):
    if raw.read(1):
        raise DigestMismatchError("%s: data after the end of the compressed stream" % raw.what)


class Image:
    """An image: config bytes, layers in order, references; and, when the source had them, its manifest and index.

    ``manifest`` is None only where the source has no manifest (Docker's classic store, ``docker save`` <= 24):
    writers then make one, deterministically. ``index`` is the index the manifest was chosen from (one platform of a
    multi-platform image) and ``platform`` its entry's platform there. ``digests`` are every digest the image is
    known by: its manifest's, its index's, and what else the source named (RepoDigests). ``referrers`` are artifacts
    that travel with it when asked: manifests whose ``subject`` it is (SBOMs, signatures, attestations) and
    BuildKit's attestation manifests in its index; they are never given to an engine as images. ``converted_from``
    is, for an image a conversion gave a new manifest, the digest (index's, else manifest's) of the image it was first
    made from: the only name an engine that keys images on manifest digests knows the source by.
    """

    def __init__(self, config_bytes, layers, references=(), digests=(), what="image", manifest=None, index=None,
                 platform=None, referrers=(), converted_from=None):
        self.config_bytes = bytes(config_bytes)
        self.config = parse_config(self.config_bytes, what)
        self.id = sha256_digest(self.config_bytes)
        self.diff_ids = [check_digest(d, "%s config rootfs.diff_ids" % what) for d in self.config["rootfs"]["diff_ids"]]
        self.layers = list(layers)
        self.references = _unique(references)
        self.manifest = manifest
        self.index = index
        self.platform = platform
        self.referrers = list(referrers)
        self.digests = _unique([doc.digest for doc in (manifest, index) if doc is not None] + list(digests))
        self.converted_from = converted_from
        self.what = what
        if len(self.layers) != len(self.diff_ids):
            raise ArchiveError("%s: layers length mismatch: the config lists %d DiffIDs, the manifest %d layers"
                               % (what, len(self.diff_ids), len(self.layers)))
        for index_, (layer, diff_id) in enumerate(zip(self.layers, self.diff_ids)):
            if layer.diff_id != diff_id:
                raise ArchiveError("%s: layer %d has DiffID %s, the config expects %s" % (what, index_, layer.diff_id, diff_id))

    @property
    def manifest_digest(self):
        return self.manifest.digest if self.manifest is not None else None

    @property
    def index_digest(self):
        return self.index.digest if self.index is not None else None

    @property
    def digest(self):
        """What a digest-pinned reference to this image names: the index's digest, else the manifest's."""
        return self.index_digest or self.manifest_digest

    @property
    def chain_ids(self):
        return chain_ids(self.diff_ids)

    @property
    def repo_tags(self):
        """Tags in Docker's familiar form, as ``RepoTags`` lists them."""
        return [ref.familiar() for ref in self.references if ref.tag]

    @property
    def os(self):
        return self.config.get("os", "")

    @property
    def architecture(self):
        return self.config.get("architecture", "")

    @property
    def variant(self):
        return self.config.get("variant")

    @property
    def created(self):
        return self.config.get("created")

    @property
    def size(self):
        """Sum of the uncompressed layer sizes, or None when some are unknown without reading."""
        sizes = [layer.size for layer in self.layers]
        return None if None in sizes else sum(sizes)

    def layer_blob_digest(self, layer):
        """The digest of the blob ``layer`` is stored as in this image: the blob its manifest names, or, for an image
        whose manifest a writer makes, the uncompressed layer's (its DiffID)."""
        return layer.blob_digest if self.manifest is not None and layer.blob_digest is not None else layer.diff_id

    def _copy(self, **changes):
        fields = dict(config_bytes=self.config_bytes, layers=self.layers, references=self.references,
                      digests=self.digests, what=self.what, manifest=self.manifest, index=self.index, platform=self.platform,
                      referrers=self.referrers, converted_from=self.converted_from)
        fields.update(changes)
        return Image(**fields)

    def with_references(self, references):
        """The same image known by other references (the layers are shared, not copied)."""
        return self._copy(references=references)

    def with_digests(self, digests):
        """The same image, also known by these manifest or index digests."""
        return self._copy(digests=self.digests + list(digests))

    def with_layers(self, layers):
        """The same image (same config, manifest and index) whose layers are read from elsewhere."""
        return self._copy(layers=layers)

    def without_manifest(self):
        """The same config and layers, with no manifest or index: a writer makes a new manifest (a conversion)."""
        kept = [digest for digest in self.digests if digest not in (self.manifest_digest, self.index_digest)]
        return self._copy(manifest=None, index=None, platform=None, digests=kept, referrers=[],
                          converted_from=self.converted_from or self.digest)

    def with_referrers(self, referrers):
        """The same image with these artifacts travelling with it (none: ``[]``)."""
        return self._copy(referrers=referrers)

    def describe(self):
        return self.repo_tags[0] if self.repo_tags else self.id[:19]

    def summary(self):
        return {
            "id": self.id,
            "repo_tags": self.repo_tags,
            "manifest_digest": self.manifest_digest,
            "index_digest": self.index_digest,
            "platform": self.platform_name,
            "diff_ids": list(self.diff_ids),
            "size": self.size,
            "os": self.os,
            "architecture": self.architecture,
            "created": self.created,
        }

    @property
    def platform_name(self):
        """``os/architecture[/variant]``: the index entry's platform, else the config's."""
        platform = self.platform or {"os": self.os, "architecture": self.architecture, "variant": self.variant}
        return "/".join(part for part in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if part)


class BlobRef:
    """A blob a writer copies as it is (an artifact's config or layer): its digest, size and how to read it."""

    def __init__(self, digest, size, opener, what="blob"):
        self.digest = digest
        self.size = size
        self.what = what
        self._opener = opener

    def open(self):
        return VerifyingReader(self._opener(), self.digest, self.what, self.size)


class Artifact:
    """What a layout holds beside images (an SBOM, a signature, a Helm chart): reported, never loaded as an image.

    ``id`` is the manifest digest and ``references``/``digests`` name it as they would name an image, so that a
    selector naming an artifact can be told apart from one naming nothing. ``subject`` is the digest it is attached
    to: the one its manifest names (an OCI referrer), or the one its cosign ``tag`` names (``sha256-<hex>.sig``).
    """

    def __init__(self, digest, media_type, artifact_type, config_media_type=None, layer_media_types=(),
                 references=(), digests=(), ref_names=(), subject=None, manifest=None, blobs=(), tag=None, annotations=None):
        """``manifest`` (a RawDocument) and ``blobs`` (BlobRef: its config and layers) let a writer copy it as it came."""
        self.id = digest
        self.manifest = manifest
        self.blobs = list(blobs)
        self.media_type = media_type
        self.artifact_type = artifact_type
        self.config_media_type = config_media_type
        self.layer_media_types = list(layer_media_types)
        self.references = _unique(references)
        self.digests = _unique([digest] + list(digests))
        self.ref_names = _unique(ref_names)
        self.annotations = dict(annotations or {})
        tagged = parse_attachment_tag(tag)
        self.tag = tag if tagged is not None and tagged[1] else None
        self.subject = subject or (tagged[0] if self.tag else None)
        self.kind = attachment_kind(artifact_type, self.layer_media_types, self.annotations, tagged[1] if self.tag else None)

    def describe(self):
        return "%s (%s)" % (self.ref_names[0] if self.ref_names else self.id[:19], self.artifact_type)

    def blob(self, digest):
        """The BlobRef of this artifact's blob ``digest``; None when it did not travel."""
        return next((blob for blob in self.blobs if blob.digest == digest), None)

    def summary(self):
        return {
            "kind": self.kind,
            "digest": self.id,
            "digests": list(self.digests),
            "media_type": self.media_type,
            "artifact_type": self.artifact_type,
            "config_media_type": self.config_media_type,
            "layer_media_types": list(self.layer_media_types),
            "ref_names": list(self.ref_names),
            "references": [str(ref) for ref in self.references],
            "subject": self.subject,
            "tag": self.tag,
        }


class HeldLayers(frozenset):
    """The digests of the layers a store holds (DiffIDs, and blob digests), and in ``blobs`` the blobs it holds as
    they are: a store that loads manifests needs the very blob a manifest names, not another of the same DiffID."""

    def __new__(cls, digests, blobs=()):
        held = frozenset.__new__(cls, digests)
        held.blobs = frozenset(blobs)
        return held


def held_blobs(held):
    """The blobs of ``held`` (a HeldLayers, or a plain set of digests taken as blobs)."""
    return getattr(held, "blobs", held)


def with_platforms(image, images):
    """``image`` and, when it is one platform of an index, the other platforms of that index among ``images``."""
    if image.index is None:
        return [image]
    return [image] + [other for other in images if other is not image and other.index_digest == image.index_digest]


def absent_layers(images):
    """DiffIDs of the layers a thin source leaves out (the target must hold them)."""
    return [layer.diff_id for image in images for layer in image.layers if not layer.available]


def parse_config(config_bytes, what):
    try:
        config = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ArchiveError("%s: image config is not valid JSON: %s" % (what, err)) from None
    if not isinstance(config, dict):
        raise ArchiveError("%s: image config is not a JSON object" % what)
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise ArchiveError("%s: invalid image config: no rootfs.diff_ids" % what)
    if rootfs.get("type") != "layers":
        raise ArchiveError("%s: invalid image config: rootfs.type is %r, expected 'layers'" % (what, rootfs.get("type")))
    for diff_id in rootfs["diff_ids"]:
        check_digest(diff_id, "%s config rootfs.diff_ids" % what)
    return config


def _unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
