#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: registry_mirror
short_description: Make the host's engine pull upstream registries' images from the site registry, as their mirror
version_added: 0.3.0
description:
  - Writes the engine's own mirror configuration so that a pull of C(upstream.example/app@sha256:...) by anyone on the
    host (the kubelet, C(crictl), C(ctr), C(podman), C(docker)) is served by the site registry O(registry), which holds
    the image under the same path (C(<registry>/app)) with the same digest, as M(airgap.images.image_load) with
    C(engine=registry) pushes it. No image bytes cross the Ansible connection.
  - For O(engine=containerd), one C(<config_path>/<upstream>/hosts.toml) per upstream (containerd's registry host
    configuration, C(docs/hosts.md)), with C(server) the upstream and a C([host."https://<registry>"]) section with
    C(capabilities = ["pull", "resolve"]), and C(ca) or C(skip_verify) as asked. containerd reads the files on every pull,
    without a restart, but containerd 1.6, 1.7 and 2.x use them for the kubelet's (CRI) pulls only when the CRI
    plugin's registry C(config_path) names O(config_path) (containerd 2.x C([plugins.'io.containerd.cri.v1.images'.registry]),
    1.x C([plugins."io.containerd.grpc.v1.cri".registry])); the module does not edit containerd's C(config.toml) and
    says in RV(notes) when O(containerd_config) does not set it. C(ctr) uses the files with
    C(ctr images pull --hosts-dir <config_path>).
  - For docker.io, containerd's C(server) is C(https://registry-1.docker.io), where containerd itself sends docker.io.
  - For O(engine=podman) and O(engine=cri-o), one containers-registries.conf(5) drop-in O(config_path) with a
    C([[registry]]) table per upstream (C(prefix) and C(location) the upstream) and the site registry as its
    C([[registry.mirror]]) (C(insecure = true) for O(insecure) or O(skip_verify)). podman, skopeo and buildah read it on
    every command; CRI-O on a reload (RV(restart_needed)).
  - For O(engine=docker), C(registry-mirrors) in C(daemon.json) (O(config_path)), merged into the file as it is (every
    other key and mirror kept; written as JSON with sorted keys), and the site registry in C(insecure-registries)
    for O(insecure) or O(skip_verify). B(Docker mirrors only Docker Hub); the other upstreams cannot be mirrored there
    and are listed in RV(unmirrored), with a warning. dockerd reads the change on a reload (C(systemctl reload docker)
    or SIGHUP) or a restart (RV(restart_needed)).
  - For Docker, podman and CRI-O, O(ca_path) is copied to C(<certs_dir>/<registry>/ca.crt), where they look for a
    registry's CA.
  - The engine is not restarted or reloaded; RV(restart_needed) says when it has to be for the change to apply.
  - Every file is written atomically (a temp file beside it, renamed over it), mode C(0644) (an existing C(daemon.json)
    keeps its mode), and only when its content or mode differs.
extends_documentation_fragment:
  - airgap.images.attributes
  - airgap.images.attributes.in_worker
options:
  engine:
    description:
      - The engine whose configuration is written.
    type: str
    choices: [containerd, podman, cri-o, docker]
    required: true
  registry:
    description:
      - The site registry, C(host[:port]), that serves as every upstream's mirror.
    type: str
    required: true
  upstreams:
    description:
      - The upstream registries to mirror, C(host[:port]) each, as image references name them (V(docker.io),
        V(registry.k8s.io), V(quay.io), V(ghcr.io), ...).
    type: list
    elements: str
    required: true
  ca_path:
    description:
      - The CA certificate (a file on the host) that signed O(registry)'s certificate.
      - containerd is pointed at this file (C(ca) in hosts.toml); Docker, podman and CRI-O get a copy in O(certs_dir).
    type: path
  skip_verify:
    description:
      - Talk HTTPS to O(registry) without verifying its certificate. Only on a trusted network.
    type: bool
    default: false
  insecure:
    description:
      - Talk plain HTTP to O(registry). Only on a trusted network.
    type: bool
    default: false
  config_path:
    description:
      - For V(containerd), the registry host configuration directory; default V(/etc/containerd/certs.d).
      - For V(podman) and V(cri-o), the drop-in file; default V(/etc/containers/registries.conf.d/50-airgap-images-mirrors.conf).
      - For V(docker), the daemon configuration file; default V(/etc/docker/daemon.json).
    type: path
  certs_dir:
    description:
      - Where Docker (V(/etc/docker/certs.d), the default for V(docker)) or podman and CRI-O (V(/etc/containers/certs.d))
        look for registry CAs; O(ca_path) is copied to C(<certs_dir>/<registry>/ca.crt). Not used for containerd.
    type: path
  containerd_config:
    description:
      - containerd's configuration file, read (never written) to tell in RV(notes) whether the CRI plugin uses
        O(config_path). An empty string skips the check.
    type: path
    default: /etc/containerd/config.toml
