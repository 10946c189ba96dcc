# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What image_save and image_archive_info do, without Ansible: plan, then act (loading is in loading.py).

Each ``plan_*`` reads only metadata (the head of an archive, the store's
inspect answers) and says what would change and why; ``run_*`` does it. Check
mode is the plan alone, so it predicts exactly.
"""

import os
import shutil
import tempfile

from .formats.archive import DOCKER_ARCHIVE, OCI_ARCHIVE, OCI_DIR, open_archive, save_archive
from .compression import NONE, SUFFIXES
from .model import with_platforms
from .stores.store import attachment_keys
from .digest import drain, file_sha256
from .errors import ArchiveError, ImageError, ImageNotFoundError
from .reference import parse_image_selector, parse_reference
from .formats.safetar import DirSource
from .signatures import signer_key_id
from .formats import separated
from . import bundles, shipping


# Saving -------------------------------------------------------------------------------------------------

class Wanted:
    """One image to save: what the user asked for, what the store has, and the tags the archive should carry."""

    def __init__(self, selector, store_image):
        self.selector = selector
        self.store_image = store_image
        reference = parse_image_selector(selector).reference
        self.tags = [reference.familiar()] if reference is not None and reference.tag and not reference.digest else []


def find_wanted(store, selectors, referrers=False):
    """The Wanted of each selector; with ``referrers``, a registry also says what is attached to each image."""
    _ask_for_attachments(store, referrers)
    wanted = []
    for selector in selectors:
        found = store.find(selector)
        if found is None:
            raise ImageNotFoundError("image %s not found in %s" % (selector, store))
        wanted.append(Wanted(selector, found))
    return wanted


def _ask_for_attachments(store, referrers):
    """A registry reads what is attached to its images only when asked (it costs requests); other stores have it."""
    if referrers and hasattr(store, "fetch_attachments"):
        store.fetch_attachments = True


def archive_lines(images):
    return sorted("%s %s" % (image.id, ",".join(sorted(image.repo_tags)) or "<untagged>") for image in images)


def after_lines(wanted, existing, keeps_others=False):
    """Diff mode's after: the wanted images with their tags; for a bundle that keeps the others (``keeps_others``),
    those too, less the tags that move to the wanted images."""
    tags = {}
    claimed = {tag for item in wanted for tag in item.tags}
    for image in existing if keeps_others else ():
        tags.setdefault(image.id, set()).update(set(image.repo_tags) - claimed)
    for item in wanted:
        tags.setdefault(_archive_id(item.store_image, existing), set()).update(item.tags)
    return sorted("%s %s" % (image_id, ",".join(sorted(names)) or "<untagged>") for image_id, names in tags.items())


def _archive_id(store_image, existing):
    """The ID (config digest) ``store_image`` has in an archive: the one the store gives, else (Docker's containerd
    store gives only digests) that of the archive image it is, kept or converted, else the store's ID."""
    if store_image.config_digest:
        return store_image.config_digest
    held = next((image for image in existing if store_image.same_content(image) or _made_from(store_image, image)), None)
    return held.id if held is not None else store_image.id


def _made_from(store_image, image):
    """Whether archive ``image`` is ``store_image`` with a manifest made here: the same config digest where the store gives
    one, else (Docker's containerd store gives only the manifest's or index's digest) converted from that digest; and
    the same DiffIDs."""
    if store_image.config_digest:
        same = image.id == store_image.config_digest
    else:
        same = image.converted_from == store_image.digest
    return same and image.diff_ids == store_image.diff_ids


def save_reason(wanted, dest, archive_format, compression, force, convert=False, referrers=False, prune=False):
    """Why ``dest`` must be (re)written, or None when it already holds exactly the wanted images; and what it holds.

    An image the store knows by manifest digest is in the archive when its manifest is (kept as it came, whatever
    its layers' compression); one known by config digest when its config and layers are, its layers compressed as
    asked for an OCI layout directory. With ``convert``, every image is known by config and compressed as asked.

    An OCI layout directory is a bundle images are added to (``bundles``): it may hold other images too, and more
    tags and attachments of these, unless ``prune`` (then exactly these, and no blob that nothing references).
    """
    if force:
        return "force is set", []
    if not os.path.exists(dest):
        return "%s does not exist" % dest, []
    try:
        with open_archive(dest, platform="all", head_only=True) as archive:
            existing = archive.images
            held_format = OCI_DIR if archive.directory else (OCI_ARCHIVE if archive.format == OCI_ARCHIVE else DOCKER_ARCHIVE)
            held_compression = archive.compression
    except ImageError as err:
        return "%s is not a readable image archive (%s)" % (dest, err), []
    if held_format != archive_format:
        return "%s is a %s, %s was asked for" % (dest, held_format, archive_format), existing
    if held_format != OCI_DIR and held_compression != compression:
        return "%s is compressed with %s, %s was asked for" % (dest, held_compression, compression), existing
    layer_compression = compression if held_format == OCI_DIR else NONE
    incremental = held_format == OCI_DIR and not prune
    reason = _content_difference(wanted, existing, layer_compression, convert, referrers and not convert, incremental)
    if reason is None and held_format == OCI_DIR and prune:
        reason = _stray_blobs_reason(dest, wanted, existing, layer_compression, convert)
    return reason, existing


