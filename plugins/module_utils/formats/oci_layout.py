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

from ..digest import check_digest, sha256_digest
from ..errors import ArchiveError, InvalidReferenceError, NotAnImageError
from ..model import (IMAGE_CONFIG_TYPES, INDEX_TYPES, MANIFEST_TYPES, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_LAYER,
                    MEDIA_OCI_MANIFEST, Artifact, Image, Layer, parse_config)
from ..platforms import parse_platform
from ..reference import parse_reference
from .tarwriter import TarWriter

LAYOUT_VERSION = "1.0.0"
OCI_LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# Our compressed layout layers record their uncompressed size, so a thin load needs not decompress a layer to learn it.
ANNOTATION_UNCOMPRESSED_SIZE = "org.airgap-images.layer.uncompressed-size"
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
        return None
    return artifact_type if artifact_type not in image_types else config_type


def read_manifest(source, descriptor, what):
    """The manifest ``descriptor`` names, verified, with the fields an image or an artifact needs."""
    manifest = _parse_json(read_verified_blob(source, descriptor, what + " manifest"), source.label, what + " manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict) or not isinstance(manifest.get("layers"), list):
        raise ArchiveError("%s: %s: not an image manifest (needs config and layers)" % (source.label, what))
    check_descriptor(manifest["config"], "%s: %s config" % (source.label, what))
    for position, layer in enumerate(manifest["layers"]):
        check_descriptor(layer, "%s: %s layer %d" % (source.label, what, position))
    if not isinstance(manifest.get("artifactType", ""), str):
        raise ArchiveError("%s: %s: artifactType %r is not a string" % (source.label, what, manifest["artifactType"]))
    if manifest.get("subject") is not None:
        check_descriptor(manifest["subject"], "%s: %s subject" % (source.label, what))
    return manifest


class Found:
    """A manifest reached through index.json: an image's (``artifact_type`` None) or an artifact's.

    ``manifest`` is None for an entry that is neither a manifest nor an index (its format is not ours to read).
    """

    def __init__(self, descriptor, manifest, artifact_type):
        self.descriptor = descriptor
        self.manifest = manifest
        self.artifact_type = artifact_type

    @property
    def is_image(self):
        return self.artifact_type is None

    def artifact(self, entry):
        """The Artifact this is, named by the top-level ``entry`` it was found through."""
        manifest = self.manifest or {}
        return Artifact(self.descriptor["digest"], self.descriptor.get("mediaType"), self.artifact_type,
                        (manifest.get("config") or {}).get("mediaType"),
                        [layer.get("mediaType") for layer in manifest.get("layers", [])],
                        entry.references, [entry.digest], [entry.ref_name] if entry.ref_name else [],
                        (manifest.get("subject") or {}).get("digest"))


class LayoutEntry:
    """One top-level entry of index.json: the names it carries and what it leads to (one image, or artifacts)."""

    def __init__(self, descriptor, found, where):
        annotations = descriptor.get("annotations") or {}
        self.digest = descriptor.get("digest")
        self.references = references_from_annotations(annotations)
        self.ref_name = annotations.get(ANNOTATION_REF_NAME)
        self.found = found
        self.where = where

    @property
    def is_image(self):
        return self.found[0].is_image

    def artifacts(self):
        return [found.artifact(self) for found in self.found]


class IndexWalker:
    """Finds, for each top-level entry of index.json, the image manifest to use, or the artifacts it is."""

    def __init__(self, source, platform):
        self.source = source
        self.platform = parse_platform(platform)
        self.explicit_platform = bool(platform)
        self._manifests = {}

    def entries(self, index):
        found = []
        for position, descriptor in enumerate(_entries(index, self.source.label + ": index.json")):
            where = _describe_entry(position, descriptor)
            found.append(LayoutEntry(descriptor, self.choose(descriptor, where), where))
        return found

    def choose(self, descriptor, what, depth=0):
        """What ``descriptor`` leads to: ``[Found]`` of its image manifest (of an index: the platform's), else the
        artifacts it is or its index holds."""
        media_type = descriptor.get("mediaType")
        if media_type in MANIFEST_TYPES or media_type is None:
            manifest = self.manifest(descriptor, what)
            return [Found(descriptor, manifest, manifest_artifact_type(manifest))]
        if media_type not in INDEX_TYPES:
            return [self._foreign(descriptor, what)]
        if depth >= _MAX_INDEX_DEPTH:
            raise ArchiveError("%s: %s: indexes nested more than %d deep" % (self.source.label, what, _MAX_INDEX_DEPTH))
        index = _parse_json(read_verified_blob(self.source, descriptor, what + " index"), self.source.label, what)
        candidates = [d for d in _entries(index, what) if not _is_attestation(d) and self.platform.matches(d.get("platform"))]
        present = [d for d in candidates if self.source.exists(blob_path(check_digest(d.get("digest"), what)))]
        if not present:
            listed = sorted({_describe_platform(d.get("platform")) for d in _entries(index, what) if not _is_attestation(d)})
            raise ArchiveError("%s: %s has no manifest for platform %s in the archive (listed: %s); pass the platform "
                               "the archive holds" % (self.source.label, what, self.platform, ", ".join(listed) or "none"))
        artifacts = []
        for member in present:
            found = self.choose(member, what + " > " + _describe_platform(member.get("platform")), depth + 1)
            if found[0].is_image:
                return found
            artifacts.extend(found)
        return artifacts

    def choose_image(self, descriptor, what):
        """The Found of the image ``descriptor`` leads to; NotAnImageError saying what it is when it is an artifact."""
        found = self.choose(descriptor, what)
        if not found[0].is_image:
            raise NotAnImageError("%s: %s is an artifact (%s), not an image"
                                  % (self.source.label, what, ", ".join(sorted({f.artifact_type for f in found}))))
        return found[0]

    def manifest(self, descriptor, what):
        digest = check_digest(descriptor.get("digest"), what)
        if digest not in self._manifests:
            self._manifests[digest] = read_manifest(self.source, descriptor, what)
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
    """``(images, artifacts)`` of an OCI layout (directory or archive): one of each per distinct manifest, names merged."""
    check_layout_version(source)
    by_manifest = {}
    artifacts = []
    for entry in IndexWalker(source, platform).entries(source.read_json("index.json")):
        if not entry.is_image:
            artifacts.extend(entry.artifacts())
            continue
        found = entry.found[0]
        named = by_manifest.setdefault(found.descriptor["digest"], (found, entry.where, [], [found.descriptor["digest"]]))
        named[2].extend(entry.references)
        if entry.digest and entry.digest not in named[3]:
            named[3].append(entry.digest)
    images = [image_from_manifest(source, found.descriptor, references, digests, found.manifest, where)
              for found, where, references, digests in by_manifest.values()]
    return images, merge_artifacts(artifacts)


def read_layout_images(source, platform=None):
    """The images of an OCI layout; what else it holds is left out (``read_layout`` has it)."""
    return read_layout(source, platform)[0]


def merge_artifacts(artifacts):
    """One Artifact per manifest digest, the names of every entry that leads to it merged, order kept."""
    merged = {}
    for artifact in artifacts:
        first = merged.setdefault(artifact.id, artifact)
        if first is not artifact:
            merged[artifact.id] = Artifact(first.id, first.media_type, first.artifact_type, first.config_media_type,
                                           first.layer_media_types, first.references + artifact.references,
                                           first.digests + artifact.digests, first.ref_names + artifact.ref_names,
                                           first.subject)
    return list(merged.values())


def digests_by_config(source, platform=None):
    """``{config digest: [manifest digest, index digest…]}`` for the images index.json names.

    Lets a docker-archive that is also an OCI layout (Docker 25+, containerd,
    ours) report the digests Docker's containerd store uses as image IDs.
    """
    check_layout_version(source)
    found = {}
    for entry in IndexWalker(source, platform).entries(source.read_json("index.json")):
        if not entry.is_image:
            continue
        image = entry.found[0]
        config_digest = image.manifest["config"].get("digest")
        if isinstance(config_digest, str):
            digests = found.setdefault(config_digest, [])
            for digest in (image.descriptor["digest"], entry.digest):
                if digest and digest not in digests:
                    digests.append(digest)
    return found


def image_from_manifest(source, descriptor, references, digests, manifest=None, where=None):
    """The image of the manifest ``descriptor`` names (``manifest``: its JSON, when already read); ``where`` names
    the index entry it was found through."""
    name = "%smanifest %s" % (where + ": " if where else "", descriptor["digest"][:19])
    what = "%s: %s" % (source.label, name)
    if manifest is None:
        manifest = read_manifest(source, descriptor, name)
    config_bytes = read_verified_blob(source, manifest["config"], name + " config")
    diff_ids = parse_config(config_bytes, what)["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        raise ArchiveError("%s: layers length mismatch: the config lists %d DiffIDs, the manifest %d layers"
                           % (what, len(diff_ids), len(manifest["layers"])))
    layers = [_layer(source, layer_desc, diff_id, "%s layer %d" % (what, i)) for i, (layer_desc, diff_id)
              in enumerate(zip(manifest["layers"], diff_ids))]
    return Image(config_bytes, layers, references, digests, what=what)


def _layer(source, descriptor, diff_id, what):
    check_descriptor(descriptor, what + " descriptor")
    digest = check_digest(descriptor.get("digest"), what)
    path = blob_path(digest)
    media_type = descriptor.get("mediaType") or MEDIA_OCI_LAYER
    size = descriptor.get("size") if isinstance(descriptor.get("size"), int) else None
    uncompressed_size = size if media_type in _UNCOMPRESSED_LAYER_TYPES and digest == diff_id else _annotated_size(descriptor)
    return Layer(diff_id, lambda: source.open(path), media_type, uncompressed_size, digest, size,
                 available=lambda: source.exists(path), what=what)


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


def manifest_descriptor(manifest_bytes, annotations=None):
    descriptor = {"mediaType": MEDIA_OCI_MANIFEST, "digest": sha256_digest(manifest_bytes), "size": len(manifest_bytes)}
    if annotations:
        descriptor["annotations"] = annotations
    return descriptor


def build_index(entries):
    """index.json bytes; ``entries`` are (manifest_bytes, annotations or None) in order."""
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [manifest_descriptor(data, annotations) for data, annotations in entries],
    })


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
    """One entry per image ID, references merged, order kept."""
    merged = {}
    for image in images:
        if image.id in merged:
            image = merged[image.id].with_references(merged[image.id].references + image.references)
        merged[image.id] = image
    return list(merged.values())


