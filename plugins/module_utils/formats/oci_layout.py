# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI image layout: read images through ``index.json``; build manifests and indexes.

Used for OCI layout directories, oci-archives, and the OCI half of Docker 25+
and containerd archives. Every blob read is checked against its descriptor's
digest and size. Entries that are not images (SBOMs, signatures, Helm charts:
manifests whose config media type is not an image config's, or that carry an
``artifactType``) are read as artifacts, by their media types alone.
"""

import json

from ..attachments import (ANNOTATION_COSIGN_KIND, COSIGN_SAVE_IMAGE_KIND, COSIGN_SAVE_INDEX_KIND, COSIGN_SAVE_KINDS, attachment_tag,
                           parse_attachment_tag)
from ..digest import check_digest, is_digest, sha256_digest
from ..errors import ArchiveError, InvalidReferenceError, NotAnImageError
from ..model import (IMAGE_CONFIG_TYPES, INDEX_TYPES, MANIFEST_TYPES, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_LAYER,
                     MEDIA_OCI_MANIFEST, UNCOMPRESSED_LAYER_TYPES, Artifact, BlobRef, Image, Layer, RawDocument,
                     parse_config)
from ..platforms import parse_platforms
from ..reference import parse_reference
from .tarwriter import TarWriter

LAYOUT_VERSION = "1.0.0"
OCI_LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# Our compressed layout layers record their uncompressed size, so a thin load needs not decompress a layer to learn it.
ANNOTATION_UNCOMPRESSED_SIZE = "org.airgap-images.layer.uncompressed-size"
ANNOTATION_CONVERTED_FROM = "org.airgap-images.image.converted-from"
_UNCOMPRESSED_LAYER_TYPES = (MEDIA_OCI_LAYER, "application/vnd.docker.image.rootfs.diff.tar")
_MAX_INDEX_DEPTH = 4


def blob_path(digest):
    algorithm, encoded = digest.split(":", 1)
    return "blobs/%s/%s" % (algorithm, encoded)


def canonical_json(value):
    """Compact JSON in the key order given: what our writers hash and store."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_verified_blob(source, descriptor, what):
    digest = check_digest(descriptor.get("digest"), what + " descriptor")
    path = blob_path(digest)
    if not source.exists(path):
        raise ArchiveError("%s: %s blob %s is missing from the archive" % (source.label, what, digest))
    data = source.read_bytes(path)
    size = descriptor.get("size")
    if isinstance(size, int) and size != len(data):
        raise ArchiveError("%s: %s %s: size mismatch: descriptor says %d bytes, blob has %d"
                           % (source.label, what, digest, size, len(data)))
    if sha256_digest(data) != digest and digest.startswith("sha256:"):
        raise ArchiveError("%s: %s blob digest mismatch: expected %s, got %s (corrupt or tampered)"
                           % (source.label, what, digest, sha256_digest(data)))
    return data


def references_from_annotations(annotations):
    """References an index entry names: ``io.containerd.image.name``, else a full ``ref.name``.

    A tag-only ``ref.name`` (``1.0``) names no repository, so it gives none.
    """
    annotations = annotations or {}
    for key in (ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME):
        value = annotations.get(key)
        if not value or (key == ANNOTATION_REF_NAME and "/" not in value and ":" not in value and "@" not in value):
            continue
        try:
            return [parse_reference(value)]
        except InvalidReferenceError:
            continue
    return []


def _is_attestation(descriptor):
    annotations = descriptor.get("annotations") or {}
    platform = descriptor.get("platform") or {}
    return "vnd.docker.reference.type" in annotations or platform.get("os") == "unknown"


def manifest_artifact_type(manifest):
    """None for an image manifest; else what the artifact is: its ``artifactType``, else its config's media type.

    Decided by media types alone, so that an image whose config is broken is refused as a broken image.
    """
    image_types = (None,) + IMAGE_CONFIG_TYPES
    artifact_type = manifest.get("artifactType")
    config_type = manifest["config"].get("mediaType")
    if artifact_type in image_types and config_type in image_types:
        foreign = [media_type for media_type in _layer_media_types(manifest) if not _is_layer_type(media_type)]
        return foreign[0] if foreign else None  # cosign's signatures have an image config, but no layer tar
    return artifact_type if artifact_type not in image_types else config_type


