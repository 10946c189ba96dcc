#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_pull
short_description: Pull images from a site registry into the host's engine, fetching only the layers it lacks
version_added: 0.1.0
description:
  - Reads each of O(images) from the registry at O(registry) (the image keeps its repository path there, so
    C(registry.example.com/team/api:1.4.2) is read from C(<registry>/team/api:1.4.2)) and loads it into the engine the
    engine options name, tagged with the name given in O(images).
  - Idempotent, as M(airgap.images.image_load) - images present with their tags are left alone, an image present under other
    tags is only tagged, and only the layers the engine does not hold are fetched from the registry.
  - Every layer fetched is checked against its digest; every image is looked up again after the load.
  - Needs no daemon-side registry configuration (no C(insecure-registries), no mirrors), so it also works for containerd
    and the OCI layout store.
extends_documentation_fragment:
  - airgap.images.engine
  - airgap.images.signatures
  - airgap.images.attributes
  - airgap.images.attributes.actiongroup
  - airgap.images.attributes.in_worker
options:
  images:
    description:
      - The images to pull, by their full reference.
    type: list
    elements: str
    required: true
  registry:
    description:
      - The registry to pull from, C(host[:port]).
    type: str
    required: true
  registry_username:
    description:
      - User name for O(registry). Without one, credentials are taken from C(~/.docker/config.json) when it has them.
    type: str
  registry_password:
    description:
      - Password or token for O(registry).
    type: str
  registry_ca_path:
    description:
      - CA certificate to verify O(registry) with.
    type: path
  registry_validate_certs:
    description:
      - Verify O(registry)'s TLS certificate.
    type: bool
    default: true
  registry_insecure:
    description:
      - Talk plain HTTP to O(registry). Only for registries on a trusted network.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Reads the manifests and the engine's metadata and reports what a run would load or tag.
  diff_mode:
    support: full
    details: Shows which of the images the engine holds before and after.
  idempotent:
    support: full
seealso:
  - module: airgap.images.image_load
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: Pull the release from the site registry into containerd
  airgap.images.image_pull:
    engine: containerd
    registry: registry.site.internal:5000
    registry_ca_path: /etc/pki/site-ca.pem
    images:
      - registry.example.com/team/api:1.4.2
      - registry.example.com/team/worker:1.4.2
"""

RETURN = r"""
loaded:
  description: IDs of the images loaded into the engine.
  returned: success
  type: list
  elements: str
  sample: [sha256:4e6a6512443b2d1b2ad15cd7d4a2bd2a9c4f7e2e0c2a1d6e49b2c6b5d35b9c2a]
tagged:
  description: Tags added to images the engine already had.
  returned: success
  type: list
  elements: str
  sample: [registry.example.com/team/api:1.4.2]
present:
  description:
    - Images the target already held with all their tags, left alone, with the reason.
    - Formerly C(skipped), a result key Ansible reserves (a non-empty one made the task show as skipped).
  returned: success
  type: list
  elements: dict
  sample: [{id: "sha256:4e6a...", repo_tags: [registry.example.com/team/api:1.4.2], reason: present with all its tags}]
bytes_pulled:
  description: Uncompressed bytes of the layers fetched from the registry (each layer once; held layers are not fetched).
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
  sample: pulled 1 image(s) (73400320 bytes of layers), tagged 0, present 1
duration_s:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 2.3
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.module_support import (
    Stopwatch, clean_up_on_sigterm, engine_argument_spec, signature_argument_spec, store_from_params)
from ansible_collections.airgap.images.plugins.module_utils.signatures import (
    SignatureRefusedError, cryptography_needed, refuse_unsigned, signature_policy)
from ansible_collections.airgap.images.plugins.module_utils.operations import load_diff
from ansible_collections.airgap.images.plugins.module_utils.loading import (
    apply_load, images_sender, new_layer_bytes, plan_load)
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store


def registry_store(params):
    return open_store("registry", params["registry"], platform=params["platform"], username=params["registry_username"],
                      password=params["registry_password"], validate_certs=params["registry_validate_certs"],
                      ca_path=params["registry_ca_path"], timeout=params["timeout"], insecure_http=params["registry_insecure"])


def main():
    module = AnsibleModule(
        argument_spec=signature_argument_spec(engine_argument_spec(
            images=dict(type="list", elements="str", required=True),
            registry=dict(type="str", required=True),
            registry_username=dict(type="str"),
            registry_password=dict(type="str", no_log=True),
            registry_ca_path=dict(type="path"),
            registry_validate_certs=dict(type="bool", default=True),
            registry_insecure=dict(type="bool", default=False),
        )),
        supports_check_mode=True,
    )
    params = module.params
    clean_up_on_sigterm()
    if cryptography_needed(params):
        module.fail_json(msg=missing_required_lib("cryptography", reason="to verify signatures (signed_by)"))
    watch = Stopwatch()
    result = dict(changed=False, loaded=[], tagged=[], present=[], bytes_pulled=0)
    try:
        policy = signature_policy(params)
        target = store_from_params(params)
        source = registry_store(params)
        source.fetch_attachments = policy is not None
        with source.open_images(params["images"]) as images:
            if policy is not None:
                result["signatures"] = refuse_unsigned(images, policy, "pulled")
            plan = plan_load(target, images)
            held = target.held_layers() if plan.to_load else set()
            result.update(changed=plan.changed, present=plan.present, bytes_pulled=new_layer_bytes(plan.to_load, held))
            if module._diff:  # pylint: disable=protected-access
                result["diff"] = load_diff(images, plan)
            result["loaded"], result["tagged"] = apply_load(target, images, plan, images_sender(target, held), module.check_mode)
    except SignatureRefusedError as err:
        result["signatures"] = err.verdicts
        module.fail_json(msg=str(err), duration_s=watch.seconds, **result)
    except ImageError as err:
        module.fail_json(msg=str(err), duration_s=watch.seconds, **result)
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc(), duration_s=watch.seconds)
    verb = "would pull" if module.check_mode else "pulled"
    result["msg"] = "%s %d image(s) (%d bytes of layers), tagged %d, present %d" % (
        verb, len(result["loaded"]), result["bytes_pulled"], len(result["tagged"]), len(result["present"]))
    result["duration_s"] = watch.seconds
    module.exit_json(**result)


if __name__ == "__main__":
    main()