def unique_layers(images):
    layers = {}
    for image in images:
        for layer in image.layers:
            layers.setdefault(layer.diff_id, layer)
    return list(layers.values())


def plan_write(images, omit_layers=()):
    """What a writer needs: merged images, the layers to write, every layer's size, each image's manifest bytes.

    Layers are stored uncompressed under their DiffID. A layer in ``omit_layers``
    (a thin archive) is not read when its size is already known.
    """
    images = merge_images(images)
    omit = set(omit_layers)
    every_layer = unique_layers(images)
    sizes = {}
    for layer in every_layer:
        if layer.diff_id in omit and layer.size is None:
            raise ArchiveError("cannot leave %s out of a thin archive: its size is unknown without reading it" % layer.what)
        sizes[layer.diff_id] = layer.measured_size()
    manifests = [build_manifest(image, [layer_descriptor(d, sizes[d]) for d in image.diff_ids]) for image in images]
    return images, [layer for layer in every_layer if layer.diff_id not in omit], sizes, manifests


def write_configs(tar, images):
    for image in images:
        tar.add_bytes(blob_path(image.id), image.config_bytes)


def write_layers(tar, layers, sizes):
    for layer in layers:
        with layer.open() as stream:
            tar.add_stream(blob_path(layer.diff_id), sizes[layer.diff_id], stream, layer.what)


