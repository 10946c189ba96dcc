#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_store_info
short_description: Ask an engine, registry or OCI layout which images it holds, and which files of a bundle it lacks
version_added: 0.1.0
description:
  - Looks up O(images) in the store and returns what it holds of each (ID, tags, DiffIDs).
  - With O(bundle) (the result of M(airgap.images.image_archive_info) on an OCI layout directory, typically on the
    controller), plans a transfer. Images the store holds with all their tags need nothing. An image held under other tags
    needs no file either (M(airgap.images.image_load) tags it). For the rest, the layer files the store does not hold are
    listed. Copy them into O(staging) and load with M(airgap.images.image_load) O(airgap.images.image_load#module:bundle); the
    images' configs travel in the task arguments and the load completes each image from the layers the store has.
  - Files already in O(staging) that hash to their names are not listed again (a copy cut short resumes where it
    stopped); a partial or corrupt staged file is listed, so it is copied again and never loaded.
  - Never changes anything.
extends_documentation_fragment:
  - airgap.images.engine
  - airgap.images.attributes
  - airgap.images.attributes.actiongroup
  - airgap.images.attributes.in_worker
options:
  images:
    description:
      - Images to look up, by reference or ID.
    type: list
    elements: str
    default: []
  bundle:
    description:
      - The registered result of M(airgap.images.image_archive_info) on the bundle, an OCI layout directory (its C(images),
        each with its C(config) and each layer's C(file) and C(file_size)).
    type: dict
  staging:
    description:
      - The directory on this host the bundle's files are copied into. Files already there are checked against their sha256.
    type: path
attributes:
  check_mode:
    support: full
    details: The module never changes anything.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: airgap.images.image_archive_info
  - module: airgap.images.image_load
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: Is the API image on this host, and under which tags?
  airgap.images.image_store_info:
    images: [registry.example.com/team/api:1.4.2]
  register: held

- name: Which files of the controller's bundle does this host lack?
  airgap.images.image_store_info:
    engine: containerd
    bundle: "{{ bundle_info }}"
    staging: /var/tmp/airgap-staging
  register: plan

- name: Copy just those
  ansible.builtin.copy:
    src: "/srv/bundles/site-a/oci/{{ item.file }}"
    dest: "/var/tmp/airgap-staging/{{ item.file }}"
    mode: "0644"
  loop: "{{ plan.ship }}"

- name: Load them; the rest comes from the layers the engine holds
  airgap.images.image_load:
    engine: containerd
    bundle: "{{ bundle_info }}"
    src: /var/tmp/airgap-staging
"""

RETURN = r"""
images:
  description:
    - What the store holds of each of O(images) - C(id) is what the store calls the image's ID (the config digest,
      or on Docker's containerd image store the manifest's or index's), C(digest) the manifest or index digest where
      the store knows images by it (containerd, Docker's containerd store, a registry, an OCI layout), else null.
  returned: success
  type: list
  elements: dict
  sample: [{name: registry.example.com/team/api:1.4.2, present: true, id: "sha256:4e6a...", digest: "sha256:9b1b...",
            repo_tags: [registry.example.com/team/api:1.4.2], diff_ids: ["sha256:d4f5..."]}]
bundle_images:
  description:
    - Each image of O(bundle) (of a multi-platform image, the host's platform) and what it needs, C(present), C(tag)
      (held under other tags) or C(load); C(digest) is the image's index or manifest digest in the bundle.
  returned: when O(bundle) is given
  type: list
  elements: dict
  sample: [{id: "sha256:4e6a...", digest: "sha256:9b1b...", repo_tags: [registry.example.com/team/api:1.4.2], state: load}]
needs_load:
  description: Whether any image of O(bundle) must be loaded or tagged.
  returned: when O(bundle) is given
  type: bool
  sample: true
ship:
  description: The bundle's layer files to copy into O(staging), paths relative to the bundle directory, bottom layers
    first, each with its size, DiffID and blob digest; empty when the store holds everything it needs. A store that
    holds blobs (containerd, an OCI layout) lacks a layer unless it holds the very blob the bundle's manifest names;
    Docker and Podman lack it unless they hold its DiffID. Of a multi-platform image, only the host's platform counts.
  returned: when O(bundle) is given
  type: list
  elements: dict
  sample: [{file: blobs/sha256/5c1e..., size: 28311040, diff_id: "sha256:77aa...", digest: "sha256:5c1e..."}]
ship_bytes:
  description: Bytes of the files in RV(ship).
  returned: when O(bundle) is given
  type: int
  sample: 73402380
staged:
  description: Files the plan needs that are already in O(staging), intact.
  returned: when O(bundle) is given
  type: list
  elements: dict
  sample: []
skip_bytes:
  description: Bytes of the bundle's layer files this host does not need to receive (layers it holds, images it has, intact staged files).
  returned: when O(bundle) is given
  type: int
  sample: 180355072
bundle_bytes:
  description: Bytes of the bundle's layer files (each layer once).
  returned: when O(bundle) is given
  type: int
  sample: 253757452
naive_bytes:
  description: Bytes a copy of every image in full would send (each image's layers, shared ones again for every image).
  returned: when O(bundle) is given
  type: int
  sample: 507514904
missing_layers:
  description: DiffIDs of the layers this host lacks (to ship, or already staged).
  returned: when O(bundle) is given
  type: list
  elements: str
  sample: [sha256:77aa...]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.module_support import engine_argument_spec
from ansible_collections.airgap.images.plugins.module_utils.loading import store_info


def main():
    module = AnsibleModule(
        argument_spec=engine_argument_spec(
            images=dict(type="list", elements="str", default=[]),
            bundle=dict(type="dict"),
            staging=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    try:
        result = store_info(module.params)
    except ImageError as err:
        module.fail_json(msg=str(err), changed=False)
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
