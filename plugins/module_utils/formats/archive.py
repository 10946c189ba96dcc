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

from ..digest import HashingWriter, sha256_digest
from ..compression import GZIP, NONE, ZSTD, compressor_name, open_compressing_writer
from .docker_archive import read_docker_archive, write_docker_archive
from ..errors import ArchiveError, ImageError
from .oci_layout import build_manifest, digests_by_config, layer_descriptor, read_layout, write_oci_archive
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

    ``head_only`` reads no further into a compressed docker-archive than its
    metadata (which our writer puts first): what idempotency checks need. The
    images then carry the manifest digest our writer gives them instead of the
    digests index.json lists.
    """
    return Archive(path, platform, head_only)


def _read(source, platform, head_only=False):
    if source.exists("manifest.json"):
        try:
            images = read_docker_archive(source)
        except ArchiveError:
            _refuse_directory_transport(source)
            raise
        if head_only and source.compression != NONE:
            return DOCKER_ARCHIVE, [image.with_digests(_our_manifest_digest(image)) for image in images], []
        if not (source.exists("index.json") and source.exists("oci-layout")):
            return DOCKER_ARCHIVE, images, []
        digests = digests_by_config(source, platform)
        return DOCKER_ARCHIVE + "+oci", [image.with_digests(digests.get(image.id, [])) for image in images], []
    if source.exists("index.json"):
        images, artifacts = read_layout(source, platform)
        return OCI_DIR if isinstance(source, DirSource) else OCI_ARCHIVE, images, artifacts
    raise ArchiveError("%s: not an image archive: it has neither manifest.json (docker save) nor index.json (OCI layout); "
                       "a root filesystem tarball is loaded with `docker import`, not as an image archive" % source.label)


def _refuse_directory_transport(source):
    """Say what it is when a ``manifest.json`` docker save did not write is containers/image's ``dir:`` transport: a
    ``version`` file saying so beside one image's manifest (not docker save's list) and blobs named by hex digest."""
    if source.exists("version") and source.read_bytes("version").startswith(b"Directory Transport Version"):
        raise ArchiveError("%s: not an image archive: it is a containers/image `dir:` layout (one image's manifest and "
                           "blobs, as `skopeo copy ... dir:PATH` or `podman save --format docker-dir` write it); make an "
                           "archive of it with `skopeo copy dir:PATH oci-archive:FILE` (or docker-archive:FILE)" % source.label)


def _our_manifest_digest(image):
    sizes = [layer.size for layer in image.layers]
    if None in sizes:
        return []
    return [sha256_digest(build_manifest(image, [layer_descriptor(d, size) for d, size in zip(image.diff_ids, sizes)]))]


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
        hashing = HashingWriter(out)
        writer = open_compressing_writer(hashing, compression, level)
        if archive_format == DOCKER_ARCHIVE:
            write_docker_archive(images, writer, omit_layers)
        else:
            write_oci_archive(images, writer, omit_layers)
        writer.close()
    return SaveResult(dest, hashing.count, hashing.digest, compressor_name(compression))


def minimum_archive_size(images, omit_layers=()):
    """Bytes an uncompressed archive of ``images`` takes at least (its layers and configs); None when a size is unknown."""
    sizes = {}
    for image in images:
        sizes[image.id] = len(image.config_bytes)
        for layer in image.layers:
            if layer.diff_id not in omit_layers and layer.available:
                sizes[layer.diff_id] = layer.size
    return None if None in sizes.values() else sum(sizes.values())