attributes:
  check_mode:
    support: full
    details: Reads the files and reports which would change, writing nothing.
  diff_mode:
    support: full
    details: Shows each file that changes, before and after.
  idempotent:
    support: full
notes:
  - Reading and writing under C(/etc) needs root (C(become)).
seealso:
  - module: airgap.images.image_load
  - module: airgap.images.image_pull
author:
  - airgap.images contributors (@airgap-images)
"""

EXAMPLES = r"""
- name: Make containerd take docker.io, registry.k8s.io and quay.io images from the site registry
  airgap.images.registry_mirror:
    engine: containerd
    registry: registry.site.internal:5000
    ca_path: /etc/pki/site-ca.pem
    upstreams: [docker.io, registry.k8s.io, quay.io]
  become: true

- name: The same for podman, a registry on plain HTTP
  airgap.images.registry_mirror:
    engine: podman
    registry: 10.0.0.5:5000
    insecure: true
    upstreams: [docker.io, registry.k8s.io]
  become: true

- name: Docker (Docker Hub only); reload dockerd when it changed
  airgap.images.registry_mirror:
    engine: docker
    registry: registry.site.internal:5000
    upstreams: [docker.io]
  become: true
  register: mirror
  notify: Reload docker
"""

RETURN = r"""
files:
  description: Each file the configuration is made of, and whether this task changed it (or would, in check mode).
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /etc/containerd/certs.d/registry.k8s.io/hosts.toml
    changed:
      description: Whether its content or mode was (or would be) changed.
      type: bool
      sample: true
  sample: [{path: /etc/containerd/certs.d/docker.io/hosts.toml, changed: false},
           {path: /etc/containerd/certs.d/registry.k8s.io/hosts.toml, changed: true}]
mirror:
  description: The site registry as the engine was told to reach it.
  returned: success
  type: str
  sample: https://registry.site.internal:5000
mirrored:
  description: The upstream registries whose pulls the engine now sends to the site registry.
  returned: success
  type: list
  elements: str
  sample: [docker.io, registry.k8s.io]
unmirrored:
  description:
    - The upstream registries the engine cannot mirror (with Docker, every registry but Docker Hub); pulls that name them
      still go to them.
  returned: success
  type: list
  elements: str
  sample: [registry.k8s.io]
restart_needed:
  description:
    - Whether the engine must be reloaded or restarted to use what changed (Docker, CRI-O). Never true when nothing changed.
  returned: success
  type: bool
  sample: false
notes:
  description: What else the engine needs before it uses the mirrors (containerd's CRI config_path), and what Docker cannot mirror.
  returned: success
  type: list
  elements: str
  sample: ["/etc/containerd/config.toml does not set the CRI registry config_path to /etc/containerd/certs.d: ..."]
msg:
  description: What was done.
  returned: always
  type: str
  sample: "containerd: 2 upstream(s) mirrored by https://registry.site.internal:5000, 1 file(s) changed"
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.mirrors import ENGINES, Site, apply_plan, plan_mirrors


def main():
    module = AnsibleModule(
        argument_spec=dict(
            engine=dict(type="str", required=True, choices=list(ENGINES)),
            registry=dict(type="str", required=True),
            upstreams=dict(type="list", elements="str", required=True),
            ca_path=dict(type="path"),
            skip_verify=dict(type="bool", default=False),
            insecure=dict(type="bool", default=False),
            config_path=dict(type="path"),
            certs_dir=dict(type="path"),
            containerd_config=dict(type="path", default="/etc/containerd/config.toml"),
        ),
        mutually_exclusive=[("insecure", "ca_path"), ("insecure", "skip_verify")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        site = Site(params["registry"], insecure=params["insecure"], skip_verify=params["skip_verify"], ca_path=params["ca_path"])
        plan = plan_mirrors(params["engine"], site, params["upstreams"], config_path=params["config_path"],
                            certs_dir=params["certs_dir"], containerd_config=params["containerd_config"])
        apply_plan(plan, module.check_mode)
    except (ImageError, OSError) as err:
        module.fail_json(msg=str(err))
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg="unexpected error: %s" % err, exception=traceback.format_exc())
    result = dict(changed=plan.changed, files=[change.describe() for change in plan.files], mirror=site.url,
                  mirrored=plan.mirrored, unmirrored=plan.unmirrored, restart_needed=plan.restart_needed, notes=plan.notes)
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = plan.diff()
    if plan.unmirrored:
        module.warn("%s cannot mirror %s: pulls that name them still go upstream" % (params["engine"], ", ".join(plan.unmirrored)))
    changed_files = sum(1 for change in plan.files if change.changed)
    result["msg"] = "%s: %d upstream(s) mirrored by %s, %d file(s) %s%s%s" % (
        params["engine"], len(plan.mirrored), site.url, changed_files, "would change" if module.check_mode else "changed",
        "; not mirrored: " + ", ".join(plan.unmirrored) if plan.unmirrored else "",
        "; restart or reload the engine" if plan.restart_needed else "")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
