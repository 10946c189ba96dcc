#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_load
short_description: Load images from an archive into an engine, registry or OCI layout, idempotently
version_added: 0.1.0
description:
  - Reads the archive's metadata (any flavour C(docker save), skopeo, podman, C(ctr export) or this collection write;
    plain, gzip, zstd, xz or bzip2; or an OCI layout directory) and asks the target which of its images it already has.
  - Images present with all their tags are left alone; an image present under other tags is only tagged; the rest is
    streamed into the target. Afterwards every image is looked up again and must be there with all its tags.
  - When the archive holds images that are already present, only the others are sent.
  - Docker and Podman get a plain docker-archive that is wholly to be loaded as the file's own bytes, every file they
    read from it (C(manifest.json), configs, layers, blobs) checked against its digest as it passes; anything else is
    rewritten as it streams (a subset of the images, a thin load, zstd layers for Docker before 23, another flavour).
    A corrupt file fails the task naming it, and the engine receives a body cut short before it, so it loads nothing.
  - Podman 5.8 and newer, on a local socket, is not sent that file but named it (its C(/libpod/local/images/load)), and
    reads it where it lies as C(podman load -i) does. The file is checked whole first, so a corrupt one loads nothing;
    Podman is given a hard link of a random name beside it, so a service that sees another file system finds no file
    rather than another one. Where Podman cannot see or read it, or the directory takes no link, the bytes are sent.
  - A thin archive (one that leaves out layers, see M(airgap.images.image_save)) loads where the target already has
    those layers; elsewhere the task fails before sending anything.
  - Errors the engine streams back during the load are reported verbatim.
extends_documentation_fragment:
  - airgap.images.engine
  - airgap.images.signatures
  - airgap.images.attributes
  - airgap.images.attributes.actiongroup
  - airgap.images.attributes.in_worker
options:
  src:
    description:
      - The archive (C(.tar), C(.tar.gz), C(.tar.zst), ...) or OCI layout directory on the managed host.
      - With O(bundle), the directory that holds the bundle's layer files that were copied to this host (it may hold
        none, or not exist, when the target has every layer).
      - One of O(src) and O(separated) is required.
    type: path
  bundle:
    description:
      - Load the images of a bundle described by M(airgap.images.image_archive_info) on the controller (an OCI layout
        directory there). Their configs come from this description; the layer files from O(src), at the paths the
        description names (C(blobs/sha256/...)). Layers not in O(src) must be held by the target, as
        M(airgap.images.image_store_info) planned.
      - So only the layer files the host lacks need to be copied to it - no index, manifest or config files.
    type: dict
  separated:
    description:
      - Load one application from a directory of separated images (see M(airgap.images.image_separate); isula-build's
        C(ctr-img load -d DIR -b BASE -l LIB -i APP)). The image is re-assembled from its tarballs as one stream.
      - When the target already has the base (or lib) layers, the base (or lib) tarball need not be on the host at all.
    type: dict
    suboptions:
      dir:
        description: The directory holding C(manifest) and the tarballs.
        type: path
        required: true
      app:
        description: The application to load, as the manifest keys it (C(name:tag)).
        type: str
        required: true
      base:
        description: The base tarball, instead of the one the manifest names.
        type: path
      lib:
        description: The lib tarball, instead of the one the manifest names.
        type: path
      verify:
        description:
          - Check every tarball's sha256 against the manifest before anything is loaded. With V(false), the target's own
            DiffID checks still catch corrupt layers.
        type: bool
        default: true
  images:
    description:
      - Load only these images of the archive (by tag or ID). All by default.
    type: list
    elements: str
  force:
    description:
      - Load even the images that are already present.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Reads the archive's metadata and the target's and reports exactly what a run would load or tag.
  diff_mode:
    support: full
    details: Shows the archive's images that are present in the target before and after.
  idempotent:
    support: full
seealso:
  - module: airgap.images.image_save
  - module: airgap.images.image_archive_info
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: Load a bundle into the host's Docker engine
  airgap.images.image_load:
    src: /var/tmp/bundles/apps.tar

- name: Load into containerd where the kubelet sees it
  airgap.images.image_load:
    engine: containerd
    src: /var/tmp/bundles/apps.tar.gz

- name: Load an application from separated images; the base tarball may be absent where the base is loaded
  airgap.images.image_load:
    separated:
      dir: /var/tmp/bundles/shop
      app: registry.example.com/shop/cart:2.1

- name: Load a bundle's images from the layer files copied to this host (see the airgap.images.rollout role)
  airgap.images.image_load:
    bundle: "{{ bundle_info }}"
    src: /var/tmp/airgap-images

- name: Load one image of a bundle into a site registry
  airgap.images.image_load:
    engine: registry
    engine_host: registry.site.internal:5000
    ca_path: /etc/pki/site-ca.pem
    src: /var/tmp/bundles/apps.tar
    images: [registry.example.com/team/api:1.4.2]
