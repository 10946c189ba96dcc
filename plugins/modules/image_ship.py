#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_ship
short_description: Ship a controller's bundle to a host - only the blobs its engine lacks - load it, verify it, clean up
version_added: 0.2.0
description:
  - One task per host for planning, shipping and loading a bundle (an OCI layout directory on the controller, or
    separated images, described by M(airgap.images.image_archive_info)). An action plugin runs on the controller.
  - It asks the host's engine which images and layers it holds (M(airgap.images.image_store_info) with O(bundle)). When
    every image is there with all its tags, that is the only call to the host, and the task is C(ok).
  - Where Ansible would pipeline a module (see O(pipelining)), that question is one command on the host without a module
    payload. The host's Python reads a short script on its standard input. The script carries the collection's
    module_utils sources and compiles only the ones the question imports, so the host compiles neither Ansible's
    C(basic) nor the rest of the collection. The Python is the one Ansible would use (C(ansible_python_interpreter) or
    its interpreter discovery), and the script gets the task's C(environment). Elsewhere the module runs as usual.
  - Otherwise it sends the files the host lacks with the connection's own file transfer (C(sftp) or C(scp) over SSH),
    one transfer per file, no checksum round trip per file. Over the C(ssh) connection with the default C(ssh_args)
    (which compress with C(-C)) the transfers use a connection of their own without C(-C) - layers are compressed or
    random data that compression only slows down. A file left shorter by an interrupted run is resumed when what is
    there matches the start of the controller's file (by sha256); otherwise it is sent again. The host checks every
    file against its digest before anything is loaded from it.
  - It then loads the images the host lacks, looks every image up again (each must be there with all its tags), and
    removes the staging directory. Progress (host, files and bytes done of the total) is displayed on the controller
    while files are sent, and at the end one line per host says what was shipped, skipped and loaded (RV(msg)).
  - The lower-level modules (M(airgap.images.image_store_info), M(airgap.images.image_load)) remain for plays that
    compose these steps themselves; the C(airgap.images.rollout) role uses this one.
extends_documentation_fragment:
  - airgap.images.engine
  - airgap.images.signatures
  - airgap.images.attributes
  - airgap.images.attributes.actiongroup
options:
  bundle:
    description:
      - The registered result of M(airgap.images.image_archive_info) on the bundle.
    type: dict
    required: true
  src:
    description:
      - The bundle directory on the controller (the path M(airgap.images.image_archive_info) described).
    type: path
    required: true
  staging:
    description:
      - The directory on the host the files are sent into (created as the connection's user, so that C(become) is not
        needed to write it). Give each inventory host its own when several share a filesystem.
    type: path
    required: true
  cleanup:
    description:
      - Remove O(staging) once every image is loaded and verified. With V(false) the files stay, and a later run that
        needs them sends nothing again.
    type: bool
    default: true
  pipelining:
    description:
      - Run this task's module calls pipelined (each one command on the host, the module sent on its standard input)
        over connections that can, whatever Ansible's C(pipelining) setting says; that setting's default, off, costs
        four more round trips per call (temp directory, transfer, C(chmod), removal).
      - Where C(sudo) is configured with C(requiretty) the call fails pipelined; the task then uses Ansible's setting.
    type: bool
    default: true
attributes:
  action:
    support: full
    description: Runs on the controller as an action plugin, which calls modules on the host and sends files to it.
  check_mode:
    support: full
    details: Asks the host's engine and reports what would be sent and loaded; sends and changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: airgap.images.image_archive_info
  - module: airgap.images.image_store_info
  - module: airgap.images.image_load
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: Describe the bundle on the controller
  airgap.images.image_archive_info:
    path: /srv/bundles/site-a/oci
  delegate_to: localhost
  run_once: true
  register: bundle_info

- name: Ship each host what it lacks and load it
  airgap.images.image_ship:
    bundle: "{{ bundle_info }}"
    src: /srv/bundles/site-a/oci
    staging: "/var/tmp/airgap-images-{{ inventory_hostname }}"
    engine: containerd
  become: true
  register: shipped
"""

RETURN = r"""
shipped_files:
  description: The bundle's files sent to the host in this run (paths relative to the bundle directory).
  returned: success
  type: list
  elements: str
  sample: [blobs/sha256/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08]
shipped_bytes:
  description: Bytes sent over the connection for those files (the rest of a resumed file counts only what was sent).
  returned: success
  type: int
  sample: 31457280
resumed_files:
  description: Files of which only the rest was sent, because the start of them was on the host already.
  returned: success
  type: list
  elements: str
  sample: []
skipped_bytes:
  description: Bytes of the bundle's files the host did not need (layers it holds, images it has, intact staged files).
  returned: success
  type: int
  sample: 398458880
bundle_bytes:
  description: Bytes of the bundle's files (each layer once).
  returned: success
  type: int
  sample: 429916160
