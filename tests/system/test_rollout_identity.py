# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout role keeps each image's identity from a registry to a host, and ships a host only what it lacks.

Upstream images come from registries with gzip layers. Here the four test images are pushed to a registry that way
(made by our core as an OCI layout with gzip layers, pushed by skopeo); each host pulled the base from that registry
beforehand, with its own client (``ctr pull``, ``docker pull``); the controller bundles the same registry images.
A containerd host holds the base's layer as the registry's gzip blob, a Docker classic host by its DiffID: either
way the base's layer file is not shipped, only the lib's and the applications'. Afterwards containerd holds every
image under the registry's manifest digest, and a second run changes nothing.
"""

import json
import os
import shutil

import pytest

from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
from ansible_collections.airgap.images.tests.system.engines import find_generation
from ansible_collections.airgap.images.tests.system.playbooks import task_status
from ansible_collections.airgap.images.tests.system.test_rollout import APPS_V1, BASE, LIB, Fleet

ALL = [BASE, LIB] + APPS_V1
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
HOSTS = {"cd21": "containerd21", "cd16": "containerd16", "dk28": "docker28"}
SHIP_TASK = "airgap.images.rollout : Ship the layers (or separated tarballs) the host lacks and load them"


class RegistryImage:
    """One test image as the registry serves it: its manifest's digest and its layers' blob digests and sizes."""

    def __init__(self, registry, name):
        reference = parse_reference(name)
        status, headers, body = registry.get("/v2/%s/manifests/%s" % (reference.path, reference.tag),
                                             headers={"Accept": MANIFEST_TYPES})
        assert status == 200, (name, status, body[:300])
        self.name = "%s/%s" % (registry.host, name)
        self.digest = headers["Docker-Content-Digest"]
        self.manifest = json.loads(body)
        self.layers = [(layer["digest"], layer["size"]) for layer in self.manifest["layers"]]

    @property
    def config_digest(self):
        return self.manifest["config"]["digest"]


def blob_file(digest):
    return "blobs/sha256/" + digest.split(":", 1)[1]


def push_gzip_images(dockerd, registry, skopeo, work):
    """The test images, from the session's dockerd, into ``registry`` with gzip layers, as upstream images are."""
    layout = os.path.join(work, "gzip-layout")
    with open_store("docker", dockerd.host).open_images(ALL, work) as images:
        named = {image.repo_tags[0]: image for image in images}
        LayoutStore(layout).import_images(
            [named[name].with_references([parse_reference("%s/%s" % (registry.host, name))]) for name in ALL],
            compression="gzip")
    for name in ALL:
        target = "%s/%s" % (registry.host, name)
        skopeo.run("copy", "--dest-tls-verify=false", "oci:%s:%s" % (layout, target), "docker://" + target)
    return {name: RegistryImage(registry, name) for name in ALL}


def start_host(generation, dockerd_factory, containerd_factory):
    if generation.kind == "containerd":
        engine = containerd_factory(generation=generation)
        return engine, {"engine": "containerd", "engine_host": engine.address}
    engine = dockerd_factory(generation=generation)
    return engine, {"engine": "docker", "engine_host": engine.host}


def pull(generation, engine, name):
    """The host's own client pulls ``name`` from the plain-HTTP registry on loopback."""
    if generation.kind == "containerd":
        engine.ctr("images", "pull", "--plain-http", name)
    else:
        engine.cli("pull", name)  # Docker talks plain HTTP to a registry on 127.0.0.0/8 by itself


def containerd_targets(engine):
    """{image name: target digest}, the ``ctr images ls`` columns."""
    rows = [line.split() for line in engine.ctr("images", "ls").stdout.splitlines()[1:] if line.strip()]
    return {row[0]: row[2] for row in rows}


def containerd_blobs(engine):
    """Digests of the blobs in the host's containerd content store."""
    return {line.split()[0] for line in engine.ctr("content", "ls").stdout.splitlines()[1:] if line.strip()}