def _layer_media_types(manifest):
    return [layer.get("mediaType") for layer in manifest.get("layers") or [] if isinstance(layer, dict)]


def _is_layer_type(media_type):
    """Whether a layer media type is a filesystem tar (plain, compressed, encrypted, foreign or non-distributable)."""
    return media_type is None or ".tar" in media_type or "rootfs" in media_type


def parse_manifest(data, label, what):
    """The manifest ``data`` holds (verified bytes), with the fields an image or an artifact needs."""
    manifest = _parse_json(data, label, what + " manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict) or not isinstance(manifest.get("layers"), list):
        raise ArchiveError("%s: %s: not an image manifest (needs config and layers)" % (label, what))
    check_descriptor(manifest["config"], "%s: %s config" % (label, what))
    for position, layer in enumerate(manifest["layers"]):
        check_descriptor(layer, "%s: %s layer %d" % (label, what, position))
    if not isinstance(manifest.get("artifactType", ""), str):
        raise ArchiveError("%s: %s: artifactType %r is not a string" % (label, what, manifest["artifactType"]))
    if manifest.get("subject") is not None:
        check_descriptor(manifest["subject"], "%s: %s subject" % (label, what))
    return manifest


class Found:
    """A manifest reached through index.json: an image's (``artifact_type`` None) or an artifact's.

    ``raw`` is the manifest as stored; ``index`` the top-level index it was chosen from (None when index.json names
    the manifest itself) and ``platform`` its entry's platform there. ``manifest`` is None for an entry that is
    neither a manifest nor an index (its format is not ours to read).
    """

    def __init__(self, descriptor, manifest, artifact_type, raw=None, index=None, platform=None):
        self.descriptor = descriptor
        self.manifest = manifest
        self.artifact_type = artifact_type
        self.raw = raw
        self.index = index
        self.platform = platform
        self.attestations = []

    @property
    def is_image(self):
        return self.artifact_type is None

    def artifact(self, entry=None, source=None):
        """The Artifact this is, named by the top-level ``entry`` it was found through (None: reached through an
        index); with ``source``, it can be copied as it came."""
        names = (entry.references, [entry.digest], [entry.ref_name] if entry.ref_name else []) if entry else ((), (), ())
        tags = [ref.tag for ref in names[0] if ref.tag] + [name.rsplit(":", 1)[-1] for name in names[2]]
        return artifact_from_manifest(self.descriptor, self.manifest, self.raw, self.artifact_type, source, *names,
                                      tag=next((tag for tag in tags if (parse_attachment_tag(tag) or (None, None))[1]), None))


def artifact_from_manifest(descriptor, manifest, raw, artifact_type, source=None, references=(), digests=(), ref_names=(),
                           tag=None):
    """The Artifact of an attached or listed manifest; with ``source`` (which holds its blobs), one to copy as it came."""
    manifest = manifest or {}
    return Artifact(descriptor["digest"], descriptor.get("mediaType"), artifact_type, (manifest.get("config") or {}).get("mediaType"),
                    _layer_media_types(manifest), references, digests, ref_names,
                    subject=(manifest.get("subject") or {}).get("digest"), manifest=raw,
                    blobs=_blob_refs(source, manifest) if source is not None and raw is not None else (), tag=tag,
                    annotations=manifest.get("annotations") if isinstance(manifest.get("annotations"), dict) else None)


class LayoutEntry:
    """One top-level entry of index.json: the names it carries and what it leads to (images, or artifacts)."""

    def __init__(self, descriptor, found, where):
        annotations = descriptor.get("annotations") or {}
        self.digest = descriptor.get("digest")
        self.references = references_from_annotations(annotations)
        self.ref_name = annotations.get(ANNOTATION_REF_NAME)
        self.cosign_kind = annotations.get(ANNOTATION_COSIGN_KIND)
        converted_from = annotations.get(ANNOTATION_CONVERTED_FROM)
        self.converted_from = converted_from if is_digest(converted_from) else None
        self.found = found
        self.where = where

    @property
    def is_image(self):
        return self.found[0].is_image

    def images(self):
        return [found for found in self.found if found.is_image]

    def artifacts(self, source=None):
        return [found.artifact(self, source) for found in self.found]


class IndexWalker:
    """Finds, for each top-level entry of index.json, the image manifests to use (of an index: the selected
    platforms'), or the artifacts it is."""

    def __init__(self, source, platform):
        self.source = source
        self.platforms = parse_platforms(platform)
        self._manifests = {}
        self._raw = {}

    def entries(self, index):
        found = []
        for position, descriptor in enumerate(_entries(index, self.source.label + ": index.json")):
            where = _describe_entry(position, descriptor)
            found.append(LayoutEntry(descriptor, self.choose(descriptor, where), where))
        return found

    def choose(self, descriptor, what, depth=0, top=None):
        """What ``descriptor`` leads to: ``[Found]`` of its image manifests (of an index: the selected platforms'),
        else of the artifacts it is or its index holds. ``top`` is the top-level index walked through."""
        media_type = descriptor.get("mediaType")
        if media_type in MANIFEST_TYPES or media_type is None:
            manifest = self.manifest(descriptor, what)
            platform = descriptor.get("platform") if top is not None else None
            return [Found(descriptor, manifest, manifest_artifact_type(manifest), self._raw[descriptor["digest"]], top, platform)]
        if media_type not in INDEX_TYPES:
            return [self._foreign(descriptor, what)]
        if depth >= _MAX_INDEX_DEPTH:
            raise ArchiveError("%s: %s: indexes nested more than %d deep" % (self.source.label, what, _MAX_INDEX_DEPTH))
        data = read_verified_blob(self.source, descriptor, what + " index")
        index = _parse_json(data, self.source.label, what)
        top = top or RawDocument(data, media_type)
        members = [d for d in _entries(index, what) if not _is_attestation(d)]
        candidates = [d for d in members if self.platforms.matches(d.get("platform"))]
        present = [d for d in candidates if self._has(d, what)]
        if not present:
            raise self._lacking(what, self.platforms, members)
        chosen = self._chosen(present, what, depth, top, members)
        attestations = self._attestations(index, what)
        for found in chosen:
            found.attestations = attestations
        return chosen

    def _has(self, descriptor, what):
        return self.source.exists(blob_path(check_digest(descriptor.get("digest"), what)))

    def _attestations(self, index, what):
        """BuildKit's attestation manifests this index lists and the archive holds, as Artifacts that can be copied."""
        found = []
        for descriptor in _entries(index, what):
            if _is_attestation(descriptor) and descriptor.get("mediaType") in MANIFEST_TYPES and self._has(descriptor, what):
                manifest = self.manifest(descriptor, what + " attestation")
                found.append(Found(descriptor, manifest, manifest_artifact_type(manifest) or "attestation",
                                   self._raw[descriptor["digest"]]).artifact(source=self.source))
        return found

    def _lacking(self, what, wanted, members):
        """The error for an index whose selected platforms ``wanted`` have no manifest here: what the archive holds of
        it, and what the index lists."""
        held = [d for d in members if self._has(d, what)]
        return ArchiveError("%s: %s has no manifest for platform %s in the archive (it holds: %s; listed in the "
                            "index: %s); pass a platform the archive holds"
                            % (self.source.label, what, wanted, _platform_names(held), _platform_names(members)))

    def _chosen(self, present, what, depth, top, members):
        """Of an index's present entries, the image of each selected platform (the first that fits), or all of them
        for ``all``; the artifacts they are when none is an image."""
        images, artifacts, served = [], [], set()
        for member in present:
            wanted = [str(p) for p in self.platforms.matching(member.get("platform"))]
            if not self.platforms.everything and all(name in served for name in wanted):
                continue
            found = self.choose(member, what + " > " + _describe_platform(member.get("platform")), depth + 1, top)
            if not found[0].is_image:
                artifacts.extend(found)
                continue
            images.extend(found)
            served.update(wanted)
            if not self.platforms.several:
                break
        missing = [str(p) for p in self.platforms.platforms if str(p) not in served] if images and self.platforms.several else []
        if missing:
            raise self._lacking(what, ", ".join(missing), members)
        return images or artifacts

    def choose_images(self, descriptor, what):
        """The Founds of the images ``descriptor`` leads to; NotAnImageError saying what it is when it is an artifact."""
        found = self.choose(descriptor, what)
        if not found[0].is_image:
            raise NotAnImageError("%s: %s is an artifact (%s), not an image"
                                  % (self.source.label, what, ", ".join(sorted({f.artifact_type for f in found}))))
        return found

    def choose_image(self, descriptor, what):
        """The Found of the (first selected platform's) image ``descriptor`` leads to."""
        return self.choose_images(descriptor, what)[0]

    def manifest(self, descriptor, what):
        digest = check_digest(descriptor.get("digest"), what)
        if digest not in self._manifests:
            data = read_verified_blob(self.source, descriptor, what + " manifest")
            self._manifests[digest] = parse_manifest(data, self.source.label, what)
            media_type = descriptor.get("mediaType") or self._manifests[digest].get("mediaType") or MEDIA_OCI_MANIFEST
            self._raw[digest] = RawDocument(data, media_type)
        return self._manifests[digest]

    def _foreign(self, descriptor, what):
        """An entry that is neither a manifest nor an index: an artifact of its media type, if its blob is there."""
        digest = check_digest(descriptor.get("digest"), what)
        if not self.source.exists(blob_path(digest)):
            raise ArchiveError("%s: %s points at blob %s (%s), which is missing from the archive"
                               % (self.source.label, what, digest, descriptor.get("mediaType")))
        return Found(descriptor, None, descriptor.get("artifactType") or descriptor.get("mediaType"))


def _describe_entry(position, descriptor):
    ref_name = (descriptor.get("annotations") or {}).get(ANNOTATION_REF_NAME)
    return "index.json entry %d%s" % (position, " (%s)" % ref_name if ref_name else "")


def _platform_names(descriptors):
    return ", ".join(sorted({_describe_platform(d.get("platform")) for d in descriptors})) or "none"


def _describe_platform(platform):
    if not platform:
        return "any"
    return "/".join(part for part in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if part)


def _entries(index, what):
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if manifests is None and isinstance(index, dict) and "manifests" in index:
        manifests = []  # Docker 25 writes a Go nil slice when it saves only untagged images
    if not isinstance(manifests, list):
        raise ArchiveError("%s: not an image index (no 'manifests' list)" % what)
    for descriptor in manifests:
        check_descriptor(descriptor, what + " manifest entry")
    return manifests


def check_descriptor(descriptor, what):
    """An OCI descriptor's fields have the JSON types the spec gives them (the digest is checked where it is used)."""
    if not isinstance(descriptor, dict):
        raise ArchiveError("%s is not a JSON object" % what)
    for field in ("mediaType", "artifactType"):
        if not isinstance(descriptor.get(field, ""), str):
            raise ArchiveError("%s: %s %r is not a string" % (what, field, descriptor[field]))
    for field, keys in (("platform", ("os", "architecture", "variant")), ("annotations", None)):
        value = descriptor.get(field)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(value.get(key, ""), str) for key in (keys or value)):
            raise ArchiveError("%s: %s %r is not an object of strings" % (what, field, value))
    return descriptor


