#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_archive_info
short_description: Describe the images in an image archive or OCI layout, optionally verifying every layer
version_added: 0.1.0
description:
  - Reads any image archive (C(docker save) of any Docker version, skopeo, podman, C(ctr export), oci-archive; plain,
    gzip, zstd, xz or bzip2), OCI layout directory, or directory of separated images (see M(airgap.images.image_separate))
    and returns its images, tags, layers and config summary.
  - Reads only metadata unless O(verify=true), which re-hashes every layer against its DiffID (and every compressed
    blob against its digest) and fails naming the first layer that does not match.
  - Never changes anything.
extends_documentation_fragment:
  - airgap.images.attributes
  - airgap.images.attributes.actiongroup
  - airgap.images.attributes.in_worker
options:
  path:
    description:
      - The archive file, OCI layout directory, or directory of separated images (one holding a C(manifest)).
    type: path
    required: true
  verify:
    description:
      - Read every layer and check it against its DiffID; for separated images, also check every tarball's sha256
        against the manifest.
    type: bool
    default: false
  platform:
    description:
      - The platform to pick from multi-platform OCI indexes (V(linux/amd64), ...), or V(all) for every platform the
        archive holds (what the rollout role describes a bundle with). Defaults to the host's.
    type: str
attributes:
  check_mode:
    support: full
    details: The module never changes anything.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: airgap.images.image_save
  - module: airgap.images.image_load
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: What is in this bundle?
  airgap.images.image_archive_info:
    path: /var/tmp/bundles/apps.tar.gz
  register: bundle

- name: Check a bundle that crossed a USB stick, byte for byte
  airgap.images.image_archive_info:
    path: /media/usb/apps.tar
    verify: true

- name: Describe a bundle directory on the controller, to plan what each host needs
  airgap.images.image_archive_info:
    path: /srv/bundles/site-a/oci
  delegate_to: localhost
  run_once: true
  register: bundle_info
"""

RETURN = r"""
format:
  description: The archive flavour (V(docker-archive), V(docker-archive+oci) for one that is also an OCI layout, V(oci-archive), V(oci-dir),
    V(separated)).
  returned: success
  type: str
  sample: docker-archive+oci
compression:
  description: Compression of the whole archive (V(none), V(gzip), V(zstd), V(xz), V(bzip2)).
  returned: success
  type: str
  sample: gzip
