# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``docker save`` archive: read every flavour through ``manifest.json``; write ours.

Read: Docker <= 24 (``<id>/layer.tar``, symlinked duplicates), Docker 25+ and
containerd (``blobs/sha256/...``, maybe compressed), skopeo and podman
(``<diffid>.tar``). Written: metadata first (``manifest.json``,
``repositories``, configs), then each layer once as ``blobs/sha256/<diffid>``,
then OCI manifests, ``index.json`` and ``oci-layout``, so the archive is also
an OCI layout and a reader learns everything but the layer bytes from its
first blocks.
"""

from ..compression import NONE, detect
from ..errors import ArchiveError, InvalidReferenceError
from ..model import MEDIA_DOCKER_LAYER, MEDIA_OCI_LAYER, Image, Layer, parse_config
from .oci_layout import (OCI_LAYOUT_BYTES, blob_path, build_index, canonical_json, digest_of_path, layer_descriptor,
                         oci_index_entries, plan_write, write_configs, write_layers, write_manifests)
from ..reference import parse_reference
from .tarwriter import TarWriter

_UNCOMPRESSED_TYPES = (MEDIA_OCI_LAYER, MEDIA_DOCKER_LAYER)


def read_docker_archive(source):
    """Images listed by ``manifest.json``, in order; entries with the same config are merged."""
    manifest = source.read_json("manifest.json")
    if manifest is None:
        raise ArchiveError("%s: invalid manifest.json: manifest cannot be null (but can be [])" % source.label)
    if not isinstance(manifest, list):
        raise ArchiveError("%s: invalid manifest.json: expected a JSON array of images" % source.label)
    images = {}
    for position, item in enumerate(manifest):
        image = _read_item(source, item, "%s: manifest.json entry %d" % (source.label, position))
        if image.id in images:
            merged = images[image.id]
            image = merged.with_references(merged.references + image.references)
        images[image.id] = image
    return list(images.values())


def _read_item(source, item, what):
    if not isinstance(item, dict):
        raise ArchiveError("%s: not a JSON object" % what)
    config_path = _string(item.get("Config"), what, "Config")
    config_bytes = source.read_bytes(config_path)
    expected = _config_digest_from_path(config_path)
    paths = item.get("Layers")
    if not isinstance(paths, list):
        raise ArchiveError("%s: 'Layers' is not a list" % what)
    diff_ids = parse_config(config_bytes, what)["rootfs"]["diff_ids"]
    if len(paths) != len(diff_ids):
        raise ArchiveError("%s: layers length mismatch: the config lists %d DiffIDs, manifest.json %d layers"
                           % (what, len(diff_ids), len(paths)))
    sources = item.get("LayerSources") if isinstance(item.get("LayerSources"), dict) else {}
    sources = {key: value for key, value in sources.items() if isinstance(value, dict)}
    layers = [_layer(source, _string(path, what, "Layers[%d]" % i), diff_id, sources.get(diff_id), "%s layer %d" % (what, i))
              for i, (path, diff_id) in enumerate(zip(paths, diff_ids))]
    image = Image(config_bytes, layers, _references(item.get("RepoTags"), what), what=what)
    if expected and expected != image.id:
        raise ArchiveError("%s: config %s has digest %s (corrupt or tampered)" % (what, config_path, image.id))
    return image


def _string(value, what, field):
    if not isinstance(value, str) or not value:
        raise ArchiveError("%s: '%s' is missing or not a string" % (what, field))
    return value


def _config_digest_from_path(path):
    digest = digest_of_path(path)
    if digest is None and path.endswith(".json") and "/" not in path:
        digest = digest_of_path("blobs/sha256/" + path[:-5])
    return digest


def _references(repo_tags, what):
    refs = []
    if repo_tags is not None and not isinstance(repo_tags, list):
        raise ArchiveError("%s: RepoTags is not a list" % what)
    for tag in repo_tags or []:
        if not isinstance(tag, str):
            raise ArchiveError("%s: RepoTags entry %r is not a string" % (what, tag))
        try:
            refs.append(parse_reference(tag))
        except InvalidReferenceError as err:
            raise ArchiveError("%s: %s" % (what, err)) from None
    return refs


def _layer(source, path, diff_id, layer_source, what):
    blob_digest = digest_of_path(path)
    on_disk = source.compression == NONE and source.exists(path)  # sizes are free to learn only from a plain, indexed tar
    size = None
    if layer_source and layer_source.get("mediaType") in _UNCOMPRESSED_TYPES and isinstance(layer_source.get("size"), int):
        size = layer_source["size"]
    elif on_disk and _is_uncompressed(source, path):
        size = source.size(path)
    blob_size = source.size(path) if blob_digest and on_disk else None
    return Layer(diff_id, lambda: source.open(path), size=size, blob_digest=blob_digest, blob_size=blob_size,
                 available=lambda: source.exists(path), what=what)


def _is_uncompressed(source, path):
    with source.open(path) as stream:
        return detect(stream.read(6)) == NONE


# Writing ------------------------------------------------------------------------------------------------

def write_docker_archive(images, sink, omit_layers=()):
    """Write ``images`` as our docker-archive flavour to the binary writer ``sink``.

    ``omit_layers`` (DiffIDs) are left out: a *thin* archive for a target that
    already holds them. Returns the TarWriter's byte count.
    """
    images, layers, sizes, manifests = plan_write(images, omit_layers)
    tar = TarWriter(sink)
    tar.add_bytes("manifest.json", canonical_json([_manifest_item(image, sizes) for image in images]) + b"\n")
    repositories = _repositories(images)
    if repositories:
        tar.add_bytes("repositories", canonical_json(repositories) + b"\n")
    tar.add_dir("blobs")
    tar.add_dir("blobs/sha256")
    write_configs(tar, images)
    write_layers(tar, layers, sizes)
    write_manifests(tar, manifests)
    tar.add_bytes("index.json", build_index(oci_index_entries(images, manifests, "tag")))
    tar.add_bytes("oci-layout", OCI_LAYOUT_BYTES)
    tar.close()
    return tar.position


def _manifest_item(image, sizes):
    """RepoTags are fully qualified: Docker familiarises them on load, and podman would otherwise apply
    its short-name rules (``localhost/...``). LayerSources (as Docker 25+ writes them) give every layer's
    size in the head of the archive."""
    return {
        "Config": blob_path(image.id),
        "RepoTags": [str(ref) for ref in image.references if ref.tag and not ref.digest],
        "Layers": [blob_path(diff_id) for diff_id in image.diff_ids],
        "LayerSources": {diff_id: layer_descriptor(diff_id, sizes[diff_id]) for diff_id in image.diff_ids},
    }


def _repositories(images):
    repositories = {}
    for image in images:
        for ref in image.references:
            if ref.tag and image.diff_ids:
                repositories.setdefault(ref.familiar_name(), {})[ref.tag] = image.diff_ids[-1].split(":", 1)[1]
    return repositories