def _parse_json(data, label, what):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ArchiveError("%s: %s is not valid JSON: %s" % (label, what, err)) from None


def check_layout_version(source):
    if not source.exists("oci-layout"):
        return
    version = source.read_json("oci-layout")
    if not isinstance(version, dict) or version.get("imageLayoutVersion") != LAYOUT_VERSION:
        raise ArchiveError("%s: oci-layout says %r; only imageLayoutVersion 1.0.0 is supported" % (source.label, version))


def read_layout(source, platform=None):
    """``(images, artifacts)`` of an OCI layout (directory or archive): one image per distinct manifest, names merged."""
    check_layout_version(source)
    by_manifest = {}
    artifacts = []
    entries = IndexWalker(source, platform).entries(source.read_json("index.json"))
    cosign_image = _cosign_saved_image(entries)
    for entry in entries:
        if not entry.is_image:
            artifacts.extend(_cosign_saved_attachment(artifact, entry, cosign_image) for artifact in entry.artifacts(source))
            continue
        for found in entry.images():
            named = by_manifest.setdefault(found.descriptor["digest"], (found, entry.where, [], [], []))
            named[2].extend(entry.references)
            if entry.digest and entry.digest not in named[3]:
                named[3].append(entry.digest)
            if entry.converted_from:
                named[4].append(entry.converted_from)
    artifacts = merge_artifacts(artifacts)
    images = [image_from_found(source, found, references, digests, where, (converted_from or [None])[0])
              for found, where, references, digests, converted_from in by_manifest.values()]
    return [_with_referrers(image, artifacts) for image in images], artifacts


