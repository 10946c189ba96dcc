#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_separate
short_description: Split application images into shared base, lib and per-application tarballs (isula-build compatible)
version_added: 0.1.0
description:
  - Cuts each application image where it stops sharing layers with O(base) (and O(lib), an image built on the base),
    and writes per application three tarballs — C(<name>_<tag>_base_image.tar.gz), C(<name>_<tag>_lib_image.tar.gz),
    C(<name>_<tag>_app_image.tar.gz) — plus a C(manifest) file with their sha256 sums, as isula-build's
    C(ctr-img save -b BASE -l LIB -d DEST) does. A site then receives the base and lib once and only small app tarballs
    afterwards.
  - Applications sharing the base (or lib) share one base (or lib) tarball, named after the first application in sorted
    order, written once.
  - The base (and lib) must be a prefix of every application's layers; otherwise the task fails naming the first
    layer that differs, and writes nothing.
  - Each tarball is itself an image archive (the lib and app ones leave out the layers of the image below them), so
    M(airgap.images.image_archive_info) reads it and M(airgap.images.image_load) loads it, with O(airgap.images.image_load#module:separated).
  - C(manifest) has isula-build's fields (C(app), C(appHash), C(appLayers), C(lib), C(libHash), C(libImageName), C(libLayers),
    C(base), C(baseHash), C(baseImageName), C(baseLayer) — a string when the base has one layer, a list otherwise) and, under
    C(airgap), the image IDs (config digests), the manifest and index digests each image is known by, DiffIDs,
    compression and sizes.
  - Idempotent. When C(manifest) already describes exactly these images and every file hashes to its recorded sum,
    nothing is read from the source and the task reports C(ok). An image is the recorded one when its config digest
    is; where the engine gives no config digest without an export (Docker's containerd image store, Docker 29's
    default), when the manifest or index digest the engine knows it by is one the manifest records for it. A tarball's hash is remembered on the file (the
    extended attribute C(user.airgap-images.sha256), with the size and modification time it is of, where the
    filesystem keeps extended attributes), so a re-run reads only the tarballs that changed since they were written or
    last hashed. Tarballs are written under temporary names and renamed
    when all are complete, the manifest last, so a failure leaves O(dest) as it was.
  - Safe to run twice at once. Tasks writing the same O(dest) take turns on a lock file C(.<dest name>.lock) beside
    O(dest) (kept between runs), held from the check to the last write; the second finds the first's tarballs and
    reports C(ok).
  - A full disk fails the task with the filesystem, the bytes free (and needed, for uncompressed tarballs, checked
    before anything is written) and what to do; no temporary file is left and the previous tarballs stay.
  - Deterministic. The same images give byte-identical tarballs (with the same compressor), so the base tarball's hash
    is the same across runs, builds and sites.
extends_documentation_fragment:
  - airgap.images.engine
  - airgap.images.attributes
  - airgap.images.attributes.actiongroup
  - airgap.images.attributes.in_worker
options:
  images:
    description:
      - The application images, by tag (which becomes the manifest key) or ID.
    type: list
    elements: str
    required: true
  src:
    description:
      - Read the images from this archive instead of from the store the engine options name.
    type: path
  base:
    description:
      - The base image (reference or ID).
    type: str
    required: true
  lib:
    description:
      - The lib image, built on O(base) (reference or ID).
    type: str
  dest:
    description:
      - The directory to write the tarballs and C(manifest) into.
    type: path
    required: true
  rename:
    description:
      - New names for generated tarballs, as isula-build's rename file has them - a list of C({name, rename}) or the path of a
        JSON file holding such a list.
    type: raw
  compression:
    description:
      - Compression of each tarball. V(gzip) (isula-build's) uses isal when installed.
    type: str
    choices: [gzip, zstd, none]
    default: gzip
  compression_level:
    description:
      - Level on the usual scale (gzip 1-9, zstd 1-22).
    type: int
  force:
    description:
      - Write the tarballs even when O(dest) already holds them.
    type: bool
    default: false
  describe:
    description:
      - Also return RV(bundle), the description M(airgap.images.image_archive_info) gives of O(dest), so that a play can
        ship it with M(airgap.images.image_ship) without another task.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Reads metadata only and reports exactly whether a run would write.
  diff_mode:
    support: full
    details: Shows the manifest's files and hashes before and after.
  idempotent:
    support: full
seealso:
  - module: airgap.images.image_load
  - module: airgap.images.image_save
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: Split two applications built on one OS base and one runtime
  airgap.images.image_separate:
    images: [registry.example.com/shop/cart:2.1, registry.example.com/shop/search:5.0]
    base: registry.example.com/base/os:12
    lib: registry.example.com/base/jre:21
    dest: /srv/bundles/shop

- name: Split from an archive made earlier, renaming the shared base tarball
  airgap.images.image_separate:
    src: /srv/bundles/all.tar
    images: [shop/cart:2.1]
    base: base/os:12
    dest: /srv/bundles/cart
    rename:
      - name: cart_2.1_base_image.tar.gz
        rename: os-12.tar.gz
"""

RETURN = r"""
bundle:
  description:
    - O(dest) as M(airgap.images.image_archive_info) describes it, for M(airgap.images.image_ship)
      O(airgap.images.image_ship#module:bundle). Not returned in check mode when O(dest) would change.
  returned: when O(describe=true)
  type: dict
  sample: {path: /srv/bundles/shop, format: separated, manifest: {file: manifest, file_size: 612},
           images: [{key: "registry.example.com/shop/cart:2.1", parts: {app: {file: cart_2.1-app.tar.gz, file_size: 1048576}}}]}
manifest:
  description: The content of O(dest)/manifest.
  returned: success
  type: dict
  sample: {"shop/cart:2.1": {"app": "cart_2.1_app_image.tar.gz", "appHash": "9f2c...", "appLayers": ["c41e..."],
           "base": "cart_2.1_base_image.tar.gz", "baseHash": "77aa...", "baseImageName": "base/os:12", "baseLayer": "d4f5...",
           "lib": "cart_2.1_lib_image.tar.gz", "libHash": "0b9e...", "libImageName": "base/jre:21", "libLayers": ["b6c6..."]}}
files:
  description: Every tarball, with its kind, size, sha256 and whether it was already there.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "cart_2.1_base_image.tar.gz", "kind": "base", "size": 30128440, "sha256": "77aa...", "reused": false}]