def _stray_blobs_reason(dest, wanted, existing, layer_compression, convert):
    """Under ``prune``, why a layout that holds exactly these images must still be cleaned: blobs nothing references."""
    matched = [image for item in wanted for store_image in getattr(item.store_image, "platform_images", None) or [item.store_image]
               for image in existing if _holds(store_image, image, layer_compression, convert)]
    source = DirSource(dest)
    index = source.read_json("index.json")
    referenced = bundles.reachable_blobs(source, index.get("manifests") or [],
                                         {image.manifest_digest for image in matched},
                                         {image.index_digest for image in matched if image.index_digest})
    stray = bundles.stray_blobs(dest, referenced | bundles.image_blobs(matched))
    if stray:
        return "%s holds %d blobs (%d bytes) that no image in it references" % (dest, len(stray), sum(size for _d, size in stray))
    return None


def _content_difference(wanted, existing, layer_compression, convert, referrers=False, incremental=False):
    """Why ``existing`` is not exactly ``wanted`` (``incremental``: does not hold at least ``wanted``), or None."""
    unmatched = list(existing)
    for item in wanted:
        for store_image in getattr(item.store_image, "platform_images", None) or [item.store_image]:
            match = next((image for image in unmatched if _holds(store_image, image, layer_compression, convert)), None)
            if match is None:
                return "%s is not in the archive, or its content differs" % item.selector
            if not _tags_held(match.repo_tags, item.tags, incremental):
                held = ", ".join(sorted(match.repo_tags)) or "nothing"
                wanted = ", ".join(item.tags) or "nothing"
                return "%s: the archive tags it %s, wanted %s" % (item.selector, held, wanted)
            if referrers and store_image.attachments is not None \
                    and not _attachments_held(attachment_keys(match.referrers), store_image.attachments, incremental):
                return "%s: the source has other signatures or attachments than the archive carries" % item.selector
            unmatched.remove(match)
    if unmatched and not incremental:
        return "the archive also holds %s, which was not asked for" % ", ".join(image.describe() for image in unmatched)
    return None


def _tags_held(held, wanted, incremental):
    return set(wanted) <= set(held) if incremental else sorted(held) == sorted(wanted)


def _attachments_held(held, wanted, incremental):
    return all(key in held for key in wanted) if incremental else held == wanted


def _holds(store_image, image, layer_compression, convert):
    """Whether archive ``image`` is what saving ``store_image`` (a wanted image, or one platform of it) writes: its
    manifest kept, or one we made as asked (``_made_from``)."""
    if convert or store_image.digest is None:
        return _made_from(store_image, image) and layout_compression([image]) == layer_compression
    return store_image.same_content(image)


def run_save(store, wanted, dest, archive_format, compression, level, convert=False, referrers=False, prune=False,
             force=False, held=(), dry_run=False):
    """Export from ``store`` and write ``dest``; returns (images written, SaveResult, or for a directory a BundleResult).

    Images keep the manifests, indexes and layer blobs they came with; with ``convert`` each gets a new manifest
    (layers uncompressed, or for an OCI layout directory compressed as asked). With ``referrers``, the artifacts
    whose subject an image is, and the attestations its index lists, are saved with it. An OCI layout directory is
    added to (``bundles.write_bundle``: only the blobs it lacks are read and written; ``held``, the images it holds,
    lend their compressed layers); ``dry_run`` (an OCI layout only) writes nothing and says what would change."""
    folder = os.path.dirname(os.path.abspath(dest))
    _ask_for_attachments(store, referrers)
    with store.open_images([item.selector for item in wanted], folder) as images:
        images = [_with_tags(platform_image, item) for image, item in zip(_in_request_order(images, wanted), wanted)
                  for platform_image in with_platforms(image, images)]
        if convert:
            images = [image.without_manifest() for image in images]
        elif not referrers:
            images = [image.with_referrers([]) for image in images]
        if archive_format == OCI_DIR:
            if _is_layout(dest):
                return images, bundles.write_bundle(images, dest, compression, level, prune, referrers, held, force, dry_run)
            if dry_run:
                return images, bundles.write_bundle(images, dest, compression, level, dry_run=True, fresh=True)
            return images, _write_layout_dir(images, dest, compression, level)
        return images, save_archive(images, dest, archive_format, compression, level)


