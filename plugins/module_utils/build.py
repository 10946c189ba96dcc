# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make images without an engine: layers from directories or from file lists, and their configs.

Layer tars are deterministic (sorted, mtime 0, root-owned), so the same
files always give the same DiffID.
"""

import io
import os
import stat

from .digest import HashingReader, HashingWriter, drain, sha256_digest
from .errors import ImageError
from .model import Image, Layer
from .formats.oci_layout import canonical_json
from .platforms import host_platform
from .formats.tarwriter import TarWriter

EPOCH = "1970-01-01T00:00:00Z"


def layer_tar(files):
    """The bytes of a layer tar; ``files`` maps archive paths to bytes (a file) or None (a directory)."""
    out = io.BytesIO()
    tar = TarWriter(out)
    for name in sorted(files):
        if files[name] is None:
            tar.add_dir(name)
        else:
            tar.add_bytes(name, files[name])
    tar.close()
    return out.getvalue()


def layer_from_bytes(data, what="layer"):
    """A Layer whose uncompressed tar is ``data`` (small layers: tests and examples)."""
    return Layer(sha256_digest(data), lambda: io.BytesIO(data), size=len(data), what=what)


def write_directory_layer(directory, sink):
    """Stream a deterministic layer tar of ``directory`` into ``sink``; returns (DiffID, size)."""
    hashing = HashingWriter(sink)
    tar = TarWriter(hashing)
    root = os.path.abspath(directory)
    for path in _walk_sorted(root):
        name = os.path.relpath(path, root).replace(os.sep, "/")
        info = os.lstat(path)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            tar.add_dir(name, mode)
        elif stat.S_ISLNK(info.st_mode):
            tar.add_symlink(name, os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            with open(path, "rb") as stream:
                tar.add_stream(name, info.st_size, stream, path, mode)
        else:
            raise ImageError("%s: only files, directories and symlinks can go into a layer" % path)
    tar.close()
    return hashing.digest, hashing.count


def layer_from_file(path, what="layer"):
    """A Layer read from an uncompressed layer tar file (its DiffID computed by reading it once)."""
    with open(path, "rb") as stream:
        reader = HashingReader(stream)
        size = drain(reader)
    return Layer(reader.digest, lambda: open(path, "rb"), size=size, what=what)


def _walk_sorted(root):
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            yield os.path.join(folder, name)


def image_config(diff_ids, platform=None, created=EPOCH, config=None, history=None):
    """Config bytes for an image of ``diff_ids`` (keys in a fixed order, so the ID is reproducible)."""
    platform = platform or host_platform()
    body = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        body["variant"] = platform.variant
    body["created"] = created
    body["config"] = config or {}
    body["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    body["history"] = history or [{"created": created, "created_by": "airgap.images build"} for _diff_id in diff_ids]
    return canonical_json(body)


def build_image(layers, references=(), **config_options):
    """An Image of ``layers`` with a generated config."""
    return Image(image_config([layer.diff_id for layer in layers], **config_options), layers, references)
