# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout role as users run it: one play, three hosts with real engines (two dockerd, one containerd).

The controller bundles from the session dockerd; each "host" is an inventory entry with
``ansible_connection=local`` whose ``rollout_engine*`` variables point at its own engine (a podman and an OCI
layout host in one more test).
"""

import json
import os
import re
import shlex
import subprocess

import pytest

from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore
from ansible_collections.airgap.images.tests.system.engines import build_test_images
from ansible_collections.airgap.images.tests.system.ansible_runtimes import default_runtime
from ansible_collections.airgap.images.tests.system.playbooks import clean_env, warning_lines

APPS_V1 = ["airgap-test/app-a:1", "airgap-test/app-b:1"]
BASE, LIB = "airgap-test/base:1", "airgap-test/lib:1"
APP_A2 = {"airgap-test/app-a:2": ("airgap-test/lib:1", {"app/a.bin": (900 * 1024, 41)}, ['CMD ["/app/a.bin"]'])}
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class Fleet:
    """An inventory of local "hosts", each with its engine, and a way to run the rollout play on them
    (with ``runtime``'s ansible-playbook and Python, tests/system/ansible_runtimes.py; by default the .venv's)."""

    def __init__(self, collections, work, source_host, hosts, runtime=None):
        self.collections = collections
        self.work = work
        self.source_host = source_host
        self.hosts = hosts  # {name: {"engine": ..., "engine_host": ...}}
        self.runtime = runtime or default_runtime()
        self.runs = 0
        self.stderr = ""  # of the last run
        self.staging = True  # False: the role's default staging directories

    def inventory(self, extra_host_vars=None):
        lines = ["[site]"]
        for name, engine in self.hosts.items():
            host_vars = dict(ansible_connection="local", ansible_python_interpreter=self.runtime.python,
                             rollout_engine=engine["engine"], rollout_engine_host=engine["engine_host"])
            if self.staging:
                host_vars["rollout_staging_dir"] = os.path.join(self.work, "staging", name)
            host_vars.update((extra_host_vars or {}).get(name, {}))
            lines.append(name + " " + " ".join("%s=%s" % (key, shlex.quote(str(value))) for key, value in host_vars.items()))
        path = os.path.join(self.work, "inventory-%d.ini" % self.runs)
        with open(path, "w") as out:
            out.write("\n".join(lines) + "\n")
        return path

    def run(self, images, role_vars=None, play_options=None, extra_host_vars=None, expect_rc=0, limit=None, check=False,
            extra_env=None):
        self.runs += 1
        reports = os.path.join(self.work, "reports-%d" % self.runs)
        os.makedirs(reports)
        variables = dict(rollout_images=images, rollout_base=BASE, rollout_lib=LIB, rollout_source_engine="docker",
                         rollout_source_engine_host=self.source_host, rollout_bundle_dir=os.path.join(self.work, "bundle"))
        variables.update(role_vars or {})
        play = dict({"hosts": "site", "gather_facts": False, "roles": [{"role": "airgap.images.rollout", "vars": variables}]},
                    **(play_options or {}))
        report_play = {"hosts": "site", "gather_facts": False, "tasks": [{
            "ansible.builtin.copy": {"content": "{{ rollout_report | to_json }}", "dest": reports + "/{{ inventory_hostname }}.json",
                                     "mode": "0644"},
            "delegate_to": "localhost", "changed_when": False}]}
        path = os.path.join(self.work, "play-%d.yml" % self.runs)
        with open(path, "w") as out:
            json.dump([play, report_play], out)
        env = clean_env(ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0",
                        **(extra_env or {}))
        command, env = self.runtime.command("ansible-playbook", ["-i", self.inventory(extra_host_vars), path]
                                            + (["--limit", limit] if limit else []) + (["--check"] if check else []), env)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        self.stderr = done.stderr
        if done.returncode != expect_rc:
            raise AssertionError("ansible-playbook exited %d (expected %d):\n%s\n%s"
                                 % (done.returncode, expect_rc, done.stdout[-8000:], done.stderr[-3000:]))
        recap = {host: dict(ok=int(ok), changed=int(changed), unreachable=int(unreachable), failed=int(failed))
                 for host, ok, changed, unreachable, failed in RECAP.findall(done.stdout)}
        found = {}
        for name in self.hosts:
            path = os.path.join(reports, name + ".json")
            if os.path.exists(path):
                with open(path) as handle:
                    found[name] = json.load(handle)
        return recap, found, done.stdout


def held_ids(engine, kind):
    """{tag: image ID} the engine holds, through its own CLI."""
    if kind == "docker":
        lines = engine.cli("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split()
        return dict(zip(lines[::2], lines[1::2]))
    refs = engine.ctr("images", "list").stdout.splitlines()[1:]
    return {line.split()[0].replace("docker.io/", ""): None for line in refs if line.strip()}


def blob_size(bundle, diff_id):
    return os.path.getsize(os.path.join(bundle, "oci", "blobs", "sha256", diff_id.split(":", 1)[1]))


@pytest.fixture
def fleet(collections_path, tmp_path, dockerd, docker_images, dockerd_factory, containerd_factory):
    hosts = {"host1": dockerd_factory(), "host2": dockerd_factory(), "host3": containerd_factory()}
    engines = {name: {"engine": "docker" if name != "host3" else "containerd",
                      "engine_host": engine.host if name != "host3" else engine.address} for name, engine in hosts.items()}
    built = build_test_images(dockerd, str(tmp_path / "build-a2"), APP_A2)
    yield Fleet(collections_path, str(tmp_path), dockerd.host, engines), hosts, dict(docker_images, **built)


def test_fleet_converges_reruns_ship_nothing_and_updates_ship_only_new_layers(fleet, engines):
    fleet, hosts, images = fleet
    bundle = os.path.join(fleet.work, "bundle")
    every_layer = {d for name in [BASE, LIB] + APPS_V1 for d in images[name].diff_ids}

    recap, reports, _out = fleet.run(APPS_V1, role_vars={"rollout_copy_throttle": 1}, play_options={"serial": 2})
    for name, engine in hosts.items():
        assert recap[name]["failed"] == 0 and recap[name]["changed"] > 0, recap
        held = held_ids(engine, fleet.hosts[name]["engine"])
        for image in [BASE, LIB] + APPS_V1:
            assert image in held, (name, image, held)
            if fleet.hosts[name]["engine"] == "docker":
                assert held[image] == images[image].id
        # An empty host receives every layer once, and nothing else (the configs travel in the task arguments).
        assert sorted(reports[name]["shipped_files"]) == sorted("blobs/sha256/" + d.split(":", 1)[1] for d in every_layer)
        assert int(reports[name]["shipped_bytes"]) == sum(blob_size(bundle, d) for d in every_layer)
        assert not os.path.exists(os.path.join(fleet.work, "staging", name))  # cleaned up
    # Each layer once, however many images share it: far below a copy of every image in full.
    assert int(reports["host1"]["shipped_bytes"]) < 0.6 * int(reports["host1"]["naive_bytes"])

    recap, reports, out = fleet.run(APPS_V1)
    for name in hosts:
        assert recap[name]["changed"] == 0 and recap[name]["failed"] == 0, out[-3000:]
        assert int(reports[name]["shipped_bytes"]) == 0 and reports[name]["shipped_files"] == []
        assert all(image["state"] == "present" for image in reports[name]["images"])

    # app-a 2: one new layer on the same lib; exactly that layer's file crosses.  Host1 keeps its staging directory and holds a partial copy of that
    # layer (as an interrupted transfer would leave it): it is detected by its hash, copied again and then loaded.
    new_layer = images["airgap-test/app-a:2"].diff_ids[-1]
    partial = os.path.join(fleet.work, "staging", "host1", "blobs", "sha256", new_layer.split(":", 1)[1])
    os.makedirs(os.path.dirname(partial))
    with open(partial, "wb") as out_file:
        out_file.write(b"\0" * 1000)
    recap, reports, out = fleet.run(["airgap-test/app-a:2", "airgap-test/app-b:1"],
                                    extra_host_vars={"host1": {"rollout_cleanup": "false"}})
    new_layer_file = "blobs/sha256/" + new_layer.split(":", 1)[1]
    for name, engine in hosts.items():
        assert recap[name]["failed"] == 0 and recap[name]["changed"] > 0, out[-3000:]
        assert reports[name]["shipped_files"] == [new_layer_file], reports[name]
        assert int(reports[name]["shipped_bytes"]) == blob_size(bundle, new_layer), reports[name]
        assert "airgap-test/app-a:2" in held_ids(engine, fleet.hosts[name]["engine"])
    assert os.path.getsize(partial) == blob_size(bundle, new_layer)  # re-copied whole on host1, which kept its staging
    assert held_ids(hosts["host1"], "docker")["airgap-test/app-a:2"] == images["airgap-test/app-a:2"].id

    # The containerd host's engine stops: that host fails with a message that says what to do; the others converge.
    # --limit leaves host1 alone.
    engines.stop(hosts["host3"])
    images_v3 = ["airgap-test/app-a:2", "airgap-test/app-b:1", "airgap-test/app-a:1"]
    recap, reports, out = fleet.run(images_v3, expect_rc=2, limit="host2,host3")
    assert set(recap) == {"host2", "host3"} and recap["host3"]["failed"] == 1 and recap["host2"]["failed"] == 0, recap
    assert re.search(r"fatal: \[host3\]: FAILED!.*cannot reach containerd at \S+ .*is containerd running\?", out), out[-3000:]
    assert set(reports) == {"host2"} and all(image["state"] == "present" for image in reports["host2"]["images"])


def test_registry_mode_pushes_once_and_hosts_pull_only_missing_layers(fleet, registry_factory, dockerd):
    fleet, hosts, images = fleet
    bundle = os.path.join(fleet.work, "bundle")
    site_registry = registry_factory()
    role_vars = {"rollout_mode": "registry", "rollout_registry": site_registry.host, "rollout_registry_insecure": True}
    base_archive = os.path.join(fleet.work, "base.tar")
    dockerd.cli("save", "-o", base_archive, BASE)
    hosts["host2"].cli("load", "-i", base_archive)  # host2 holds the base already

    recap, reports, out = fleet.run(APPS_V1, role_vars=role_vars)
    for name, engine in hosts.items():
        assert recap[name]["failed"] == 0, out[-3000:]
        held = held_ids(engine, fleet.hosts[name]["engine"])
        assert all(image in held for image in [BASE, LIB] + APPS_V1), held
    assert sorted(site_registry.catalog()) == ["airgap-test/app-a", "airgap-test/app-b", "airgap-test/base", "airgap-test/lib"]
    every_layer = {d for name in [BASE, LIB] + APPS_V1 for d in images[name].diff_ids}
    all_bytes = sum(blob_size(bundle, d) for d in every_layer)
    assert int(reports["host1"]["shipped_bytes"]) == all_bytes
    assert int(reports["host2"]["shipped_bytes"]) == all_bytes - blob_size(bundle, images[BASE].diff_ids[0])
    assert held_ids(hosts["host1"], "docker")["airgap-test/app-a:1"] == images["airgap-test/app-a:1"].id

    recap, reports, out = fleet.run(APPS_V1, role_vars=role_vars)
    for name in hosts:
        assert recap[name]["changed"] == 0 and recap[name]["failed"] == 0, out[-3000:]
        assert int(reports[name]["shipped_bytes"]) == 0


def test_separated_transport_ships_shared_tarballs_only_to_hosts_that_lack_their_layers(fleet, dockerd):
    fleet, hosts, images = fleet
    bundle = os.path.join(fleet.work, "bundle", "separated")
    base_archive = os.path.join(fleet.work, "base.tar")
    dockerd.cli("save", "-o", base_archive, BASE)
    hosts["host2"].cli("load", "-i", base_archive)  # host2 holds the base already

    recap, reports, out = fleet.run(APPS_V1, role_vars={"rollout_transport": "separated"})
    with open(os.path.join(bundle, "manifest")) as handle:
        manifest = json.load(handle)
    entry = manifest["airgap-test/app-a:1"]
    apps = sorted(manifest[key]["app"] for key in manifest)
    assert sorted(reports["host1"]["shipped_files"]) == sorted(apps + [entry["base"], entry["lib"], "manifest"])
    assert sorted(reports["host2"]["shipped_files"]) == sorted(apps + [entry["lib"], "manifest"])
    assert sorted(reports["host3"]["shipped_files"]) == sorted(apps + [entry["base"], entry["lib"], "manifest"])
    for name, engine in hosts.items():
        assert recap[name]["failed"] == 0, out[-3000:]
        held = held_ids(engine, fleet.hosts[name]["engine"])
        assert all(image in held for image in APPS_V1), held
    assert held_ids(hosts["host2"], "docker")["airgap-test/app-b:1"] == images["airgap-test/app-b:1"].id

    recap, reports, out = fleet.run(APPS_V1, role_vars={"rollout_transport": "separated"})
    for name in hosts:
        assert recap[name]["changed"] == 0 and recap[name]["failed"] == 0, out[-3000:]
        assert reports[name]["shipped_files"] == []


def test_gzip_bundle_ships_compressed_layer_files_that_every_engine_loads(fleet, skopeo):
    fleet, hosts, images = fleet
    bundle = os.path.join(fleet.work, "bundle", "oci")
    recap, reports, out = fleet.run(APPS_V1, role_vars={"rollout_compression": "gzip"})
    with open(os.path.join(bundle, "index.json")) as handle:
        index = json.load(handle)
    manifests = [json.load(open(os.path.join(bundle, "blobs", "sha256", entry["digest"].split(":", 1)[1]))) for entry in index["manifests"]]
    layer_files = {"blobs/sha256/" + layer["digest"].split(":", 1)[1]: layer["size"] for manifest in manifests for layer in manifest["layers"]}
    assert {layer["mediaType"] for manifest in manifests for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    for name, engine in hosts.items():
        assert recap[name]["failed"] == 0, out[-3000:]
        assert sorted(reports[name]["shipped_files"]) == sorted(layer_files)  # compressed blobs, each once
        assert int(reports[name]["shipped_bytes"]) == sum(layer_files.values())
        held = held_ids(engine, fleet.hosts[name]["engine"])
        assert all(image in held for image in [BASE, LIB] + APPS_V1), held
    assert held_ids(hosts["host1"], "docker")["airgap-test/app-a:1"] == images["airgap-test/app-a:1"].id
    # An independent reader agrees the bundle is a valid OCI layout with these images.
    ref = next(entry["annotations"]["org.opencontainers.image.ref.name"] for entry in index["manifests"]
               if entry["annotations"]["io.containerd.image.name"].endswith("airgap-test/app-a:1"))
    assert skopeo.inspect("oci:%s:%s" % (bundle, ref))["Layers"] == [
        layer["digest"] for manifest in manifests if manifest["config"]["digest"] == images["airgap-test/app-a:1"].id
        for layer in manifest["layers"]]

    recap, reports, out = fleet.run(APPS_V1, role_vars={"rollout_compression": "gzip"})
    assert all(recap[name]["changed"] == 0 and int(reports[name]["shipped_bytes"]) == 0 for name in hosts), out[-3000:]


def test_a_podman_host_and_an_oci_host_converge_and_rerun_ok(collections_path, tmp_path, dockerd, docker_images, podman_factory):
    podman = podman_factory()
    store = str(tmp_path / "oci-store")
    engines = {"podman1": {"engine": "podman", "engine_host": "unix://" + podman.service()},
               "oci1": {"engine": "oci", "engine_host": store}}
    fleet = Fleet(collections_path, str(tmp_path), dockerd.host, engines)
    recap, reports, out = fleet.run(APPS_V1)
    assert all(recap[name]["failed"] == 0 for name in engines), out[-3000:]
    wanted = {docker_images[name].id for name in [BASE, LIB] + APPS_V1}
    assert wanted <= {"sha256:" + image_id if not image_id.startswith("sha256:") else image_id for image_id in podman.image_ids()}
    assert {image.id for image in LayoutStore(store).images()} == wanted
    assert reports["podman1"]["shipped_bytes"] == reports["oci1"]["shipped_bytes"] > 0

    recap, reports, out = fleet.run(APPS_V1)
    assert all(recap[name]["changed"] == 0 and int(reports[name]["shipped_bytes"]) == 0 for name in engines), out[-3000:]


def test_an_oci_host_and_a_docker_host_converge_and_rerun_ok_on_each_ansible(ansible_runtime, tmp_path, dockerd, docker_images, dockerd_factory):
    """The role on the oldest supported ansible-core (2.16), .venv's 2.19 and the newest (2.21, Python 3.14), each with
    the collection its own ansible-galaxy installed: it converges, a re-run changes nothing, and no run warns."""
    target = dockerd_factory()
    store = str(tmp_path / "oci-store")
    engines = {"docker1": {"engine": "docker", "engine_host": target.host}, "oci1": {"engine": "oci", "engine_host": store}}
    fleet = Fleet(ansible_runtime.collections, str(tmp_path), dockerd.host, engines, runtime=ansible_runtime)
    recap, reports, out = fleet.run(APPS_V1)
    assert all(recap[name]["failed"] == 0 and recap[name]["changed"] > 0 for name in engines), out[-3000:]
    assert warning_lines(out) + warning_lines(fleet.stderr) == [], out[-3000:] + fleet.stderr[-3000:]
    wanted = {docker_images[name].id for name in [BASE, LIB] + APPS_V1}
    held = held_ids(target, "docker")
    assert {held[name] for name in [BASE, LIB] + APPS_V1} == wanted, held
    assert {image.id for image in LayoutStore(store).images()} == wanted
    # int(): before ansible-core 2.19, a templated number in the role's report dict is a string ("123").
    assert int(reports["docker1"]["shipped_bytes"]) == int(reports["oci1"]["shipped_bytes"]) > 0

    # oci1's modules run with the stock Python, as on a host: its plan is a pipelined call (plugin_utils/host_python.py)
    recap, reports, out = fleet.run(APPS_V1, extra_host_vars={"oci1": {"ansible_python_interpreter": "/usr/bin/python3"}},
                                    extra_env={"ANSIBLE_VERBOSITY": "3"})
    assert "oci1: airgap.images.image_store_info ran as a pipelined call of loading.store_info" in out, out[-6000:]
    assert not re.search(r"^Using module file \S*/image_store_info\.py$", out, re.M), out[-6000:]
    assert all(recap[name]["changed"] == 0 and recap[name]["failed"] == 0 and int(reports[name]["shipped_bytes"]) == 0
               for name in engines), out[-3000:]
    assert all(image["state"] == "present" for name in engines for image in reports[name]["images"]), reports
    assert warning_lines(out) + warning_lines(fleet.stderr) == [], out[-3000:] + fleet.stderr[-3000:]


def test_check_mode_says_what_it_would_do_and_hosts_on_one_filesystem_stage_apart(collections_path, tmp_path, dockerd, docker_images):
    """Two hosts on this one filesystem with the role's default staging directories (one per inventory name). One host
    first; then check mode says what the other "would ship", and prints no per-image skip line for the transport not
    used; then both converge."""
    hosts = {name: {"engine": "oci", "engine_host": str(tmp_path / name)} for name in ("left", "right")}
    fleet = Fleet(collections_path, str(tmp_path), dockerd.host, hosts)
    fleet.staging = False
    fleet.run(APPS_V1, limit="left")
    _recap, _reports, out = fleet.run(APPS_V1, check=True)  # (check mode writes no report files)
    would = dict(re.findall(r'^(left|right): would ship (\d+) bytes', out, re.M))
    assert int(would["right"]) > 0 and would["left"] == "0" and ": shipped " not in out, out[-3000:]
    assert "(item=" not in out  # one task per host: no per-file or per-image lines
    recap, reports, out = fleet.run(APPS_V1)
    assert all(counts["failed"] == 0 for counts in recap.values()) and set(reports) == set(hosts), out[-3000:]
    assert int(reports["right"]["shipped_bytes"]) > 0
    assert not any(os.path.exists("/var/tmp/airgap-images-" + name) for name in hosts)  # each removed its own