def _is_layout(path):
    """Whether ``path`` is an OCI layout directory a bundle can be added to (else it is written anew)."""
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "index.json")):
        return False
    try:
        with open_archive(path, platform="all", head_only=True):
            return True
    except ImageError:
        return False


def _in_request_order(images, wanted):
    ordered = []
    for item in wanted:
        match = next((image for image in images if item.store_image.same_content(image)), None)
        match = match or next((image for image in images if image.id == item.store_image.config_digest), None)
        if match is None:
            raise ArchiveError("%s exported something other than %s" % (item.store_image, item.selector))
        ordered.append(match)
    return ordered


def _with_tags(image, item):
    return image.with_references([parse_reference(tag) for tag in item.tags])


def layout_compression(images):
    """How an OCI layout stores its layers: none, gzip or zstd (by media type), or mixed."""
    kinds = {layer.compression for image in images for layer in image.layers}
    return kinds.pop() if len(kinds) == 1 else (NONE if not kinds else "mixed")


def _write_layout_dir(images, dest, compression=NONE, level=None):
    """An OCI layout directory, built beside ``dest`` and swapped in whole (in the bundle's order); its BundleResult."""
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise ImageError("cannot write %s: directory %s does not exist" % (dest, parent))
    building = tempfile.mkdtemp(prefix="." + os.path.basename(dest) + ".", dir=parent)
    try:
        written = bundles.write_bundle(images, building, compression, level)
        if os.path.isdir(dest):
            retired = dest + ".old-" + os.path.basename(building)
            os.rename(dest, retired)
            os.rename(building, dest)
            shutil.rmtree(retired)
        else:
            os.rename(building, dest)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return written


def default_suffix(archive_format, compression):
    return "" if archive_format == OCI_DIR else ".tar" + SUFFIXES[compression]


# Loading (the plan and the load are in loading.py) ---------------------------------------------------------

def load_diff(images, plan):
    """Diff mode's before and after: the images present before the load, and all of them after."""
    before = [image for image in images if image not in plan.to_load]
    return dict(before="\n".join(archive_lines(before)) + "\n", after="\n".join(archive_lines(images)) + "\n")


# Inspecting ---------------------------------------------------------------------------------------------

def archive_info(path, verify=False, platform=None):
    """Images, tags, layers and config summary of an archive, an OCI layout, or a directory of separated images."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, separated.MANIFEST)):
        return _separated_info(path, verify)
    with open_archive(path, platform) as archive:
        info = {"path": path, "format": archive.format, "compression": archive.compression,
                "directory": archive.directory, "images": [_image_info(image, verify) for image in archive.images],
                "artifacts": [artifact.summary() for artifact in archive.artifacts]}
        return shipping.add_bundle_files(path, info, archive.images) if info["format"] == OCI_DIR else info


def _image_info(image, verify):
    layers = []
    for layer in image.layers:
        entry = {"diff_id": layer.diff_id, "digest": image.layer_blob_digest(layer), "size": layer.size,
                 "blob_size": layer.blob_size, "media_type": layer.media_type, "compression": layer.compression,
                 "present": layer.available}
        if verify and layer.available:
            with layer.open() as stream:
                entry["size"] = drain(stream)
            entry["verified"] = True
        layers.append(entry)
    return {"id": image.id, "repo_tags": sorted(image.repo_tags), "digests": image.digests,
            "manifest_digest": image.manifest_digest, "index_digest": image.index_digest, "converted_from": image.converted_from,
            "manifest_media_type": image.manifest.media_type if image.manifest is not None else None,
            "platform": image.platform_name, "platform_descriptor": image.platform,
            "os": image.os, "architecture": image.architecture, "variant": image.variant,
            "created": image.created, "size": image.size, "layers": layers,
            "referrers": [dict(artifact.summary(), key_id=signer_key_id(artifact)) for artifact in image.referrers]}


def _separated_info(path, verify):
    """Each application of a separated-images directory, re-assembled from its tarballs (verified against the manifest)."""
    manifest = separated.read_manifest(path)
    images, compression = [], None
    for key in sorted(manifest):
        entry = manifest[key]
        files = separated.entry_files(path, entry)
        if verify:
            separated.verify_files(files, entry)
        with separated.SeparatedImage(files, key) as assembled:
            info = _image_info(assembled.image, verify)
        info["key"] = key
        info["files"] = {kind: os.path.basename(file) for kind, file in files.items()}
        info["parts"] = shipping.separated_parts(path, entry)
        images.append(info)
        compression = (entry.get("airgap") or {}).get("compression", compression)
    manifest_path = os.path.join(path, separated.MANIFEST)
    manifest = {"file": separated.MANIFEST, "file_size": os.path.getsize(manifest_path),
                "sha256": file_sha256(manifest_path)}
    return {"path": path, "format": "separated", "compression": compression or "gzip", "directory": True,
            "images": images, "artifacts": [], "manifest": manifest}