def _cosign_saved_image(entries):
    """The one image entry of a layout ``cosign save`` wrote (its ``kind`` says so), or None."""
    kinds = (COSIGN_SAVE_IMAGE_KIND, COSIGN_SAVE_INDEX_KIND)
    found = [entry for entry in entries if entry.cosign_kind in kinds and entry.is_image]
    return found[0] if len(found) == 1 else None


def _cosign_saved_attachment(artifact, entry, image_entry):
    """cosign save's unnamed ``.sig``/``.att``/``.sbom`` entries belong to its one image: attached by the tag cosign
    would give them there."""
    suffix = {kind: suffix for suffix, kind in COSIGN_SAVE_KINDS.items()}.get(entry.cosign_kind)
    if suffix is None or image_entry is None or artifact.tag is not None:
        return artifact
    tag = attachment_tag(image_entry.digest, suffix)
    return Artifact(artifact.id, artifact.media_type, artifact.artifact_type, artifact.config_media_type, artifact.layer_media_types,
                    [ref.with_tag(tag) for ref in image_entry.references], artifact.digests, artifact.ref_names, None,
                    artifact.manifest, artifact.blobs, tag, artifact.annotations)


def _with_referrers(image, artifacts):
    """The image with the artifacts whose subject it is, after the attestations its index lists."""
    return image.with_referrers(image.referrers + [a for a in artifacts if a.subject is not None and a.subject in image.digests])