def write_manifests(tar, manifests):
    written = set()
    for data in manifests:
        digest = sha256_digest(data)
        if digest not in written:
            written.add(digest)
            tar.add_bytes(blob_path(digest), data)


def write_oci_archive(images, sink, omit_layers=()):
    """An oci-archive: ``oci-layout``, ``index.json``, then manifests, configs and layers (metadata first).

    Each tag gets an index entry whose ``ref.name`` is the full reference, as
    skopeo and podman write it, plus ``io.containerd.image.name``.
    """
    images, layers, sizes, manifests = plan_write(images, omit_layers)
    tar = TarWriter(sink)
    tar.add_bytes("oci-layout", OCI_LAYOUT_BYTES)
    tar.add_bytes("index.json", build_index(oci_index_entries(images, manifests, "full")))
    tar.add_dir("blobs")
    tar.add_dir("blobs/sha256")
    write_manifests(tar, manifests)
    write_configs(tar, images)
    write_layers(tar, layers, sizes)
    tar.close()
    return tar.position


def oci_index_entries(images, manifests, ref_name_style):
    """(manifest bytes, annotations) per tag of each image; one unnamed entry for an untagged image."""
    entries = []
    for image, manifest in zip(images, manifests):
        tagged = [ref for ref in image.references if ref.tag]
        if not tagged:
            entries.append((manifest, None))
        entries.extend((manifest, index_annotations(ref, ref_name_style)) for ref in tagged)
    return entries
