# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    """Options every module that talks to an image store shares."""

    DOCUMENTATION = r"""
options:
  engine:
    description:
      - Where images come from or go to.
      - V(docker) is the Docker Engine API, V(podman) the Docker-compatible API of C(podman system service),
        V(containerd) containerd through its C(ctr) client, V(registry) a registry speaking the distribution
        API v2, V(oci) an OCI image layout directory (no daemon needed).
    type: str
    choices: [docker, podman, containerd, registry, oci]
    default: docker
  engine_host:
    description:
      - Address of the store.
      - For V(docker), a C(unix://) socket or C(tcp://host:port) URL; defaults to E(DOCKER_HOST), then
        C(unix:///var/run/docker.sock). E(DOCKER_TLS_VERIFY) and E(DOCKER_CERT_PATH) are honoured as the
        docker CLI honours them.
      - For V(podman), the API socket; defaults to E(CONTAINER_HOST), then C(unix:///run/podman/podman.sock).
      - For V(containerd), the socket; defaults to E(CONTAINERD_ADDRESS), then C(/run/containerd/containerd.sock).
      - For V(registry), C(host[:port]) (required).
      - For V(oci), the layout directory (required; created when loading into it).
    type: str
  containerd_namespace:
    description:
      - The containerd namespace. The default V(k8s.io) is where the kubelet looks for images.
      - Defaults to E(CONTAINERD_NAMESPACE), then V(k8s.io).
    type: str
  platform:
    description:
      - The platform (V(linux/amd64), V(linux/arm64/v8), ...) to pick from multi-platform images.
      - Defaults to the managed host's platform.
    type: str
  username:
    description:
      - Registry user name. Without one, credentials for the registry are taken from C(~/.docker/config.json) when it has them.
    type: str
  password:
    description:
      - Registry password or token.
    type: str
  validate_certs:
    description:
      - Verify the registry's TLS certificate.
    type: bool
    default: true
  ca_path:
    description:
      - A CA certificate file to verify the registry (or, for V(docker), the engine) with.
    type: path
  insecure_registry:
    description:
      - Talk plain HTTP to the registry. Only for registries on a trusted network.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for a connection or an answer. Image transfers themselves have no time limit while bytes flow.
    type: int
    default: 60
requirements:
  - Python 3.9 or newer on the managed host.
  - Nothing else for O(engine=docker), O(engine=podman) and O(engine=registry) - they use C(requests) where it is
    installed and the standard library's C(http.client) and C(ssl) where not.
  - C(ctr) on the managed host for O(engine=containerd).
  - Optional C(isal) (fast gzip) and C(zstandard) (zstd) Python packages.
"""