def read_layout_images(source, platform=None):
    """The images of an OCI layout; what else it holds is left out (``read_layout`` has it)."""
    return read_layout(source, platform)[0]


def merge_artifacts(artifacts):
    """One Artifact per manifest digest, the names of every entry that leads to it merged, order kept."""
    merged = {}
    for artifact in artifacts:
        key = artifact_key(artifact)
        first = merged.setdefault(key, artifact)
        if first is not artifact:
            merged[key] = Artifact(first.id, first.media_type, first.artifact_type, first.config_media_type,
                                   first.layer_media_types, first.references + artifact.references,
                                   first.digests + artifact.digests, first.ref_names + artifact.ref_names,
                                   first.subject, first.manifest, first.blobs, first.tag, first.annotations)
    return list(merged.values())


def artifact_key(artifact):
    """What makes an attachment one: its manifest, and the cosign tag it is attached by (one signature manifest
    can sit under the tags of two images)."""
    return artifact.id, artifact.tag or ""


def image_from_found(source, found, references, digests, where=None, converted_from=None):
    """The image of the manifest ``found`` (an IndexWalker's answer); ``where`` names the index entry it came through,
    ``converted_from`` the image a conversion made it from (the entry's annotation)."""
    name = "%smanifest %s" % (where + ": " if where else "", found.descriptor["digest"][:19])
    what = "%s: %s" % (source.label, name)
    manifest = found.manifest
    config_bytes = read_verified_blob(source, manifest["config"], name + " config")
    diff_ids = parse_config(config_bytes, what)["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        raise ArchiveError("%s: layers length mismatch: the config lists %d DiffIDs, the manifest %d layers"
                           % (what, len(diff_ids), len(manifest["layers"])))
    layers = [_layer(source, layer_desc, diff_id, "%s layer %d" % (what, i)) for i, (layer_desc, diff_id)
              in enumerate(zip(manifest["layers"], diff_ids))]
    return Image(config_bytes, layers, references, digests, what=what, manifest=found.raw, index=found.index,
                 platform=found.platform, referrers=found.attestations, converted_from=converted_from)


