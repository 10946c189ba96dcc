# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small images made with the core itself, for unit tests."""

import io
import os
import tarfile

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference


def sample_images():
    """Two images sharing a base layer; app-b also has a layer of 3 MiB."""
    base = layer_from_bytes(layer_tar({"etc": None, "etc/os-release": b"ID=airgap\n"}), "base layer")
    app_a = layer_from_bytes(layer_tar({"app": None, "app/a.txt": b"a" * 1000}), "app-a layer")
    app_b = layer_from_bytes(layer_tar({"app": None, "app/b.bin": os.urandom(0) + bytes(range(256)) * 12288}), "app-b layer")
    image_a = build_image([base, app_a], [parse_reference("example.com/apps/a:1"), parse_reference("a:latest")])
    image_b = build_image([base, app_b], [parse_reference("localhost:5000/b:2")])
    return image_a, image_b


def tar_bytes(entries):
    """A tar made with tarfile; ``entries`` are TarInfo-ish tuples (name, type, data or linkname)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = payload
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return out.getvalue()


def read_all(layer):
    """A layer's uncompressed bytes (verified against its DiffID on the way)."""
    with layer.open() as stream:
        return stream.read()