bytes_written:
  description: Bytes written to O(dest) by this run.
  returned: success
  type: int
  sample: 41220917
naive_bytes:
  description: Uncompressed bytes a separate full save of each application would have written (null when unknown).
  returned: success
  type: int
  sample: 210763776
msg:
  description: Why the tarballs were written, or that they were already there.
  returned: always
  type: str
  sample: /srv/bundles/shop has no manifest
duration_s:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 4.2
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.operations import archive_info, find_wanted
from ansible_collections.airgap.images.plugins.module_utils.module_support import (
    Stopwatch, clean_up_on_sigterm, engine_argument_spec, store_from_params, writer_lock)
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference, resolve_all
from ansible_collections.airgap.images.plugins.module_utils.formats import separated


def from_images(candidates, selectors):
    """Model images (from an archive or a store export) for each selector, carrying the selected tag."""
    return [found.with_references([parse_reference(tag) for tag in separated.selected_tags(selector, found.repo_tags)])
            for found, selector in zip(resolve_all(selectors, candidates, "the source"), selectors)]


def from_store(store, selectors):
    """Planning metadata from the store alone: no layer is read."""
    return [separated.ImageMeta(item.store_image.config_digest, [item.store_image.digest] if item.store_image.digest else [],
                                item.store_image.diff_ids, separated.selected_tags(item.selector, item.store_image.repo_tags))
            for item in find_wanted(store, selectors)]


def describe(dest, parts, manifest):
    files = [dict(name=part.name, kind=part.kind, size=part.size, sha256=part.sha256, reused=part.reused) for part in parts]
    return dict(manifest=manifest, files=files, dest=dest)


def main():
    module = AnsibleModule(
        argument_spec=engine_argument_spec(
            images=dict(type="list", elements="str", required=True),
            src=dict(type="path"),
            base=dict(type="str", required=True),
            lib=dict(type="str"),
            dest=dict(type="path", required=True),
            rename=dict(type="raw"),
            compression=dict(type="str", default="gzip", choices=["gzip", "zstd", "none"]),
            compression_level=dict(type="int"),
            force=dict(type="bool", default=False),
            describe=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    clean_up_on_sigterm()
    watch = Stopwatch()
    selectors = list(params["images"]) + [params["base"]] + ([params["lib"]] if params["lib"] else [])
    dest, compression = params["dest"], params["compression"]
    result = dict(changed=False, bytes_written=0, naive_bytes=None)
    try:
        archive = open_archive(params["src"]) if params["src"] else None
        store = None if archive else store_from_params(params)
        try:
            metas = from_images(archive.images, selectors) if archive else from_store(store, selectors)
            apps, base, lib = metas[:len(params["images"])], metas[len(params["images"])], metas[-1] if params["lib"] else None
            parts, entries = separated.plan(apps, base, lib, compression, params["rename"])
            if not module.check_mode:
                os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
            with writer_lock(dest, module.check_mode):
                reason = "force is set" if params["force"] else separated.unchanged_reason(dest, parts, entries, base, lib, compression)
                before = separated.read_manifest(dest) if module._diff else None  # pylint: disable=protected-access
                result.update(changed=bool(reason), msg=reason or "%s already holds these separated images" % dest)
                if not reason:
                    result.update(describe(dest, parts, separated.read_manifest(dest)))
                elif module.check_mode:
                    result.update(describe(dest, parts, None))
                else:
                    result.update(write_parts(store, archive, selectors, params, dest, compression))
            if before is not None or module._diff:  # pylint: disable=protected-access
                result["diff"] = dict(before=_manifest_text(before), after=_manifest_text(result.get("manifest")))
            if params["describe"] and not (module.check_mode and reason):
                result["bundle"] = archive_info(dest)
        finally:
            if archive is not None:
                archive.close()
    except ImageError as err:
        module.fail_json(msg=str(err), duration_s=watch.seconds)
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc(), duration_s=watch.seconds)
    result["duration_s"] = watch.seconds
    module.exit_json(**result)


def write_parts(store, archive, selectors, params, dest, compression):
    count = len(params["images"])
    if archive is not None:
        return _write(from_images(archive.images, selectors), count, params, dest, compression)
    with store.open_images(selectors, os.path.dirname(os.path.abspath(dest))) as images:
        return _write(from_images(images, selectors), count, params, dest, compression)


def _write(images, count, params, dest, compression):
    apps, base, lib = images[:count], images[count], images[-1] if params["lib"] else None
    parts, entries = separated.plan(apps, base, lib, compression, params["rename"])
    manifest = separated.write(dest, parts, entries, base, lib, compression, params["compression_level"])
    described = describe(dest, parts, manifest)
    described.update(bytes_written=sum(part.size for part in parts), naive_bytes=separated.naive_bytes(apps))
    return described


def _manifest_text(manifest):
    if not manifest:
        return "\n"
    lines = []
    for key in sorted(manifest):
        entry = manifest[key]
        for kind in ("base", "lib", "app"):
            if entry.get(kind):
                lines.append("%s %s %s %s" % (key, kind, entry[kind], entry.get(kind + "Hash")))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
