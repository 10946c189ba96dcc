# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception hierarchy of the image archive core.

Every failure the core can report is an ``ImageError``; callers (modules,
roles, tests) catch that and show ``str(err)``, which always says what was
being read and what to do about it.
"""


class ImageError(Exception):
    """Base of every error raised by airgap.images."""


class InvalidReferenceError(ImageError):
    """An image name, tag, digest or ID that cannot be parsed or resolved."""


class ArchiveError(ImageError):
    """An archive that cannot be read: unknown format, bad JSON, missing member."""


class EntryNotFoundError(ArchiveError):
    """A name that is not a file of the archive (absent, or a directory)."""


class UnsafeArchiveError(ArchiveError):
    """An archive entry that would escape the archive or is not allowed."""


class DigestMismatchError(ArchiveError):
    """Content whose digest differs from the one it was announced with."""


class CompressionError(ArchiveError):
    """A compressed stream that is corrupt or needs a library that is missing."""


class StoreError(ImageError):
    """A store (engine, registry, layout directory) that failed or refused."""


class ImageNotFoundError(StoreError):
    """A reference that names no image in the store or archive."""


class NotAnImageError(ImageNotFoundError):
    """A reference that names an artifact (an SBOM, a signature, a chart) where an image is expected."""