def _blob_refs(source, manifest):
    """The config and layer blobs of an artifact's manifest that ``source`` holds, to copy as they are."""
    refs = []
    for descriptor in [manifest.get("config") or {}] + list(manifest.get("layers") or []):
        digest = descriptor.get("digest")
        if isinstance(digest, str) and isinstance(descriptor.get("size"), int) and source.exists(blob_path(digest)):
            path = blob_path(digest)
            refs.append(BlobRef(digest, descriptor["size"], lambda path=path: source.open(path), "%s: blob %s" % (source.label, digest)))
    return refs


def _layer(source, descriptor, diff_id, what):
    check_descriptor(descriptor, what + " descriptor")
    digest = check_digest(descriptor.get("digest"), what)
    path = blob_path(digest)
    media_type = descriptor.get("mediaType") or MEDIA_OCI_LAYER
    size = descriptor.get("size") if isinstance(descriptor.get("size"), int) else None
    uncompressed_size = size if media_type in UNCOMPRESSED_LAYER_TYPES and digest == diff_id else _annotated_size(descriptor)
    return Layer(diff_id, lambda: source.open(path), media_type, uncompressed_size, digest, size,
                 available=lambda: source.exists(path), what=what, region=lambda: source.region(path))


def _annotated_size(descriptor):
    """The uncompressed size our writer records on a compressed layer (checked when the layer is read)."""
    value = (descriptor.get("annotations") or {}).get(ANNOTATION_UNCOMPRESSED_SIZE)
    return int(value) if isinstance(value, str) and value.isdigit() else None


# Writing ------------------------------------------------------------------------------------------------

def layer_descriptor(layer_digest, size, media_type=MEDIA_OCI_LAYER, uncompressed_size=None):
    descriptor = {"mediaType": media_type, "digest": layer_digest, "size": size}
    if uncompressed_size is not None:
        descriptor["annotations"] = {ANNOTATION_UNCOMPRESSED_SIZE: str(uncompressed_size)}
    return descriptor


