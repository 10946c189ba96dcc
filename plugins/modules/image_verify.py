#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_verify
short_description: Check the cosign signatures an archive or bundle carries, offline, before it leaves
version_added: 0.3.0
description:
  - Reads an image archive or OCI layout (a bundle M(airgap.images.image_save) wrote with
    O(airgap.images.image_save#module:referrers=true), a C(cosign save) or C(oras copy) layout) and checks that every
    image (or every one named in O(images)) carries a signature over its manifest or index digest that verifies with
    one of the keys in O(signed_by).
  - Fails naming each refused image and why; otherwise reports each image's signatures. Never changes anything, and
    needs no engine.
  - The same check runs in M(airgap.images.image_load) and M(airgap.images.image_pull) when they are given
    O(signed_by); use this module on the controller to stop an unsigned bundle before it is shipped.
extends_documentation_fragment:
  - airgap.images.signatures
  - airgap.images.attributes
  - airgap.images.attributes.actiongroup
  - airgap.images.attributes.in_worker
options:
  path:
    description: The archive file or OCI layout directory.
    type: path
    required: true
  images:
    description: The images to check (tags, digests or IDs, as in M(airgap.images.image_load)); all when omitted.
    type: list
    elements: str
  platform:
    description:
      - Which platforms of a multi-platform image to check (V(all) by default); a signature over the index digest
        covers every platform.
    type: str
    default: all
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
  - module: airgap.images.image_archive_info
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: Refuse to ship a bundle whose images are not signed by the release key
  airgap.images.image_verify:
    path: /srv/bundles/site-a/oci
    signed_by:
      - /etc/airgap/release-cosign.pub
  delegate_to: localhost
  run_once: true

- name: Keyless signatures from a CI workflow, checked against the Sigstore trust root carried in
  airgap.images.image_verify:
    path: /srv/bundles/site-a/oci
    sigstore_trust_root: /etc/airgap/trusted_root.json
    sigstore_identities:
      - issuer: https://token.actions.githubusercontent.com
        subject: https://github.com/example/app/.github/workflows/release.yml@refs/heads/main
"""

RETURN = r"""
signatures:
  description:
    - With O(signed_by) (or O(sigstore_trust_root)), the check of each image, also when the task fails because an image
      was refused.
  returned: always (also when the task fails because an image was refused)
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
  description: What was checked.
  returned: always
  type: str
  sample: 2 of 2 image(s) carry a signature that verifies
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.module_support import signature_argument_spec
from ansible_collections.airgap.images.plugins.module_utils.signatures import (
    SignatureError, SignatureRefusedError, cryptography_needed, refuse_unsigned, signature_policy)


def main():
    module = AnsibleModule(
        argument_spec=signature_argument_spec(dict(
            path=dict(type="path", required=True),
            images=dict(type="list", elements="str"),
            platform=dict(type="str", default="all"),
        )),
        required_one_of=[("signed_by", "sigstore_trust_root")],
        supports_check_mode=True,
    )
    params = module.params
    if cryptography_needed(params):
        module.fail_json(msg=missing_required_lib("cryptography", reason="to verify signatures"))
    try:
        policy = signature_policy(params)
        with open_archive(params["path"], params["platform"]) as archive:
            images = archive.select(params["images"]) if params["images"] else archive.images
            if not images:
                raise SignatureError("%s holds no image to check" % params["path"])
            verdicts = refuse_unsigned(images, policy, "accepted")
    except SignatureRefusedError as err:
        module.fail_json(msg=str(err), signatures=err.verdicts)
    except ImageError as err:
        module.fail_json(msg=str(err))
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc())
    module.exit_json(changed=False, signatures=verdicts,
                     msg="%d of %d image(s) carry a signature that verifies" % (len(verdicts), len(verdicts)))


if __name__ == "__main__":
    main()
