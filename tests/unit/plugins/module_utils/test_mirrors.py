# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each engine's mirror configuration, as registry_mirror writes it (module_utils/mirrors.py)."""

import json
import os
import stat
import sys

import pytest

from ansible_collections.airgap.images.plugins.module_utils.mirrors import (
    MirrorError, Site, apply_plan, hosts_toml, plan_mirrors, registries_conf)

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else None


def parsed(text):
    return tomllib.loads(text) if tomllib is not None else None


def test_hosts_toml_sends_pulls_and_resolves_to_the_site_registry_with_its_ca():
    text = hosts_toml("upstream.example", Site("site.internal:5000", ca_path="/etc/pki/site ca.pem"))
    assert text.startswith("# Written by airgap.images.registry_mirror")
    assert 'server = "https://upstream.example"\n' in text
    assert '[host."https://site.internal:5000"]\n  capabilities = ["pull", "resolve"]\n  ca = "/etc/pki/site ca.pem"\n' in text
    if tomllib is not None:
        assert parsed(text) == {"server": "https://upstream.example", "host": {"https://site.internal:5000": {
            "capabilities": ["pull", "resolve"], "ca": "/etc/pki/site ca.pem"}}}


def test_hosts_toml_plain_http_skip_verify_and_docker_hub():
    http = hosts_toml("registry.k8s.io", Site("10.0.0.5:5000", insecure=True))
    assert '[host."http://10.0.0.5:5000"]' in http and "skip_verify" not in http and "ca =" not in http
    unverified = hosts_toml("docker.io", Site("10.0.0.5:5000", skip_verify=True))
    assert 'server = "https://registry-1.docker.io"' in unverified  # where containerd itself sends docker.io
    assert '[host."https://10.0.0.5:5000"]' in unverified and "  skip_verify = true\n" in unverified


def test_registries_conf_has_one_registry_table_per_upstream_with_the_site_as_mirror():
    text = registries_conf(["docker.io", "upstream.example:8443"], Site("10.0.0.5:5000", insecure=True))
    if tomllib is not None:
        assert parsed(text) == {"registry": [
            {"prefix": "docker.io", "location": "docker.io", "mirror": [{"location": "10.0.0.5:5000", "insecure": True}]},
            {"prefix": "upstream.example:8443", "location": "upstream.example:8443",
             "mirror": [{"location": "10.0.0.5:5000", "insecure": True}]}]}
    assert "insecure" not in registries_conf(["docker.io"], Site("site:5000"))


@pytest.mark.parametrize("bad", ["https://site:5000", "site:5000/path", "", "si te", "site:port"])
def test_registry_and_upstreams_must_be_hosts(bad):
    with pytest.raises(MirrorError):
        Site(bad)
    with pytest.raises(MirrorError):
        plan_mirrors("containerd", Site("site:5000"), [bad], config_path="/nonexistent", containerd_config="")


def test_containerd_files_are_written_atomically_once_and_then_unchanged(tmp_path):
    hosts = str(tmp_path / "certs.d")
    site = Site("127.0.0.1:5000", insecure=True)
    plan = plan_mirrors("containerd", site, ["docker.io", "upstream.example", "docker.io"], config_path=hosts, containerd_config="")
    assert plan.changed and plan.mirrored == ["docker.io", "upstream.example"] and plan.unmirrored == []
    assert [change.path for change in plan.files] == [os.path.join(hosts, "docker.io", "hosts.toml"),
                                                      os.path.join(hosts, "upstream.example", "hosts.toml")]
    assert [d["before"] for d in plan.diff()] == ["", ""] and "http://127.0.0.1:5000" in plan.diff()[1]["after"]
    apply_plan(plan, check_mode=True)
    assert not os.path.exists(hosts)
    apply_plan(plan)
    path = os.path.join(hosts, "upstream.example", "hosts.toml")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(os.listdir(os.path.dirname(path))) == ["hosts.toml"]  # no temp file left
    again = plan_mirrors("containerd", site, ["docker.io", "upstream.example"], config_path=hosts, containerd_config="")
    assert not again.changed and again.diff() == [] and not again.restart_needed
    os.chmod(path, 0o600)
    fixed = plan_mirrors("containerd", site, ["upstream.example"], config_path=hosts, containerd_config="")
    assert fixed.changed
    apply_plan(fixed)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_containerd_note_says_when_the_cri_plugin_does_not_read_the_hosts_dir(tmp_path):
    config = tmp_path / "config.toml"
    site = Site("site:5000")
    notes = plan_mirrors("containerd", site, ["docker.io"], config_path="/etc/containerd/certs.d", containerd_config=str(config)).notes
    assert len(notes) == 1 and "not found" in notes[0]
    config.write_text("version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = ''\n")
    notes = plan_mirrors("containerd", site, ["docker.io"], config_path="/etc/containerd/certs.d", containerd_config=str(config)).notes
    assert len(notes) == 1 and "does not set the CRI registry config_path" in notes[0]
    for value in ("'/etc/containerd/certs.d'", '"/etc/containerd/certs.d/"', '"/etc/containerd/certs.d:/etc/docker/certs.d"'):
        config.write_text('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = %s\n' % value)
        assert plan_mirrors("containerd", site, ["docker.io"], config_path="/etc/containerd/certs.d",
                            containerd_config=str(config)).notes == [], value