def build_manifest(image, layer_descriptors):
    """The OCI manifest bytes for ``image`` whose layers are stored as ``layer_descriptors``."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": image.id, "size": len(image.config_bytes)},
        "layers": list(layer_descriptors),
    }
    return canonical_json(manifest)


def build_index(descriptors):
    """index.json bytes listing ``descriptors`` in order."""
    return canonical_json({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": list(descriptors)})


def index_annotations(reference, ref_name_style):
    """Annotations naming ``reference``: ``ref.name`` is the tag (Docker style) or the full name (OCI tools' style)."""
    ref_name = reference.tag if ref_name_style == "tag" else str(reference)
    return {ANNOTATION_CONTAINERD_NAME: str(reference), ANNOTATION_REF_NAME: ref_name}


def digest_of_path(path):
    """``sha256:<hex>`` when ``path`` is ``blobs/sha256/<hex>``, else None."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "blobs" and parts[1] == "sha256":
        candidate = "sha256:" + parts[2]
        try:
            return check_digest(candidate, path)
        except ArchiveError:
            return None
    return None


def merge_images(images):
    """One entry per image (its manifest, or for a made one its config), references merged, order kept."""
    merged = {}
    for image in images:
        key = image.manifest_digest or image.id
        if key in merged:
            image = merged[key].with_references(merged[key].references + image.references)
        merged[key] = image
    return list(merged.values())


class StoredLayer:
    """One layer blob a writer stores: its digest, size and media type, how to read its bytes, and where they lie as
    they are in a plain file (``region()``: a FileRegion, or None)."""

    def __init__(self, layer, digest, size, media_type, opener, region=None):
        self.layer = layer
        self.digest = digest
        self.size = size
        self.media_type = media_type
        self.open = opener
        self.region = region or (lambda: None)

    @property
    def diff_id(self):
        return self.layer.diff_id

    @property
    def what(self):
        return self.layer.what

    def descriptor(self):
        return layer_descriptor(self.digest, self.size, self.media_type)


def stored_layer(layer, made):
    """How ``layer`` is stored: as the blob it came as (its image keeps its manifest), or, for an image whose manifest
    we make, uncompressed under its DiffID (the size is measured by reading it when the source does not say)."""
    if not made and layer.blob_digest is not None and layer.blob_size is not None:
        return StoredLayer(layer, layer.blob_digest, layer.blob_size, layer.media_type, layer.open_blob, layer.blob_region)
    if not made and layer.blob_digest is not None:
        raise ArchiveError("%s: the source gives no size for blob %s" % (layer.what, layer.blob_digest))
    return StoredLayer(layer, layer.diff_id, layer.measured_size(), MEDIA_OCI_LAYER, layer.open, layer.tar_region)


def made_manifest(image):
    """The OCI manifest a writer makes for ``image``, which came without one: its layers uncompressed under their
    DiffIDs. An engine that keys images on manifest digests knows the image, once loaded from our archive, by its."""
    return RawDocument(build_manifest(image, [stored_layer(layer, True).descriptor() for layer in image.layers]), MEDIA_OCI_MANIFEST)


class WritePlan:
    """What a writer stores for ``images``: each layer blob once, each image's manifest (kept, or made) and index.

    An image that came with a manifest keeps it, byte for byte, with its index and layer blobs as they came. One
    that came without (Docker's classic store) gets an OCI manifest made here, its layers uncompressed under their
    DiffIDs: the same images give the same bytes. Layers in ``omit_layers`` (DiffIDs or blob digests: a thin
    archive) are not stored and, when their size is known, not read.
    """

    def __init__(self, images, omit_layers=()):
        self.images = merge_images(images)
        omit = set(omit_layers)
        self.layers = {}
        self.manifests = []
        self.stored = []
        for image in self.images:
            made = image.manifest is None
            stored = []
            for layer in image.layers:
                if made and layer.diff_id in omit and layer.size is None:
                    raise ArchiveError("cannot leave %s out of a thin archive: its size is unknown without reading it" % layer.what)
                key = (layer.diff_id, image.layer_blob_digest(layer))
                if key not in self.layers:
                    self.layers[key] = stored_layer(layer, made)
                stored.append(self.layers[key])
            self.manifests.append(made_manifest(image) if made else image.manifest)
            self.stored.append(stored)
        self.omitted = {key for key, s in self.layers.items() if s.diff_id in omit or s.digest in omit}
        self.referrers = list({artifact_key(artifact): artifact for image in self.images for artifact in image.referrers
                               if artifact.manifest is not None}.values())

    def referrer_blobs(self):
        """The configs and layers of the artifacts that travel with the images, each once."""
        return list({blob.digest: blob for artifact in self.referrers for blob in artifact.blobs}.values())

    def layers_to_write(self):
        written, out = set(), []
        for key, stored in self.layers.items():
            if key not in self.omitted and stored.digest not in written:
                written.add(stored.digest)
                out.append(stored)
        return out

    def documents(self):
        """Every manifest and index blob, each once, indexes first."""
        documents = [image.index for image in self.images if image.index is not None] + self.manifests
        documents += [artifact.manifest for artifact in self.referrers]
        return list({document.digest: document for document in documents}.values())

    def index_descriptors(self, ref_name_style):
        """index.json's entries: per image (per index, for the platforms of one index) one per tag, or one unnamed."""
        groups = {}
        for image, manifest in zip(self.images, self.manifests):
            top = image.index or manifest
            group = groups.setdefault(top.digest, (top, [], {}))
            group[1].extend(ref for ref in image.references if ref.tag and ref not in group[1])
            group[2].update(image_entry_annotations(image))
        descriptors = []
        for top, tagged, kind in groups.values():
            if not tagged:
                descriptors.append(top.descriptor(kind))
            descriptors.extend(top.descriptor(dict(index_annotations(ref, ref_name_style), **kind)) for ref in tagged)
        return descriptors + [entry for artifact in self.referrers for entry in attached_descriptors(artifact, ref_name_style)]


def attached_descriptors(artifact, ref_name_style="full"):
    """index.json's entries for an artifact attached to an image: a referrer's one unnamed entry (found again by its
    subject, as oras lays it out); for cosign's tag scheme, one per name of its tag, with the ``kind`` cosign save
    gives it. An artifact attached to nothing (an attestation its image's index lists) needs none."""
    if artifact.tag is None:
        return [referrer_descriptor(artifact)] if artifact.subject else []
    names = [ref for ref in artifact.references if ref.tag == artifact.tag]
    if not names:
        raise ArchiveError("%s: %s has no repository to carry its tag %s" % (artifact.describe(), artifact.kind, artifact.tag))
    kind = {ANNOTATION_COSIGN_KIND: COSIGN_SAVE_KINDS[parse_attachment_tag(artifact.tag)[1]]}
    return [artifact.manifest.descriptor(dict(index_annotations(ref, ref_name_style), **kind)) for ref in names]


def image_entry_annotations(image):
    """The annotations of an image's index.json entries besides its name: the ``kind`` ``cosign save`` gives an image
    that has attachments (so that ``cosign verify --local-image`` finds it in a layout of one image), and for an image
    a conversion made, the digest of the image it was made from."""
    annotations = {}
    if image.referrers:
        annotations[ANNOTATION_COSIGN_KIND] = COSIGN_SAVE_INDEX_KIND if image.index is not None else COSIGN_SAVE_IMAGE_KIND
    if image.manifest is None and image.converted_from:
        annotations[ANNOTATION_CONVERTED_FROM] = image.converted_from
    return annotations


def referrer_descriptor(artifact):
    """index.json's unnamed entry for an artifact whose subject is an image (found again as a referrer)."""
    descriptor = artifact.manifest.descriptor()
    if artifact.artifact_type:
        descriptor["artifactType"] = artifact.artifact_type
    return descriptor


def write_configs(tar, images):
    written = set()
    for image in images:
        if image.id not in written:
            written.add(image.id)
            tar.add_bytes(blob_path(image.id), image.config_bytes)


def write_layers(tar, layers):
    """Each layer blob; one that lies as it is stored in a plain file is copied by the sink where it can."""
    for stored in layers:
        region = stored.region() if tar.copies_regions else None
        if region is not None and region.size == stored.size:
            tar.add_region(blob_path(stored.digest), region, stored.digest, stored.what)
            continue
        with stored.open() as stream:
            tar.add_stream(blob_path(stored.digest), stored.size, stream, stored.what)


def write_documents(tar, documents):
    for document in documents:
        tar.add_bytes(blob_path(document.digest), document.data)


def write_layout_head(tar, plan, ref_name_style):
    """``oci-layout``, ``index.json``, then every manifest, index and config: all a reader needs before the layers."""
    tar.add_bytes("oci-layout", OCI_LAYOUT_BYTES)
    tar.add_bytes("index.json", build_index(plan.index_descriptors(ref_name_style)))
    tar.add_dir("blobs")
    tar.add_dir("blobs/sha256")
    write_documents(tar, plan.documents())
    write_configs(tar, plan.images)
    for blob in plan.referrer_blobs():
        with blob.open() as stream:
            tar.add_stream(blob_path(blob.digest), blob.size, stream, blob.what)


def write_oci_archive(images, sink, omit_layers=()):
    """An oci-archive: ``oci-layout``, ``index.json``, then manifests, configs and layers (metadata first).

    Each tag gets an index entry whose ``ref.name`` is the full reference, as
    skopeo and podman write it, plus ``io.containerd.image.name``.
    """
    plan = WritePlan(images, omit_layers)
    tar = TarWriter(sink)
    write_layout_head(tar, plan, "full")
    write_layers(tar, plan.layers_to_write())
    tar.close()
    return tar.position