def docker_ids(engine):
    lines = engine.cli("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split()
    return dict(zip(lines[::2], lines[1::2]))


def staged_files(staging):
    """Paths of the files under ``staging``, relative to it."""
    return sorted(os.path.relpath(os.path.join(root, name), staging).replace(os.sep, "/")
                  for root, _dirs, names in os.walk(staging) for name in names)


@pytest.fixture
def generations_here():
    found = {host: find_generation(name) for host, name in HOSTS.items()}
    missing = ["%s: %s" % (gen.name, gen.missing) for gen in found.values() if gen.missing]
    if missing:
        pytest.skip("cannot run here: " + "; ".join(missing))
    return found


def test_hosts_that_pulled_the_base_from_a_registry_receive_only_the_lib_and_app_layer_blobs(
        collections_path, tmp_path, dockerd, docker_images, registry_factory, skopeo, dockerd_factory,
        containerd_factory, generations_here):
    work = str(tmp_path)
    registry = registry_factory()
    served = push_gzip_images(dockerd, registry, skopeo, work)
    for image in served.values():
        assert {layer["mediaType"] for layer in image.manifest["layers"]} == {GZIP_LAYER}, image.manifest
        assert image.config_digest == docker_images[image.name.split("/", 1)[1]].id
    base_blob = served[BASE].layers[0]
    assert base_blob[0] != docker_images[BASE].diff_ids[0]  # a gzip blob: held by blob digest is not held by DiffID

    hosts, inventory, host_vars = {}, {}, {}
    for host, generation in generations_here.items():
        engine, options = start_host(generation, dockerd_factory, containerd_factory)
        pull(generation, engine, served[BASE].name)
        hosts[host], inventory[host] = engine, options
        host_vars[host] = {"airgap_test_path": generation.path_env()}  # this generation's ctr first
    assert containerd_targets(hosts["cd21"]) == {served[BASE].name: served[BASE].digest}

    fleet = Fleet(collections_path, work, "http://" + registry.host, inventory)
    role_vars = {"rollout_source_engine": "registry", "rollout_images": [served[name].name for name in APPS_V1],
                 "rollout_base": served[BASE].name, "rollout_lib": served[LIB].name}
    play = {"environment": {"PATH": "{{ airgap_test_path }}"}}
    keep_staging = {host: dict(variables, rollout_cleanup="false") for host, variables in host_vars.items()}
    recap, reports, out = fleet.run(APPS_V1, role_vars=role_vars, play_options=play, extra_host_vars=keep_staging)

    # The bundle is the registry's images: its manifests are theirs, byte for byte, and name the same gzip blobs.
    with open(os.path.join(work, "bundle", "oci", "index.json")) as handle:
        entries = json.load(handle)["manifests"]
    bundled = {entry["annotations"]["io.containerd.image.name"]: entry["digest"] for entry in entries}
    assert bundled == {image.name: image.digest for image in served.values()}, bundled

    wanted = {blob_file(digest): size for name in ALL if name != BASE for digest, size in served[name].layers[-1:]}
    bundle_bytes = sum(dict(layer for image in served.values() for layer in image.layers).values())
    figures = {}
    for host, engine in hosts.items():
        report = reports[host]
        assert recap[host]["failed"] == 0 and recap[host]["changed"] > 0, out[-3000:]
        assert task_status(out, SHIP_TASK, host) == "changed"
        assert sorted(report["shipped_files"]) == sorted(wanted), (host, report)
        assert staged_files(os.path.join(work, "staging", host)) == sorted(wanted)  # and nothing else arrived
        assert int(report["shipped_bytes"]) == sum(wanted.values())
        assert int(report["bundle_bytes"]) == bundle_bytes == int(report["shipped_bytes"]) + base_blob[1]
        assert int(report["skipped_bytes"]) == base_blob[1]
        states = {tuple(image["repo_tags"]): image["state"] for image in report["images"]}
        expected_states = {(image.name,): "present" if name == BASE else "load" for name, image in served.items()}
        assert states == expected_states, states
        figures[host] = (int(report["shipped_bytes"]), int(report["bundle_bytes"]))
        shutil.rmtree(os.path.join(work, "staging", host))
    print("bytes shipped / bundle bytes per host:", figures)

    expected_targets = {image.name: image.digest for image in served.values()}
    served_blobs = {digest for image in served.values() for digest, _size in image.layers}
    served_blobs |= {digest for image in served.values() for digest in (image.digest, image.config_digest)}
    for host in ("cd21", "cd16"):
        assert containerd_targets(hosts[host]) == expected_targets, host
        listing = hosts[host].ctr("content", "ls").stdout.splitlines()[1:]
        assert served_blobs <= containerd_blobs(hosts[host]), host
        # No other copy of a layer: no blob of a served DiffID (uncompressed) and none labelled with one (compressed).
        # (In 2 of 6 runs, containerd 2.1 also held a small manifest (907 B) and config (327 B) this test does not
        # expect; not understood yet: see the closing note of the identity issue.)
        served_diff_ids = {diff_id for name in ALL for diff_id in docker_images[name].diff_ids}
        copies = [line for line in listing if line.split()[0] not in served_blobs
                  and (line.split()[0] in served_diff_ids or "containerd.io/uncompressed" in line)]
        assert copies == [], (host, copies)
    expected_ids = {image.name: image.config_digest for image in served.values()}
    assert docker_ids(hosts["dk28"]) == expected_ids

    recap, reports, out = fleet.run(APPS_V1, role_vars=role_vars, play_options=play, extra_host_vars=host_vars)
    for host in hosts:
        assert recap[host]["changed"] == 0 and recap[host]["failed"] == 0, out[-3000:]
        assert task_status(out, SHIP_TASK, host) == "ok"
        assert reports[host]["shipped_files"] == [] and int(reports[host]["shipped_bytes"]) == 0
        assert all(image["state"] == "present" for image in reports[host]["images"]), reports[host]
    for host in ("cd21", "cd16"):
        assert containerd_targets(hosts[host]) == expected_targets, host
    assert docker_ids(hosts["dk28"]) == expected_ids


def test_a_containerd_host_that_holds_a_layer_only_as_gzip_receives_the_bundles_uncompressed_blob(
        collections_path, tmp_path, dockerd, docker_images, registry_factory, skopeo, containerd_factory,
        generations_here):
    work = str(tmp_path)
    served = push_gzip_images(dockerd, registry_factory(), skopeo, work)
    generation = generations_here["cd21"]
    host = containerd_factory(generation=generation)
    pull(generation, host, served[BASE].name)
    fleet = Fleet(collections_path, work, dockerd.host, {"cd21": {"engine": "containerd", "engine_host": host.address}})
    recap, reports, out = fleet.run(APPS_V1, play_options={"environment": {"PATH": generation.path_env()}})
    assert recap["cd21"]["failed"] == 0, out[-3000:]
    # The bundle comes from the session's Docker 20 (no manifests): its layers are uncompressed, blob digest = DiffID.
    every_layer = {blob_file(diff_id) for name in ALL for diff_id in docker_images[name].diff_ids}
    assert sorted(reports["cd21"]["shipped_files"]) == sorted(every_layer)
    for name in ALL:  # every blob the loaded images name is in the content store: each exports whole
        host.export(os.path.join(work, "export.tar"), ["docker.io/" + name])
