# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open any image archive as images; save images as an archive, atomically.

``open_archive`` takes a tar file (plain, gzip, zstd, xz or bzip2) or an OCI
layout directory and gives the images it holds, whichever tool wrote it.
``save_archive`` writes images to a path through a temp file beside it that
is fsynced and renamed, so the old file stays whole until the new one is.
"""

import os

from ..atomic import atomic_file, check_free_space

from ..digest import BackgroundHashingWriter
from ..compression import GZIP, NONE, ZSTD, compressor_name, open_compressing_writer
from .docker_archive import as_is_regions, qualified_repo_tags, read_docker_archive, write_docker_archive
from ..errors import ArchiveError, ImageError
from ..model import absent_layers
from .oci_layout import read_layout, write_oci_archive
from ..platforms import parse_platforms
from ..reference import resolve_all
from .safetar import DirSource, open_source

DOCKER_ARCHIVE = "docker-archive"
OCI_ARCHIVE = "oci-archive"
OCI_DIR = "oci-dir"
FORMATS = (DOCKER_ARCHIVE, OCI_ARCHIVE, OCI_DIR)
COMPRESSIONS = (NONE, GZIP, ZSTD)


class Archive:
    """The images of one archive, what else it holds (``artifacts``: an OCI layout's SBOMs, signatures, charts),
    and what kind of archive it is.

    Layers are read lazily from the archive, so keep it open (``with``) while
    using them.
    """

    def __init__(self, path, platform=None, head_only=False):
        self.path = path
        self.platform = platform
        self.source = open_source(path)
        try:
            self.format, self.images, self.artifacts = _read(self.source, platform, head_only)
        except Exception:
            self.source.close()
            raise
        self.compression = self.source.compression
        self.directory = os.path.isdir(path)

    def close(self):
        self.source.close()

    def select(self, selectors):
        """The images ``selectors`` name, in order; one naming an artifact fails saying what the artifact is."""
        return resolve_all(selectors, self.images, self.path, self.artifacts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def as_is_regions(self, images, with_manifests=False, qualified_tags=False):
        """The ``Region``s to check when ``images`` go to an engine as this archive's own bytes, or None when they
        cannot: a compressed or directory archive, an OCI archive, a platform selection, a subset of the images, a thin
        archive, an ``index.json`` that lists more than these images; with ``with_manifests`` (an engine that keys
        images on the manifest digest) an image without its manifest (the engine would make one of its own); with
        ``qualified_tags`` (podman, which reads ``busybox:1`` as ``localhost/busybox:1``) a tag without its registry."""
        if self.directory or self.compression != NONE or not self.format.startswith(DOCKER_ARCHIVE) or self.platform:
            return None
        if {image.id for image in images} != {image.id for image in self.images} or absent_layers(images):
            return None
        if self.format != DOCKER_ARCHIVE and not _index_lists_only(self.source, images):
            return None
        if with_manifests and any(image.manifest is None for image in self.images):
            return None
        if qualified_tags and not qualified_repo_tags(self.source):
            return None
        return as_is_regions(self.source, images)

    def summary(self):
        return {
            "path": self.path,
            "format": self.format,
            "compression": self.compression,
            "images": [image.summary() for image in self.images],
            "artifacts": [artifact.summary() for artifact in self.artifacts],
        }


def open_archive(path, platform=None, head_only=False):
    """The images of the archive at ``path``.

    ``head_only`` says only metadata will be read (what idempotency checks need):
    our writer puts it all before the first layer.
    """
    return Archive(path, platform, head_only)


def _index_lists_only(source, images):
    listed = source.read_json("index.json").get("manifests") or []
    known = {image.digest for image in images}
    return all(isinstance(entry, dict) and entry.get("digest") in known for entry in listed)


def _read(source, platform, head_only=False):  # pylint: disable=unused-argument
    """Our writer puts every manifest, index and config before the first layer, so even a compressed archive's
    identity is read from its first blocks (``head_only`` needs nothing else)."""
    if source.exists("manifest.json"):
        try:
            images = read_docker_archive(source)
        except ArchiveError:
            _refuse_directory_transport(source)
            raise
        if not (source.exists("index.json") and source.exists("oci-layout")):
            return DOCKER_ARCHIVE, images, []
        return DOCKER_ARCHIVE + "+oci", _with_manifests(images, source, platform), []
    if source.exists("index.json"):
        images, artifacts = read_layout(source, platform)
        return OCI_DIR if isinstance(source, DirSource) else OCI_ARCHIVE, images, artifacts
    raise ArchiveError("%s: not an image archive: it has neither manifest.json (docker save) nor index.json (OCI layout); "
                       "a root filesystem tarball is loaded with `docker import`, not as an image archive" % source.label)


def _with_manifests(images, source, platform):
    """The images ``manifest.json`` lists, each with the manifest (and index) the OCI side of the archive has for its
    config, and the names of both sides; of a multi-platform image, only the selected platforms'."""
    selection = parse_platforms(platform)
    by_config = {}
    for image in read_layout(source, "all")[0]:
        by_config.setdefault(image.id, image)
    chosen, offered = [], {}
    for image in images:
        found = by_config.get(image.id)
        if found is None:
            chosen.append(image)
            continue
        if found.index is not None:
            offered.setdefault(found.index.digest, []).append(found.platform_name)
            if not selection.matches(found.platform):
                continue
        chosen.append(_sized_like(found, image).with_references(image.references + found.references))
    for index_digest, platforms in offered.items():
        kept = [image.platform for image in chosen if image.index_digest == index_digest]
        missing = [str(wanted) for wanted in selection.platforms if not any(wanted.matches(held) for held in kept)]
        if not kept or missing:
            raise ArchiveError("%s: index %s has no manifest for platform %s in the archive (it holds: %s); pass a "
                               "platform the archive holds"
                               % (source.label, index_digest, ", ".join(missing) or selection,
                                  ", ".join(sorted(platforms))))
    return chosen


def _sized_like(found, listed):
    """The layout's image, each layer's uncompressed size taken from ``manifest.json``'s side when only that knows it."""
    for layer, other in zip(found.layers, listed.layers):
        if layer.size is None:
            layer.size = other.size
    return found


def _refuse_directory_transport(source):
    """Say what it is when a ``manifest.json`` docker save did not write is containers/image's ``dir:`` transport: a
    ``version`` file saying so beside one image's manifest (not docker save's list) and blobs named by hex digest."""
    if source.exists("version") and source.read_bytes("version").startswith(b"Directory Transport Version"):
        raise ArchiveError("%s: not an image archive: it is a containers/image `dir:` layout (one image's manifest and "
                           "blobs, as `skopeo copy ... dir:PATH` or `podman save --format docker-dir` write it); make an "
                           "archive of it with `skopeo copy dir:PATH oci-archive:FILE` (or docker-archive:FILE)" % source.label)


class SaveResult:
    def __init__(self, path, size, sha256, compressor):
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.compressor = compressor


def save_archive(images, dest, archive_format=DOCKER_ARCHIVE, compression=NONE, level=None, omit_layers=()):
    """Write ``images`` to ``dest`` atomically; returns a SaveResult (size and sha256 of the file).

    An uncompressed archive whose layer sizes are known is checked against the
    free space first; a disk that fills up on the way fails the same way.
    """
    if archive_format not in (DOCKER_ARCHIVE, OCI_ARCHIVE):
        raise ImageError("save_archive writes %s or %s; use the OCI layout store for %s" % (DOCKER_ARCHIVE, OCI_ARCHIVE, OCI_DIR))
    folder = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(folder):
        raise ImageError("cannot write %s: directory %s does not exist" % (dest, folder))
    needed = minimum_archive_size(images, omit_layers) if compression == NONE else None
    check_free_space(dest, needed)
    with atomic_file(dest, expected_size=needed) as out:
        hashing = BackgroundHashingWriter(out)
        try:
            # uncompressed, the tar writer hands layers that lie as they are in a plain file to the hashing writer,
            # which copies them in the kernel and checks them as it hashes
            writer = hashing if compression == NONE else open_compressing_writer(hashing, compression, level)
            if archive_format == DOCKER_ARCHIVE:
                write_docker_archive(images, writer, omit_layers)
            else:
                write_oci_archive(images, writer, omit_layers)
            if writer is not hashing:
                writer.close()
        finally:
            hashing.close()
    return SaveResult(dest, hashing.count, hashing.digest, compressor_name(compression))


def minimum_archive_size(images, omit_layers=()):
    """Bytes an uncompressed archive of ``images`` takes at least (its layer blobs and configs); None when a size is
    unknown. A layer is counted as it is stored: its blob for an image that keeps its manifest, else uncompressed."""
    sizes = {}
    for image in images:
        sizes[image.id] = len(image.config_bytes)
        for layer in image.layers:
            if layer.diff_id in omit_layers or layer.stored_digest in omit_layers or not layer.available:
                continue
            kept = image.manifest is not None and layer.blob_digest is not None
            sizes[layer.stored_digest if kept else layer.diff_id] = layer.blob_size if kept else layer.size
    return None if None in sizes.values() else sum(sizes.values())