def test_podman_drop_in_and_ca_copy(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    drop_in, certs = str(tmp_path / "registries.conf.d" / "50-mirrors.conf"), str(tmp_path / "certs.d")
    site = Site("site.internal:5000", ca_path=str(ca))
    plan = plan_mirrors("podman", site, ["registry.k8s.io"], config_path=drop_in, certs_dir=certs)
    assert [change.path for change in plan.files] == [drop_in, os.path.join(certs, "site.internal:5000", "ca.crt")]
    assert not plan.restart_needed
    apply_plan(plan)
    with open(os.path.join(certs, "site.internal:5000", "ca.crt"), "rb") as handle:
        assert handle.read() == ca.read_bytes()
    assert not plan_mirrors("podman", site, ["registry.k8s.io"], config_path=drop_in, certs_dir=certs).changed
    crio = plan_mirrors("cri-o", Site("site.internal:5000"), ["quay.io"], config_path=drop_in)
    assert crio.changed and crio.restart_needed  # CRI-O reads registries.conf on a reload


def test_docker_merges_daemon_json_and_says_what_it_cannot_mirror(tmp_path):
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"log-driver": "journald", "registry-mirrors": ["https://old.mirror"], "insecure-registries": ["x:1"]}')
    os.chmod(str(daemon), 0o600)
    site = Site("10.0.0.5:5000", insecure=True)
    plan = plan_mirrors("docker", site, ["docker.io", "registry.k8s.io", "upstream.example"], config_path=str(daemon))
    assert plan.mirrored == ["docker.io"] and plan.unmirrored == ["registry.k8s.io", "upstream.example"]
    assert plan.restart_needed and "Docker mirrors Docker Hub only" in plan.notes[0]
    apply_plan(plan)
    text = daemon.read_text()
    assert json.loads(text) == {"log-driver": "journald", "registry-mirrors": ["http://10.0.0.5:5000", "https://old.mirror"],
                                "insecure-registries": ["x:1", "10.0.0.5:5000"]}
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert stat.S_IMODE(os.stat(str(daemon)).st_mode) == 0o600  # a file it merges into keeps its mode
    again = plan_mirrors("docker", site, ["docker.io", "registry.k8s.io"], config_path=str(daemon))
    assert not again.changed and not again.restart_needed and again.files == []


def test_docker_without_docker_hub_changes_nothing_and_a_broken_daemon_json_is_left_alone(tmp_path):
    daemon = tmp_path / "daemon.json"
    plan = plan_mirrors("docker", Site("site:5000"), ["registry.k8s.io"], config_path=str(daemon))
    assert not plan.changed and plan.mirrored == [] and plan.unmirrored == ["registry.k8s.io"]
    daemon.write_text("{not json")
    with pytest.raises(MirrorError, match="not valid JSON"):
        plan_mirrors("docker", Site("site:5000"), ["docker.io"], config_path=str(daemon))
    daemon.write_text('{"registry-mirrors": "https://one"}')
    with pytest.raises(MirrorError, match="not a list of strings"):
        plan_mirrors("docker", Site("site:5000"), ["docker.io"], config_path=str(daemon))


def test_options_that_contradict_each_other_or_name_missing_files_fail():
    with pytest.raises(MirrorError, match="plain HTTP"):
        Site("site:5000", insecure=True, ca_path="/ca.pem")
    with pytest.raises(MirrorError, match="no such file"):
        plan_mirrors("containerd", Site("site:5000", ca_path="/nonexistent/ca.pem"), ["docker.io"], containerd_config="")
    with pytest.raises(MirrorError, match="upstreams is empty"):
        plan_mirrors("podman", Site("site:5000"), [])