directory:
  description: Whether O(path) is a directory (an OCI layout).
  returned: success
  type: bool
  sample: false
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
    digests:
      description: Manifest (and index) digests the archive records for the image.
      type: list
      elements: str
      sample: [sha256:58ebf4a3c2c583cace6b067f2ed4d43208c0e2a693d95d84c01b6c0a3ef7ee25]
    manifest_digest:
      description:
        - Digest of the image's manifest as the archive stores it (the source's, byte for byte, unless the manifest was
          made for an image whose source had none); null for a C(docker save) archive without an OCI side.
      type: str
      sample: sha256:58ebf4a3c2c583cace6b067f2ed4d43208c0e2a693d95d84c01b6c0a3ef7ee25
    manifest_media_type:
      description: The manifest's media type (OCI or Docker schema 2), null when there is none.
      type: str
      sample: application/vnd.oci.image.manifest.v1+json
    index_digest:
      description: Digest of the multi-platform index the image is one platform of (what a digest-pinned reference names), or null.
      type: str
      sample: sha256:2f3a8e2a3bc0f0bd8d9b1e7f8a5c6d4e3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e
    converted_from:
      description:
        - For an image a conversion gave a new manifest (O(airgap.images.image_save#module:convert)), the digest (index's, else
          manifest's) of the image it was first made from, as the archive records it; null for any other image.
      type: str
      sample: null
    platform:
      description: The image's platform, C(os/architecture[/variant]) (its index entry's, else its config's).
      type: str
      sample: linux/arm64
    platform_descriptor:
      description: The platform object of its index entry, null for a single-platform image.
      type: dict
      sample: {os: linux, architecture: arm64}
    referrers:
      description:
        - Artifacts that travel with the image (M(airgap.images.image_save) O(airgap.images.image_save#module:referrers=true)) -
          manifests whose C(subject) is the image, and attestation manifests its index lists - as in RV(artifacts).
      type: list
      elements: dict
      sample: [{kind: signature, digest: "sha256:b9e83b2d...", artifact_type: application/vnd.dev.sigstore.bundle.v0.3+json,
                subject: "sha256:5337de44...", tag: null, key_id: "qZnJeG8y8gGCpXEtpd2dbC2ZBsWI2kkunW2zI93XHmA="},
               {kind: signature, digest: "sha256:2c1b8f0e...", layer_media_types: [application/vnd.dev.cosign.simplesigning.v1+json],
                subject: "sha256:5337de44...", tag: sha256-5337de44....sig, key_id: null}]
    os:
      description: Operating system from the image config.
      type: str
      sample: linux
    architecture:
      description: CPU architecture from the image config.
      type: str
      sample: amd64
    variant:
      description: CPU variant, when the config has one.
      type: str
      sample: v8
    created:
      description: Creation time from the image config.
      type: str
      sample: "2026-11-23T07:44:17.042876988Z"
    size:
      description: Uncompressed layer bytes, when known.
      type: int
      sample: 73400320
    key:
      description: For separated images, the manifest's key of the image (C(name:tag)).
      type: str
      sample: registry.example.com/shop/cart:2.1
    parts:
      description:
        - For separated images, per tarball (C(app), C(lib), C(base)) its file name, size, the sha256 the manifest records,
          and the DiffIDs of the layers it carries; what M(airgap.images.image_store_info) plans shipping from.
      type: dict
      sample: {"app": {file: cart_2.1_app_image.tar.gz, file_size: 10240, sha256: "9f2c...", diff_ids: ["sha256:c41e..."]}}
    files:
      description: For separated images, the C(app), C(lib) and C(base) tarballs the image is assembled from.
      type: dict
      sample: {"app": "cart_2.1_app_image.tar.gz", "lib": "cart_2.1_lib_image.tar.gz", "base": "cart_2.1_base_image.tar.gz"}
    config:
      description:
        - For an OCI layout directory, the image config, base64-encoded (a few KB), so that M(airgap.images.image_store_info)
          and M(airgap.images.image_load) can plan and load on a host that receives only layer files.
      type: str
      sample: eyJhcmNoaXRlY3R1cmUiOiJhbWQ2NCIsIm9zIjoibGludXgi...
    manifest:
      description:
        - For an OCI layout directory, the image's manifest (C(media_type) and base64 C(data)), so that a host loads the
          image with the same manifest digest.
      type: dict
      sample: {media_type: application/vnd.oci.image.manifest.v1+json, data: "eyJzY2hlbWFWZXJzaW9uIjoyLC..."}
    index:
      description: For an OCI layout directory, the index of a multi-platform image (C(media_type) and base64 C(data)).
      type: dict
      sample: {media_type: application/vnd.oci.image.index.v1+json, data: "eyJzY2hlbWFWZXJzaW9uIjoyLC..."}
    layers:
      description:
        - The layers, bottom first, each with its DiffID, the digest, size (C(blob_size)) and C(compression) of the blob it
          is stored as (the DiffID when stored uncompressed), uncompressed size, media type, and whether the archive holds it.
        - For an OCI layout directory, also C(file) (the blob's path inside the directory) and C(file_size).
      type: list
      elements: dict
      sample: [{diff_id: "sha256:d4f5...", digest: "sha256:5c1e...", size: 2048, blob_size: 611, compression: gzip,
                media_type: application/vnd.oci.image.layer.v1.tar+gzip, present: true, verified: true,
                file: "blobs/sha256/5c1e...", file_size: 611}]
artifacts:
  description:
    - What an OCI layout holds beside images (SBOMs, signatures, attestations, Helm charts), that is manifests whose
      config is not an image config. They are reported, never loaded; naming one where an image is expected fails.
    - Empty for docker-archives and separated images.
  returned: success
  type: list
  elements: dict
  contains:
    kind:
      description:
        - What it is, by its tag, media types and cosign's annotations - V(signature) (cosign's C(.sig) tag, or a
          Sigstore bundle of a cosign signature), V(attestation) (C(.att), DSSE envelopes, other Sigstore bundles),
          V(sbom) (C(.sbom), SPDX or CycloneDX media types) or V(artifact).
        - Whether a signature verifies is M(airgap.images.image_verify)'s to say.
      type: str
      sample: sbom
    tag:
      description: The cosign tag it is attached by (C(sha256-<hex>.sig), C(.att), C(.sbom)), or null for an OCI referrer.
      type: str
      sample: sha256-5337de44f387aa5befd2bd7cb7a407dfc3a5b36e0d68cb3c1a1f990c82a54cce.sig
    key_id:
      description:
        - For a signature or attestation in a Sigstore bundle, the key id it names (cosign's, the base64 sha256 of the
          public key), or V(keyless) when it carries a certificate instead; null when the format names none (cosign's
          C(.sig)) or for other artifacts. Only in RV(images[].referrers).
      type: str
      sample: qZnJeG8y8gGCpXEtpd2dbC2ZBsWI2kkunW2zI93XHmA=
    digest:
      description: The artifact manifest's digest.
      type: str
      sample: sha256:0dc27f36a618e1c8e6a0c8a9bd6f2b6c01e1f0d7d6f4c1b6e36d1d2b2e0a6c11
    digests:
      description: Every digest the artifact is reached by (an index naming it, its manifest).
      type: list
      elements: str
      sample: [sha256:0dc27f36a618e1c8e6a0c8a9bd6f2b6c01e1f0d7d6f4c1b6e36d1d2b2e0a6c11]
    media_type:
      description: The manifest's media type.
      type: str
      sample: application/vnd.oci.image.manifest.v1+json
    artifact_type:
      description: The manifest's C(artifactType), when it has one.
      type: str
      sample: application/spdx+json
    config_media_type:
      description: The media type of the manifest's config.
      type: str
      sample: application/vnd.oci.empty.v1+json
    layer_media_types:
      description: The media types of its layers (blobs).
      type: list
      elements: str
      sample: [application/spdx+json]
    ref_names:
      description: C(org.opencontainers.image.ref.name) annotations naming it in C(index.json).
      type: list
      elements: str
      sample: [sbom]
    references:
      description: Full references naming it (from C(io.containerd.image.name) and ref names), when they parse.
      type: list
      elements: str
      sample: [registry.example.com/team/api:sbom]
    subject:
      description: The digest of the image it is attached to (OCI 1.1 C(subject), or the digest its cosign tag names), or null.
      type: str
      sample: sha256:58ebf4a3c2c583cace6b067f2ed4d43208c0e2a693d95d84c01b6c0a3ef7ee25
manifest:
  description: For a directory of separated images, the C(manifest) file's name, size and sha256.
  returned: when O(path) is a directory of separated images
  type: dict
  sample: {file: manifest, file_size: 1890, sha256: "4b1d..."}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.operations import archive_info


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            verify=dict(type="bool", default=False),
            platform=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    try:
        info = archive_info(module.params["path"], module.params["verify"], module.params["platform"])
    except ImageError as err:
        module.fail_json(msg=str(err))
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc())
    info.pop("path")
    module.exit_json(changed=False, **info)


if __name__ == "__main__":
    main()
