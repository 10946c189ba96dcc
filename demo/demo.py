# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""make demo: images built without any engine, stored, saved, read back and checked.

Builds a base, a lib and two application images from directories into the
embedded OCI layout store, saves them as one docker-archive (plain and
gzip), reads both back, verifies every layer, and prints what it saw.
"""

import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), ".build"))

# pylint: disable=wrong-import-position
from ansible_collections.airgap.images.plugins.module_utils.archive import open_archive, save_archive  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_file, write_directory_layer  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.digest import drain  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference  # noqa: E402
from ansible_collections.airgap.images.plugins.module_utils.store_layout import LayoutStore  # noqa: E402


def make_tree(root, files):
    for name, data in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)


def directory_layer(work, name, files):
    tree = os.path.join(work, "trees", name)
    make_tree(tree, files)
    tar_path = os.path.join(work, "layers", name + ".tar")
    os.makedirs(os.path.dirname(tar_path), exist_ok=True)
    with open(tar_path, "wb") as out:
        write_directory_layer(tree, out)
    return layer_from_file(tar_path, "%s layer" % name)


def seeded_bytes(seed, size):
    block = bytes((seed * 31 + i * 7) % 251 for i in range(4096))
    return (block * (size // len(block) + 1))[:size]


def main():
    work = tempfile.mkdtemp(prefix="airgap-demo-")
    try:
        started = time.time()
        base = directory_layer(work, "base", {"etc/os-release": b"ID=airgap-demo\n", "bin/busybox": seeded_bytes(1, 4 << 20)})
        lib = directory_layer(work, "lib", {"usr/lib/libdemo.so": seeded_bytes(2, 8 << 20)})
        app_a = directory_layer(work, "app-a", {"app/a": seeded_bytes(3, 1 << 20)})
        app_b = directory_layer(work, "app-b", {"app/b": seeded_bytes(4, 1 << 20)})
        images = [
            build_image([base, lib, app_a], [parse_reference("demo/app-a:1.0")], config={"Cmd": ["/app/a"]}),
            build_image([base, lib, app_b], [parse_reference("demo/app-b:1.0")], config={"Cmd": ["/app/b"]}),
        ]
        store = LayoutStore(os.path.join(work, "store"))
        store.import_images(images)
        print("built and stored %d images in the embedded OCI store %s" % (len(images), store.root))
        rows = []
        for compression in ("none", "gzip"):
            dest = os.path.join(work, "bundle.tar" + {"none": "", "gzip": ".gz"}[compression])
            result = save_archive(store.images(), dest, compression=compression)
            again = save_archive(store.images(), dest + ".again", compression=compression)
            with open_archive(dest) as archive:
                verified = sum(drain(layer.open()) for image in archive.images for layer in image.layers)
                rows.append((os.path.basename(dest), archive.format, result.size, result.sha256[:19],
                             result.sha256 == again.sha256, len(archive.images), verified))
        print("%-12s %-20s %10s %-20s %-10s %6s %14s" % ("archive", "format", "bytes", "sha256", "identical", "images", "bytes verified"))
        for row in rows:
            print("%-12s %-20s %10d %-20s %-10s %6d %14d" % row)
        for image in store.images():
            print("  %-18s %s  layers=%d" % (", ".join(image.repo_tags), image.id[:19], len(image.layers)))
        print("demo finished in %.1f s" % (time.time() - started))
        if not all(row[4] for row in rows):
            print("demo: FAILED: two saves of the same images differ")
            return 1
        return 0
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