"""

RETURN = r"""
images:
  description: The archive's images this task was about.
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
      description: Uncompressed size of the layers in bytes, when known from the archive's metadata.
      type: int
      sample: 73400320
    manifest_digest:
      description: Digest of the image's manifest in the archive.
      type: str
      sample: sha256:9b1b4d2bd4b4fc0a4b8d8c62e5eeb4f4b7e1fa3b1f0e4ad7b0f8a47cdd0d4f8e
    index_digest:
      description: Digest of the multi-platform index the image is one platform of (null for a single-platform image).
      type: str
      sample: null
    converted_from:
      description:
        - For an image a conversion gave a new manifest (O(airgap.images.image_save#module:convert)), the digest (index's, else
          manifest's) of the image it was first made from, as the archive records it; null for any other image.
      type: str
      sample: null
    platform:
      description: The image's platform (of a multi-platform image, the one loaded - the host's unless O(platform) names another).
      type: str
      sample: linux/amd64
    target_digest:
      description:
        - The digest the target knows the image by after the task - its index's or manifest's, as the target's key
          (containerd, Docker's containerd store, a registry, an OCI layout) or among its RepoDigests (Podman) - or
          null where the target keeps no manifest digest (Docker's classic store knows images by config digest and
          drops RepoDigests on load). Not returned in check mode.
      type: str
      sample: sha256:9b1b4d2bd4b4fc0a4b8d8c62e5eeb4f4b7e1fa3b1f0e4ad7b0f8a47cdd0d4f8e
    digest_kept:
      description: Whether RV(images[].target_digest) is the archive's digest for the image (its index's, else its manifest's). Not returned in check mode.
      type: bool
      sample: true
loaded:
  description: IDs of the images sent to the target.
  returned: success
  type: list
  elements: str
  sample: [sha256:4e6a6512443b2d1b2ad15cd7d4a2bd2a9c4f7e2e0c2a1d6e49b2c6b5d35b9c2a]
tagged:
  description: Tags added to images the target already had.
  returned: success
  type: list
  elements: str
  sample: [registry.example.com/team/api:stable]
present:
  description:
    - Images the target already held with all their tags, left alone, with the reason.
    - Formerly C(skipped), a result key Ansible reserves (a non-empty one made the task show as skipped).
  returned: success
  type: list
  elements: dict
  sample: [{id: "sha256:4e6a...", repo_tags: [registry.example.com/team/api:1.4.2], reason: present with all its tags}]
bytes_sent:
  description:
    - Bytes of the layer blobs and image configs sent to the target, each once, as they are stored (a gzip layer counts
      its compressed size); layers a thin archive or a bundle leaves out are not sent and not counted. 0 when nothing was
      loaded. (The archive's framing, a few KB, is not counted; from a compressed archive that records no layer sizes,
      the uncompressed layer bytes.)
  returned: success
  type: int
  sample: 73400320
signatures:
  description:
    - With O(signed_by) (or O(sigstore_trust_root)), the check of each image, also when the task fails because an image
      was refused.
  returned: when a signature check was asked for
  type: list
  elements: dict
  contains:
    image:
      description: The image, by tag or ID.
      type: str
      sample: registry.example.com/team/api:1.4.2
    digest:
      description: Its digest (the index's for a multi-platform image, else the manifest's).
      type: str
      sample: sha256:1104ae0f4efc6c3bc1b7bbd9a2b5f1e1b0c0e2a3d6a6f0e5b4f5f6c7d8e9f0a1
    verified:
      description: Whether at least one signature over that digest verified with a key given.
      type: bool
      sample: true
    reason:
      description: Why the image was refused (null when it passed).
      type: str
      sample: "no signature: the archive carries none for its digest (save it with referrers: true from where it is signed)"
    signatures:
      description:
        - Each signature attached to the image's digests, with C(format) (V(simple-signing) or V(sigstore-bundle)),
          C(digest) (the signature's manifest), C(tag), C(signed_digest) (what its payload names),
          C(docker_reference) (the repository it names, reported only), C(key_id) (cosign's key id, the base64 sha256 of
          the public key), C(key) (which O(signed_by) entry verified it), C(identity) and C(issuer) (keyless),
          C(verified) and C(reason).
      type: list
      elements: dict
      sample: [{format: sigstore-bundle, digest: "sha256:b9e83b2d...", tag: null, signed_digest: "sha256:5337de44...",
                docker_reference: null, key_id: "qZnJeG8y8gGCpXEtpd2dbC2ZBsWI2kkunW2zI93XHmA=", key: /etc/airgap/cosign.pub,
                identity: null, issuer: null, verified: true, reason: null}]
msg:
  description: What was done.
  returned: always
  type: str
  sample: loaded 1 image(s), tagged 0, present 1
duration_s:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 2.3
"""

import contextlib
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import minimum_archive_size, open_archive
from ansible_collections.airgap.images.plugins.module_utils.model import absent_layers
from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.module_support import (
    Stopwatch, clean_up_on_sigterm, describe_images, engine_argument_spec, signature_argument_spec, store_from_params)
from ansible_collections.airgap.images.plugins.module_utils.signatures import (
    SignatureRefusedError, cryptography_needed, refuse_unsigned, signature_policy)
from ansible_collections.airgap.images.plugins.module_utils.operations import load_diff
from ansible_collections.airgap.images.plugins.module_utils.loading import (
    LoadPlan, apply_load, archive_sender, images_sender, kept_digests, plan_load)
from ansible_collections.airgap.images.plugins.module_utils.formats import separated
from ansible_collections.airgap.images.plugins.module_utils.shipping import bundle_images_from, for_platform
from ansible_collections.airgap.images.plugins.module_utils.reference import resolve_all


@contextlib.contextmanager
def open_source(params):
    """(images, sender factory) for an archive file, or for an app re-assembled from separated tarballs."""
    if params["bundle"] is not None:
        yield _selected(params, bundle_images_from(for_platform(params["bundle"], params["platform"]), params["src"])), images_sender
        return
    if params["src"]:
        with open_archive(params["src"], params["platform"]) as archive:
            selected = archive.select(params["images"]) if params["images"] else archive.images  # names artifacts
            yield selected, lambda store: archive_sender(store, archive)
        return
    options = params["separated"]
    with separated.open_app(options["dir"], options["app"], options["base"], options["lib"], options["verify"]) as image:
        yield _selected(params, [image]), images_sender


def _selected(params, images):
    return resolve_all(params["images"], images, "the archive") if params["images"] else images


def _bytes_sent(images):
    """The layer blobs and configs of ``images`` sent, each once; the uncompressed layer bytes where a compressed archive
    records no sizes."""
    size = minimum_archive_size(images, absent_layers(images))
    return size if size is not None else sum(image.size or 0 for image in images)


def add_target_digests(described, known):
    """What each image is known by on the target, beside its digest in the archive."""
    for entry in described:
        entry["target_digest"] = known.get(entry["id"])
        entry["digest_kept"] = entry["target_digest"] is not None and entry["target_digest"] == (entry["index_digest"] or entry["manifest_digest"])


def main():
    module = AnsibleModule(
        argument_spec=signature_argument_spec(engine_argument_spec(
            src=dict(type="path"),
            bundle=dict(type="dict"),
            images=dict(type="list", elements="str"),
            force=dict(type="bool", default=False),
            separated=dict(type="dict", options=dict(
                dir=dict(type="path", required=True),
                app=dict(type="str", required=True),
                base=dict(type="path"),
                lib=dict(type="path"),
                verify=dict(type="bool", default=True),
            )),
        )),
        mutually_exclusive=[("src", "separated"), ("bundle", "separated")],
        required_one_of=[("src", "separated")],
        required_by={"bundle": "src"},
        supports_check_mode=True,
    )
    params = module.params
    clean_up_on_sigterm()
    if cryptography_needed(params):
        module.fail_json(msg=missing_required_lib("cryptography", reason="to verify signatures (signed_by)"))
    watch = Stopwatch()
    result = dict(changed=False, loaded=[], tagged=[], present=[], bytes_sent=0)
    try:
        policy = signature_policy(params)
        store = store_from_params(params)
        with open_source(params) as (images, send):
            if policy is not None:
                result["signatures"] = refuse_unsigned(images, policy)
            plan = LoadPlan() if params["force"] else plan_load(store, images)
            if params["force"]:
                plan.to_load = list(images)
            result.update(changed=plan.changed, images=describe_images(images), present=plan.present)
            if module._diff:  # pylint: disable=protected-access
                result["diff"] = load_diff(images, plan)
            loaded, tagged = apply_load(store, images, plan, send(store), module.check_mode)
            if not module.check_mode:
                add_target_digests(result["images"], kept_digests(store, images))
            sent = [image for image in images if image.id in loaded]
            result.update(loaded=loaded, tagged=tagged,
                          bytes_sent=0 if module.check_mode else _bytes_sent(sent))
    except SignatureRefusedError as err:
        result["signatures"] = err.verdicts
        module.fail_json(msg=str(err), duration_s=watch.seconds, **result)
    except ImageError as err:
        module.fail_json(msg=str(err), duration_s=watch.seconds, **result)
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc(), duration_s=watch.seconds)
    verb = "would load" if module.check_mode else "loaded"
    result["msg"] = "%s %d image(s), tagged %d, present %d" % (verb, len(result["loaded"]), len(result["tagged"]), len(result["present"]))
    result["duration_s"] = watch.seconds
    module.exit_json(**result)


if __name__ == "__main__":
    main()
