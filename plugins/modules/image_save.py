#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_save
short_description: Save container images from an engine or registry to an archive, idempotently
version_added: 0.1.0
description:
  - Exports images from Docker, Podman, containerd, a registry or an OCI layout directory and writes them as one
    archive that C(docker load), C(podman load), C(ctr images import) and skopeo all read.
  - Keeps each image's identity. Manifests, indexes and layer blobs are written as they came, so an image has
    the same manifest digest (and a multi-platform image the same index digest) in the archive as at the source,
    and wherever the archive is loaded. Only where the source has no manifest (Docker's classic store) is one made.
  - Idempotent on content. When O(dest) already holds exactly these images (the same manifest digests where the
    store knows images by them, else the same config digests and layers; the same tags) in the asked format and
    compression, nothing is exported and the task reports C(ok). Only the
    head of the archive is read for that, so the check takes well under a second even for archives of many GB.
  - Atomic. The archive is written to a temporary file beside O(dest), synced and renamed; on any failure
    the previous O(dest) is left as it was and no temporary file remains.
  - On the controller the task runs inside Ansible's worker process, without a module payload or a new Python
    (about 0.7 s less per task) when its connection is C(local) and it asks for no C(become), C(async) or
    C(environment), and for no C(ansible_python_interpreter) other than the Python running Ansible. Setting any
    of them makes it run as a module. Both ways write the same bytes and return the same result.
  - Incremental for O(format=oci-dir). Saving into an existing OCI layout writes only the blobs it does not hold
    (a blob under C(blobs/sha256/<hex>) with the right size is kept - never fetched, read or rewritten; from a
    registry, containerd or an OCI layout only the missing blobs are read, from Docker and Podman the export is
    what it is but only the missing blobs are written), each to a temporary file that is synced and renamed,
    then replaces C(index.json) atomically, last. A failure midway leaves the old C(index.json) valid; the blobs
    already written are kept for the next run. The images already in the layout stay unless O(prune) says
    otherwise; a tag the task names moves to the image it now names (the image that had it stays, unnamed).
  - The C(index.json) of a layout lists its entries in one order whatever order the images were saved in -
    entries with a name first, by name (C(io.containerd.image.name)), then unnamed ones (images saved by ID,
    referrers), each by digest - so the same images give the same bytes however the bundle came about.
  - Safe to run twice at once. Tasks writing the same O(dest) take turns on a lock file C(.<dest name>.lock) beside
    O(dest) (kept between runs), held from the idempotency check to the rename; the second finds the first's archive
    and reports C(ok) when it holds the same images.
  - A full disk fails the task with the filesystem, the bytes free (and needed, when known - an uncompressed archive,
    or the largest image a Docker or Podman export needs, is checked before anything is written) and what to do.
  - Deterministic. The same images give a byte-identical archive on any machine (for compressed archives, with the
    same compressor; RV(compressor) says which one wrote it).
extends_documentation_fragment:
  - airgap.images.engine
  - airgap.images.attributes
  - airgap.images.attributes.actiongroup
  - ansible.builtin.files
  - airgap.images.attributes.in_worker
options:
  images:
    description:
      - The images to save, as C(name), C(name:tag), C(name@sha256:...), a full image ID C(sha256:...) or a unique
        short ID. A name without tag means C(:latest).
      - An image named by tag is saved with that tag; an image named by ID is saved without tags, as C(docker save) does.
    type: list
    elements: str
    required: true
  dest:
    description:
      - The archive to write (a directory for O(format=oci-dir)).
    type: path
    required: true
  format:
    description:
      - V(docker-archive) is a C(docker save) archive that is also an OCI layout, readable by every engine.
      - V(oci-archive) is an OCI image layout in a tar, as skopeo and podman write it.
      - V(oci-dir) is an OCI image layout directory.
    type: str
    choices: [docker-archive, oci-archive, oci-dir]
    default: docker-archive
  compression:
    description:
      - Compression of the whole archive. V(gzip) uses isal when installed (about 500 MB/s), zlib otherwise.
        V(zstd) needs the C(zstandard) Python package.
      - Engines read compressed archives directly; zstd needs Docker 23 or newer.
      - For O(format=oci-dir), the layer blobs this task makes are compressed instead (media type C(tar+gzip) or
        C(tar+zstd)), stored under the digest of the compressed bytes with their uncompressed size recorded on the
        descriptor. Layers an image came with stay as they came (see O(convert)).
    type: str
    choices: [none, gzip, zstd]
    default: none
  platforms:
    description:
      - The platforms of multi-platform images to save (V(linux/amd64), V(linux/arm64), ...), or V(all).
      - The image's index is kept whole, so its digest survives even when only some platforms' blobs are saved;
        each host then loads its own platform (M(airgap.images.image_load) picks the host's by default).
      - Defaults to O(platform), else the managed host's platform.
    type: list
    elements: str
  convert:
    description:
      - By default every image keeps the manifest, index and layer blobs it came with, byte for byte, so its
        manifest digest (what Kubernetes pins and cosign signs) is the same in the archive and wherever it is
        loaded. Images whose source has no manifest (Docker's classic store) get one made here, deterministically.
      - With V(true), every image gets a new manifest, its layers uncompressed in an archive or compressed as
        O(compression) says in an O(format=oci-dir). Converted images have new manifest digests (RV(images[].manifest)
        says V(converted)); their config digests (image IDs) stay. Each converted image's C(index.json) entry records
        the digest of the image it was made from (annotation C(org.airgap-images.image.converted-from)), so that a
        re-run from an engine that knows images only by that digest (Docker's containerd image store) finds it saved.
    type: bool
    default: false
  referrers:
    description:
      - Also save what signs or describes each image, as it came - manifests whose C(subject) is the image (OCI
        referrers - signatures, SBOMs, attestations; from a registry through its referrers API, or the fallback tag
        C(sha256-<hex>) when it has none), cosign's C(sha256-<hex>.sig), C(.att) and C(.sbom) objects, and the
        attestation manifests BuildKit lists in an image's index - where the source holds them (registries, OCI
        layouts and archives, C(cosign save) layouts).
      - In an OCI layout, referrers are unnamed C(index.json) entries (as C(oras copy --recursive) writes them) and
        cosign's objects are named by their tag (as C(cosign save) marks them), so oras, crane and cosign read the
        bundle; M(airgap.images.image_verify) checks their signatures.
      - A bundle that holds the images but not what the source now attaches to them (a new signature) is written again.
      - They are never given to an engine as images; M(airgap.images.image_load) passes them on to an OCI layout
        or a registry only.
    type: bool
    default: false
  compression_level:
    description:
      - Level on the usual scale (gzip 1-9, zstd 1-22). Defaults to 1 for gzip and 3 for zstd.
    type: int
  force:
    description:
      - Write the archive even when it already holds these images.
      - For O(format=oci-dir), every blob of these images is read from the source and written again.
    type: bool
    default: false
  prune:
    description:
      - For O(format=oci-dir) - remove from the layout what the task does not ask for. C(index.json) then lists only
        O(images) under the tags asked for, with what is attached to them (kept when O(referrers=false), the
        source's when O(referrers=true)) and the artifacts the layout holds that are attached to no image; the
        blobs nothing in it references any more (the dropped images' manifests, configs and layers, but not those
        a kept image shares) are deleted after C(index.json) is replaced. RV(pruned) lists what was removed.
      - Without it, a bundle only grows - images saved before stay until a run with O(prune=true).
      - Archives (O(format=docker-archive), O(format=oci-archive)) always hold exactly O(images).
    type: bool
    default: false
  describe:
    description:
      - With O(format=oci-dir), also return RV(bundle), the description M(airgap.images.image_archive_info) gives of
        the layout (with O(airgap.images.image_archive_info#module:platform=all)), so that a play can ship it with
        M(airgap.images.image_ship) without another task.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Reads the store's metadata and the head of O(dest) and reports exactly whether a run would write.
      - For O(format=oci-dir) from a registry, containerd or an OCI layout, RV(blobs_written), RV(bytes_written),
        RV(blobs_kept) and RV(pruned) say what a run would write and remove (manifests and configs are read, no
        layer); from Docker and Podman, which would have to export the images, the blob counts are null.
  diff_mode:
    support: full
    details: Shows the images and tags in O(dest) before and after (for O(format=oci-dir), with the images it keeps).
  idempotent:
    support: full
seealso:
  - module: airgap.images.image_load
  - module: airgap.images.image_archive_info
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: Save two images from the local Docker engine into one archive
  airgap.images.image_save:
    images:
      - registry.example.com/team/api:1.4.2
      - registry.example.com/team/worker:1.4.2
    dest: /srv/bundles/apps.tar

- name: Save from containerd's k8s.io namespace, gzip-compressed
  airgap.images.image_save:
    engine: containerd
    images: [docker.io/library/nginx:1.27]
    dest: /srv/bundles/nginx.tar.gz
    compression: gzip

- name: Pull from a registry into an OCI layout directory
  airgap.images.image_save:
    engine: registry
    engine_host: registry.example.com
    username: robot
    password: "{{ registry_token }}"
    images: [team/api:1.4.2]
    dest: /srv/bundles/api-layout
    format: oci-dir

- name: Add this release to the bundle (only the new layers are fetched) and drop the images of older releases
  airgap.images.image_save:
    engine: registry
    engine_host: registry.example.com
    images: [team/api:1.5.0, team/worker:1.5.0]
    dest: /srv/bundles/release-layout
    format: oci-dir
    prune: true
"""

RETURN = r"""
bundle:
  description:
    - The layout as M(airgap.images.image_archive_info) describes it (every platform), for M(airgap.images.image_ship)
      O(airgap.images.image_ship#module:bundle).
    - Not returned in check mode when the layout would change (it is not written then).
  returned: when O(describe=true) and O(format=oci-dir)
  type: dict
  sample: {path: /srv/bundles/site-a/oci, format: oci-dir, compression: none, directory: true, artifacts: [],
           images: [{id: "sha256:4e6a...", repo_tags: [registry.example.com/team/api:1.4.2], config: "eyJh...",
                     layers: [{diff_id: "sha256:9f86...", digest: "sha256:9f86...", file: blobs/sha256/9f86..., file_size: 2048}]}]}
images:
  description: The images in the archive.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: Image ID (sha256 of the image config).
      type: str
      sample: sha256:4e6a6512443b2d1b2ad15cd7d4a2bd2a9c4f7e2e0c2a1d6e49b2c6b5d35b9c2a
    repo_tags:
      description: Tags, in Docker's familiar form.
      type: list
      elements: str
      sample: [registry.example.com/team/api:1.4.2]
    diff_ids:
      description: Layer DiffIDs, bottom first.
      type: list
      elements: str
      sample: [sha256:d4f526ad4f1e2f3b6fa1b9c3f0d7e279ad9b6944d37e273658cdebfbb4f5ecbb3d0]
    size:
      description: Uncompressed size of the layers in bytes (null when it is not known without reading them).
      type: int
      sample: 73400320
    manifest_digest:
      description: Digest of the image's manifest in the archive (null only when reported from an archive without manifests).
      type: str
      sample: sha256:9b1b4d2bd4b4fc0a4b8d8c62e5eeb4f4b7e1fa3b1f0e4ad7b0f8a47cdd0d4f8e
    index_digest:
      description: Digest of the multi-platform index the image is one platform of, kept as it came; null for a single-platform image.
      type: str
      sample: sha256:2f3a8e2a3bc0f0bd8d9b1e7f8a5c6d4e3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e
    converted_from:
      description:
        - For an image a conversion gave a new manifest (O(airgap.images.image_save#module:convert)), the digest (index's, else
          manifest's) of the image it was first made from, as the archive records it; null for any other image.
      type: str
      sample: null
    platform:
      description: The image's platform, C(os/architecture[/variant]).
      type: str
      sample: linux/amd64
    manifest:
      description:
        - V(kept) when the manifest is the source's, byte for byte (same digest as the source); V(made) when the source had
          none (Docker's classic store) and this task made it; V(converted) when O(convert) made a new one.
      type: str
      sample: kept
    layers:
      description: Each layer's DiffID, the digest of the blob it is stored as, and that blob's compression (null for a blob this task made).
      type: list
      elements: dict
      sample: [{diff_id: "sha256:d4f5...", digest: "sha256:a1b2...", compression: gzip}]
dest:
  description: The archive path.
  returned: always
  type: str
  sample: /srv/bundles/apps.tar
size:
  description: Size of the archive file in bytes (null for O(format=oci-dir)).
  returned: success
  type: int
  sample: 73418752
sha256:
  description: sha256 of the archive file, when this run wrote it (null when nothing changed, so that an idempotent run need not read the archive).
  returned: success
  type: str
  sample: sha256:6cd70476a2b03828f7f8a11ea6d50139f33c68c1cac647962a986973e73e0321
compressor:
  description: The library that compressed the archive (V(isal), V(zlib), V(zstandard-<version>)) or V(none); null when nothing was written.
  returned: success
  type: str
  sample: isal
blobs_written:
  description:
    - For O(format=oci-dir), how many blobs (layers, configs, manifests, indexes, attachments) this run wrote (in
      check mode, would write; null there when the source is Docker or Podman). Null for archives.
  returned: success
  type: int
  sample: 3
bytes_written:
  description: For O(format=oci-dir), the bytes of the blobs in RV(blobs_written). Null for archives.
  returned: success
  type: int
  sample: 1573421
blobs_kept:
  description:
    - For O(format=oci-dir), how many blobs the images need were in the layout already, with the right size, and were
      kept as they were. Null for archives.
  returned: success
  type: int
  sample: 7
bytes_kept:
  description: For O(format=oci-dir), the bytes of the blobs in RV(blobs_kept). Null for archives.
  returned: success
  type: int
  sample: 209715200
pruned:
  description:
    - With O(prune=true), the C(index.json) entries removed - each a name (null for an unnamed entry) and the digest
      it pointed at; in check mode, what would be removed (null there when the source is Docker or Podman). Empty
      otherwise; null for archives.
  returned: success
  type: list
  elements: dict
  sample: [{name: "registry.example.com/team/api:1.4.2", digest: "sha256:9b1b4d2bd4b4fc0a4b8d8c62e5eeb4f4b7e1fa3b1f0e4ad7b0f8a47cdd0d4f8e"}]
  contains:
    name:
      description: The entry's name (C(io.containerd.image.name)), null for an unnamed entry.
      type: str
      sample: registry.example.com/team/api:1.4.2
    digest:
      description: The digest of the manifest or index the entry pointed at.
      type: str
      sample: sha256:9b1b4d2bd4b4fc0a4b8d8c62e5eeb4f4b7e1fa3b1f0e4ad7b0f8a47cdd0d4f8e
blobs_deleted:
  description:
    - With O(prune=true), how many blobs nothing in the layout referenced any more and were deleted (would be, in
      check mode). Null for archives.
  returned: success
  type: int
  sample: 2
bytes_deleted:
  description: The bytes of the blobs in RV(blobs_deleted). Null for archives.
  returned: success
  type: int
  sample: 1048576
msg:
  description: Why the archive was (or would be) written, or that it already held these images.
  returned: always
  type: str
  sample: "registry.example.com/team/api:1.4.2: the archive tags it registry.example.com/team/api:1.4.1, wanted registry.example.com/team/api:1.4.2"
duration_s:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 3.41
throughput_mb_s:
  description: Uncompressed image megabytes written per second (null when nothing was written).
  returned: success
  type: float
  sample: 201.3
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.module_support import (
    Stopwatch, clean_up_on_sigterm, describe_images, engine_argument_spec, store_from_params, writer_lock)
from ansible_collections.airgap.images.plugins.module_utils.operations import (
    after_lines, archive_info, archive_lines, find_wanted, run_save, save_reason)


def main():
    module = AnsibleModule(
        argument_spec=engine_argument_spec(
            images=dict(type="list", elements="str", required=True),
            dest=dict(type="path", required=True),
            format=dict(type="str", default="docker-archive", choices=["docker-archive", "oci-archive", "oci-dir"]),
            compression=dict(type="str", default="none", choices=["none", "gzip", "zstd"]),
            compression_level=dict(type="int"),
            platforms=dict(type="list", elements="str"),
            convert=dict(type="bool", default=False),
            referrers=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
            prune=dict(type="bool", default=False),
            describe=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
        add_file_common_args=True,
    )
    params = module.params
    clean_up_on_sigterm()
    watch = Stopwatch()
    result = dict(changed=False, dest=params["dest"], sha256=None, compressor=None, throughput_mb_s=None)
    bundle = params["format"] == "oci-dir"
    counts = ("blobs_written", "bytes_written", "blobs_kept", "bytes_kept", "pruned", "blobs_deleted", "bytes_deleted")
    result.update(dict(blobs_written=0, bytes_written=0, blobs_kept=0, bytes_kept=0, pruned=[], blobs_deleted=0, bytes_deleted=0)
                  if bundle else dict.fromkeys(counts))
    try:
        store = store_from_params(params)
        wanted = find_wanted(store, params["images"], params["referrers"])
        compression = params["compression"]
        if params["format"] == "oci-dir" and not module.check_mode:
            os.makedirs(os.path.dirname(os.path.abspath(params["dest"])), exist_ok=True)
        prune = params["prune"] and bundle
        with writer_lock(params["dest"], module.check_mode):
            reason, existing = save_reason(wanted, params["dest"], params["format"], compression, params["force"],
                                           params["convert"], params["referrers"], prune)
            result.update(changed=bool(reason), msg=reason or "%s already holds these images" % params["dest"],
                          images=describe_images(existing) if not reason else [])
            if module._diff:  # pylint: disable=protected-access
                result["diff"] = dict(before="\n".join(archive_lines(existing)) + "\n",
                                      after="\n".join(after_lines(wanted, existing, bundle and not prune)) + "\n")
            save_args = (store, wanted, params["dest"], params["format"], compression, params["compression_level"],
                         params["convert"], params["referrers"], prune, params["force"], existing)
            if reason and module.check_mode and bundle and getattr(store, "holds_blobs", False):
                _images, planned = run_save(*save_args, dry_run=True)  # manifests and configs are read, no layer
                result.update(planned.report())
            elif reason and module.check_mode and bundle:
                result.update(dict.fromkeys(counts))
            if reason and not module.check_mode:
                images, saved = run_save(*save_args)
                result["images"] = describe_images(images, params["convert"])
                if bundle:
                    result.update(saved.report(), changed=saved.changed or bool(params["force"]))
                    if not saved.changed:
                        result["msg"] = "%s already held these images (%s)" % (params["dest"], reason)
                elif saved is not None:
                    result.update(sha256=saved.sha256, compressor=saved.compressor)
                written = saved.bytes_written if bundle else sum(image["size"] or 0 for image in result["images"])
                result["throughput_mb_s"] = watch.throughput(written)
            if params["describe"] and params["format"] == "oci-dir" and not (module.check_mode and reason):
                result["bundle"] = archive_info(params["dest"], platform="all")
    except ImageError as err:
        module.fail_json(msg=str(err), duration_s=watch.seconds, **{k: v for k, v in result.items() if k != "msg"})
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc(), duration_s=watch.seconds)
    dest = params["dest"]
    if os.path.exists(dest):
        result["size"] = None if os.path.isdir(dest) else os.path.getsize(dest)
        if not module.check_mode:
            file_args = module.load_file_common_arguments(params, path=dest)
            result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    else:
        result["size"] = None
    result["duration_s"] = watch.seconds
    module.exit_json(**result)


if __name__ == "__main__":
    main()
