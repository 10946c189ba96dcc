# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``docker save`` archive: read every flavour through ``manifest.json``; write ours.

Read: Docker <= 24 (``<id>/layer.tar``, symlinked duplicates), Docker 25+ and
containerd (``blobs/sha256/...``, maybe compressed), skopeo and podman
(``<diffid>.tar``). Written: metadata first (``manifest.json``,
``repositories``, ``oci-layout``, ``index.json``, manifests, indexes,
configs), then each layer blob once, so the archive is also an OCI layout and
a reader learns everything but the layer bytes from its first blocks.
"""

from ..compression import NONE, detect
from ..digest import Region, sha256_digest
from ..errors import ArchiveError, InvalidReferenceError
from ..model import MEDIA_DOCKER_LAYER, MEDIA_OCI_LAYER, Image, Layer, parse_config
from .oci_layout import WritePlan, blob_path, canonical_json, digest_of_path, write_layers, write_layout_head
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
                 available=lambda: source.exists(path), what=what, region=lambda: source.region(path) if on_disk else None)


def as_is_regions(source, images):
    """Where the files an engine's ``docker load`` reads from this archive lie in it, with the digests they must have
    (``Region``s), so that the archive can be sent as it is and still be checked on the way: ``manifest.json`` (and
    ``index.json``) as read now, each image's config and each layer as ``images`` (read from this archive) know them,
    every ``blobs/<algorithm>/<hex>`` by its name. None when a file would need two digests."""
    by_id = {image.id: image for image in images}
    if any(layer.blob_digest is None and layer.size is None for image in images for layer in image.layers):
        return None  # a layer whose stored form is unknown (a compressed layer.tar) has no digest to check as it is
    wanted = {name: (sha256_digest(source.read_bytes(name)), "%s: %s" % (source.label, name))
              for name in ("manifest.json", "index.json") if source.exists(name)}
    for item in source.read_json("manifest.json"):
        image = by_id.get(sha256_digest(source.read_bytes(item["Config"])))
        if image is None:
            return None
        wanted[item["Config"]] = (image.id, "%s config" % image.what)
        wanted.update((path, (layer.stored_digest, layer.what)) for path, layer in zip(item["Layers"], image.layers))
    for name in source.names():
        digest = digest_of_path(name)
        if digest and name not in wanted:
            wanted[name] = (digest, "%s: %s" % (source.label, name))
    regions = {}
    for name, (digest, what) in wanted.items():
        member = source.resolve(name)
        known = regions.get(member.offset)
        if known is not None and known.digest != digest:
            return None
        regions[member.offset] = Region(member.offset, member.size, digest, what)
    return list(regions.values())


def qualified_repo_tags(source):
    """Whether every tag ``manifest.json`` gives names its registry (``docker.io/library/busybox:1``), as ours do."""
    return all(tag == str(parse_reference(tag)) for item in source.read_json("manifest.json")
               for tag in item.get("RepoTags") or [])


def _is_uncompressed(source, path):
    with source.open(path) as stream:
        return detect(stream.read(6)) == NONE


# Writing ------------------------------------------------------------------------------------------------

def write_docker_archive(images, sink, omit_layers=()):
    """Write ``images`` as our docker-archive flavour to the binary writer ``sink``.

    ``manifest.json`` points at the same blobs as the OCI side: each layer as it came (Docker and podman decompress
    a compressed layer as they load it). ``omit_layers`` (DiffIDs or blob digests) are left out: a *thin* archive for
    a target that already holds them. Returns the TarWriter's byte count.
    """
    plan = WritePlan(images, omit_layers)
    tar = TarWriter(sink)
    tar.add_bytes("manifest.json", canonical_json(_manifest_items(plan)) + b"\n")
    repositories = _repositories(plan.images)
    if repositories:
        tar.add_bytes("repositories", canonical_json(repositories) + b"\n")
    write_layout_head(tar, plan, "tag")
    write_layers(tar, plan.layers_to_write())
    tar.close()
    return tar.position


def _manifest_items(plan):
    """One entry per image. RepoTags are fully qualified (Docker familiarises them on load, and podman would
    otherwise apply its short-name rules, ``localhost/...``); a tag goes to the first image that has it, so the
    platforms of one index do not fight over it. LayerSources (as Docker 25+ writes them) give the size of every
    uncompressed layer in the head of the archive."""
    items, given = [], set()
    for image, stored in zip(plan.images, plan.stored):
        tags = [str(ref) for ref in image.references if ref.tag and not ref.digest and str(ref) not in given]
        given.update(tags)
        items.append({
            "Config": blob_path(image.id),
            "RepoTags": tags,
            "Layers": [blob_path(layer.digest) for layer in stored],
            "LayerSources": {layer.diff_id: layer.descriptor() for layer in stored if layer.digest == layer.diff_id},
        })
    return items


def _repositories(images):
    repositories = {}
    for image in images:
        for ref in image.references:
            if ref.tag and image.diff_ids:
                repositories.setdefault(ref.familiar_name(), {}).setdefault(ref.tag, image.diff_ids[-1].split(":", 1)[1])
    return repositories