naive_bytes:
  description: Bytes a copy of every image in full would be (each image's layers, shared ones counted per image).
  returned: success
  type: int
  sample: 1342177280
images:
  description: Each image of the bundle (of a multi-platform image, the host's platform) and what it needed, C(present), C(tag) or C(load).
  returned: success
  type: list
  elements: dict
  sample: [{id: "sha256:4e6a...", digest: "sha256:9b1b...", repo_tags: [registry.example.com/team/api:1.4.2], key: null, state: load}]
loaded:
  description: IDs of the images loaded into the host's engine (in check mode, those that would be).
  returned: success
  type: list
  elements: str
  sample: [sha256:4e6a6512443b2d1b2ad15cd7d4a2bd2a9c4f7e2e0c2a1d6e49b2c6b5d35b9c2a]
tagged:
  description: Tags added to images the host already had (in check mode, those that would be).
  returned: success
  type: list
  elements: str
  sample: [registry.example.com/team/api:stable]
host_calls:
  description: Calls to the host this task made (module runs and file transfers); 1 when the host needed nothing.
  returned: success
  type: int
  sample: 1
signatures:
  description: With O(signed_by) (or O(sigstore_trust_root)), the check of each image loaded (as M(airgap.images.image_load) returns it).
  returned: when a signature check was asked for and an image was loaded
  type: list
  elements: dict
  sample: [{image: registry.example.com/team/api:1.4.2, digest: "sha256:1104...", verified: true, reason: null, signatures: []}]
msg:
  description: What was done (or, in check mode, would be), as the task also prints it for the host.
  returned: always
  type: str
  sample: shipped 31457280 bytes in 1 file(s), skipped 398458880 of a 429916160-byte bundle; loaded 1 image(s), tagged 0
    (a full copy of every image would be 1342177280 bytes)
duration_s:
  description: Seconds the task took on the controller.
  returned: always
  type: float
  sample: 4.2
"""

import os
import shutil
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.formats import separated
from ansible_collections.airgap.images.plugins.module_utils.module_support import (
    Stopwatch, clean_up_on_sigterm, engine_argument_spec, signature_argument_spec, store_from_params)
from ansible_collections.airgap.images.plugins.module_utils.loading import apply_load, images_sender, plan_load
from ansible_collections.airgap.images.plugins.module_utils.shipping import (
    bundle_images, bundle_images_from, for_platform, is_separated)
from ansible_collections.airgap.images.plugins.module_utils.signatures import (
    SignatureRefusedError, cryptography_needed, refuse_unsigned, signature_policy)


def load_layers_bundle(store, bundle, staging, policy):
    """Load what the host lacks of an OCI layout bundle from the layer files in ``staging``; (loaded, tagged, verdicts)."""
    images = bundle_images_from(bundle, staging)
    verdicts = refuse_unsigned(images, policy) if policy is not None else None
    plan = plan_load(store, images)
    loaded, tagged = apply_load(store, images, plan, images_sender(store), False)
    return loaded, tagged, verdicts


def load_separated_bundle(store, bundle, staging):
    """Load each application the host lacks from its separated tarballs in ``staging``; (loaded, tagged, None)."""
    loaded, tagged = [], []
    needed = plan_load(store, bundle_images(bundle))
    for described in needed.to_load + [image for image, _present, _missing in needed.to_tag]:
        with separated.open_app(staging, described.key) as image:
            plan = plan_load(store, [image])
            done, added = apply_load(store, [image], plan, images_sender(store), False)
        loaded += done
        tagged += added
    return loaded, tagged, None


def main():
    """The host's side of the action: load from the staging directory, verify, clean up (the action plans and sends)."""
    module = AnsibleModule(
        argument_spec=signature_argument_spec(engine_argument_spec(
            bundle=dict(type="dict", required=True),
            src=dict(type="path", required=True),
            staging=dict(type="path", required=True),
            cleanup=dict(type="bool", default=True),
            pipelining=dict(type="bool", default=True),
        )),
        supports_check_mode=True,
    )
    params = module.params
    clean_up_on_sigterm()
    if cryptography_needed(params):
        module.fail_json(msg=missing_required_lib("cryptography", reason="to verify signatures (signed_by)"))
    watch = Stopwatch()
    result = dict(changed=False, loaded=[], tagged=[])
    if module.check_mode:
        module.exit_json(msg="check mode: the action plans and sends nothing", duration_s=watch.seconds, **result)
    try:
        store = store_from_params(params)
        bundle = for_platform(params["bundle"], params["platform"])
        if is_separated(bundle):
            loaded, tagged, verdicts = load_separated_bundle(store, bundle, params["staging"])
        else:
            loaded, tagged, verdicts = load_layers_bundle(store, bundle, params["staging"], signature_policy(params))
        result.update(changed=bool(loaded or tagged), loaded=loaded, tagged=tagged)
        if verdicts is not None:
            result["signatures"] = verdicts
        if params["cleanup"] and os.path.isdir(params["staging"]):
            shutil.rmtree(params["staging"])
    except SignatureRefusedError as err:
        module.fail_json(msg=str(err), signatures=err.verdicts, duration_s=watch.seconds, **result)
    except ImageError as err:
        module.fail_json(msg=str(err), duration_s=watch.seconds, **result)
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc(), duration_s=watch.seconds)
    result["msg"] = "loaded %d image(s), tagged %d" % (len(result["loaded"]), len(result["tagged"]))
    result["duration_s"] = watch.seconds
    module.exit_json(**result)


if __name__ == "__main__":
    main()
