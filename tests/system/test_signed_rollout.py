# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signatures, SBOMs and attestations travel with the images and are verified inside the air gap.

Everything here is made by the real tools, from Debian unstable's packages (tests/system/current_engines.sh): cosign
3.1 signs with a key pair against a distribution 2.8 registry on loopback, both in its Sigstore bundle format (a
referrer, listed under the fallback tag ``sha256-<hex>``) and in its older simple-signing format (tag
``sha256-<hex>.sig``), and attaches an SBOM attestation and an ``.sbom``; oras 1.3 attaches an SPDX file as an OCI
referrer. image_save bundles them from the registry; oras and crane read the bundle; image_load puts it into a second
(site) registry, where ``cosign verify`` passes; and ``signed_by`` refuses an unsigned image, one signed by another
key and one whose signature was moved from another image, loading nothing. The outputs the issue asks to see are
written to .build/signatures-report.md.
"""

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.signatures import load_public_keys
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore
from ansible_collections.airgap.images.tests.system.engines import CURRENT_BINS, seeded_bytes
from ansible_collections.airgap.images.tests.system.playbooks import Playbook, task_status, warning_lines
from ansible_collections.airgap.images.tests.system.test_identity import registry_digest
from ansible_collections.airgap.images.tests.system.test_rollout import Fleet

TOOLS = {name: os.path.join(CURRENT_BINS, "usr", "bin", name) for name in ("cosign", "oras", "crane")}
REPORT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      ".build", "signatures-report.md")
SBOM = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "signed-app", "dataLicense": "CC0-1.0"}
COSIGN_FLAGS = ["--tlog-upload=false", "--use-signing-config=false", "--allow-insecure-registry", "--yes"]
VERIFY_FLAGS = ["--insecure-ignore-tlog", "--allow-insecure-registry"]


def tool(name, *args, cwd=None, check=True):
    if not os.path.exists(TOOLS[name]):
        pytest.skip("%s is not unpacked here: run make current-engines" % name)
    env = dict(os.environ, COSIGN_PASSWORD="airgap-test", HOME=cwd or os.environ.get("HOME", "/root"))
    done = subprocess.run([TOOLS[name]] + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError("%s %s failed (%d):\n%s\n%s" % (name, " ".join(args), done.returncode, done.stdout[-2000:], done.stderr[-2000:]))
    return done


class Signed:
    """The source registry, its images (name -> (reference, manifest digest)) and the two key pairs."""

    def __init__(self, registry, keys, images, bundle):
        self.registry = registry
        self.keys = keys
        self.images = images
        self.bundle = bundle

    def ref(self, name, digest=True):
        reference, manifest_digest = self.images[name]
        return "%s@%s" % (reference.rsplit(":", 1)[0], manifest_digest) if digest else reference


def key_pair(directory):
    os.makedirs(directory)
    tool("cosign", "generate-key-pair", cwd=directory)
    return os.path.join(directory, "cosign.key"), os.path.join(directory, "cosign.pub")


def push_image(registry, repo, seed, work):
    """A two-layer image with gzip layers, written by our core and pushed with crane (upstream's way: by digest)."""
    base = layer_from_bytes(layer_tar({"etc": None, "etc/os-release": b"ID=signed\n"}))
    app = layer_from_bytes(layer_tar({"app": None, "app/data.bin": seeded_bytes(64 * 1024, seed)}))
    name = "%s/%s:1" % (registry.host, repo)
    image = build_image([base, app], [parse_reference(name)], config={"Cmd": ["/app/data.bin"]})
    layout = os.path.join(work, "layout-" + repo.replace("/", "-"))
    LayoutStore(layout).import_images([image], compression="gzip")
    tool("crane", "push", "--insecure", layout, name)
    return name, registry_digest(registry, repo, "1")


@pytest.fixture(scope="module")
def signed(engines, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("signatures"))
    registry = engines.registry()
    keys = {"release": key_pair(os.path.join(work, "release")), "other": key_pair(os.path.join(work, "other"))}
    images = {name: push_image(registry, "sig/" + name, seed, work)
              for seed, name in enumerate(("app", "unsigned", "other-key", "moved"), 1)}
    source = Signed(registry, keys, images, os.path.join(work, "bundle"))
    sbom = os.path.join(work, "sbom.spdx.json")
    with open(sbom, "w") as out:
        json.dump(SBOM, out)
    app = source.ref("app")
    tool("cosign", "sign", "--key", keys["release"][0], *COSIGN_FLAGS, app)
    tool("cosign", "sign", "--key", keys["release"][0], "--new-bundle-format=false", *COSIGN_FLAGS, app)
    for bundle_format in ("true", "false"):
        tool("cosign", "attest", "--key", keys["release"][0], "--type", "spdxjson", "--predicate", sbom,
             "--new-bundle-format=" + bundle_format, *COSIGN_FLAGS, app)
    tool("cosign", "attach", "sbom", "--sbom", sbom, "--type", "spdx", "--allow-insecure-registry", app)
    tool("oras", "attach", "--plain-http", "--artifact-type", "application/spdx+json", app, os.path.basename(sbom), cwd=work)
    tool("cosign", "sign", "--key", keys["other"][0], "--new-bundle-format=false", *COSIGN_FLAGS, source.ref("other-key"))
    # A genuine signature of app, put where the signature of "moved" belongs (crane copies it digest for digest).
    app_digest, moved_digest = images["app"][1], images["moved"][1]
    tool("crane", "copy", "--insecure", "%s/sig/app:sha256-%s.sig" % (registry.host, app_digest.split(":")[1]),
         "%s/sig/moved:sha256-%s.sig" % (registry.host, moved_digest.split(":")[1]))
    return source


@pytest.fixture(scope="module")
def playbook(collections_path, tmp_path_factory):
    return Playbook(collections_path, str(tmp_path_factory.mktemp("signatures-play")))


@pytest.fixture(scope="module")
def report():
    sections = []
    yield sections
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "w", encoding="utf-8") as out:
        out.write("\n\n".join(sections) + "\n")


def run_one(playbook, name, module, args, check=False, expect_failure=False):
    """(result, status word) of one task; Ansible printed no warning."""
    done = playbook.play([{"name": name, module: args}], check=check, expect_failure=expect_failure)
    assert warning_lines(done.stdout) + warning_lines(done.stderr) == [], done.stdout[-3000:]
    return done.results[0], task_status(done.stdout, name)


@pytest.fixture(scope="module")
def bundle(signed, playbook):
    """image_save from the source registry, with what is attached to each image."""
    images = [signed.ref(name, digest=False) for name in signed.images]
    result, status = run_one(playbook, "bundle", "airgap.images.image_save", {
        "engine": "registry", "engine_host": signed.registry.host, "insecure_registry": True, "images": images,
        "dest": signed.bundle, "format": "oci-dir", "referrers": True})
    assert status == "changed", result
    return signed.bundle


def referrers_of(info, name):
    (entry,) = [image for image in info["images"] if any(tag.endswith("/sig/%s:1" % name) for tag in image["repo_tags"])]
    return entry["referrers"]


def test_the_bundle_carries_signatures_attestations_and_sboms(signed, bundle, playbook):
    info, status = run_one(playbook, "describe", "airgap.images.image_archive_info", {"path": bundle})
    assert status == "ok"
    release_id = load_public_keys([signed.keys["release"][1]])[0].key_id
    app = referrers_of(info, "app")
    kinds = sorted((entry["kind"], entry["tag"] is not None, entry["key_id"] or "-") for entry in app)
    assert kinds == [("attestation", False, release_id), ("attestation", True, "-"), ("sbom", False, "-"),
                     ("sbom", True, "-"), ("signature", False, release_id), ("signature", True, "-")], app
    assert {entry["subject"] for entry in app} == {signed.images["app"][1]}
    assert referrers_of(info, "unsigned") == []
    moved = referrers_of(info, "moved")
    assert [(entry["kind"], entry["subject"]) for entry in moved] == [("signature", signed.images["moved"][1])]


def test_oras_and_crane_read_the_bundle(signed, bundle, engines, report):
    digest = signed.images["app"][1]
    discovered = tool("oras", "discover", "--oci-layout", "--format", "json", "%s@%s" % (bundle, digest)).stdout
    found = json.loads(discovered)
    types = sorted(entry.get("artifactType") for entry in found.get("referrers") or found.get("manifests") or [])
    assert types == ["application/spdx+json", "application/vnd.dev.sigstore.bundle.v0.3+json",
                     "application/vnd.dev.sigstore.bundle.v0.3+json"], discovered
    copy = engines.registry()
    tool("crane", "push", "--insecure", "--index", bundle, "%s/crane/bundle" % copy.host)
    listing = json.loads(tool("crane", "manifest", "--insecure", "%s/crane/bundle" % copy.host).stdout)
    kinds = sorted((entry.get("annotations") or {}).get("kind", entry.get("artifactType", "image")) for entry in listing["manifests"])
    assert "dev.cosignproject.cosign/sigs" in kinds and "dev.cosignproject.cosign/sboms" in kinds, kinds
    assert kinds.count("application/vnd.dev.sigstore.bundle.v0.3+json") == 2 and "application/spdx+json" in kinds, kinds
    report.append("## oras discover --oci-layout bundle@%s\n\n```\n%s\n```" % (
        digest, tool("oras", "discover", "--oci-layout", "%s@%s" % (bundle, digest)).stdout.strip()))


def test_cosign_verifies_a_bundle_of_one_image_offline(signed, playbook, tmp_path):
    """``cosign verify --local-image`` reads a layout as ``cosign save`` writes it (one image, found by its ``kind``)."""
    single = str(tmp_path / "single")
    _result, status = run_one(playbook, "bundle one", "airgap.images.image_save", {
        "engine": "registry", "engine_host": signed.registry.host, "insecure_registry": True,
        "images": [signed.ref("app", digest=False)], "dest": single, "format": "oci-dir", "referrers": True})
    assert status == "changed"
    verified = tool("cosign", "verify", "--key", signed.keys["release"][1], "--insecure-ignore-tlog", "--local-image", single)
    assert "The signatures were verified against the specified public key" in verified.stderr + verified.stdout
    assert tool("cosign", "verify", "--key", signed.keys["other"][1], "--insecure-ignore-tlog", "--local-image", single,
                check=False).returncode != 0


def test_a_layout_cosign_save_wrote_passes_our_check(signed, playbook, tmp_path):
    """cosign save's own layout: its unnamed sigs entry belongs to its one image entry, by their ``kind``."""
    saved = str(tmp_path / "cosign-saved")
    tool("cosign", "save", "--allow-insecure-registry", "--dir", saved, signed.ref("app"))
    result, status = run_one(playbook, "verify cosign save", "airgap.images.image_verify", {
        "path": saved, "signed_by": [signed.keys["release"][1]]})
    assert status == "ok", result
    (verdict,) = result["signatures"]
    assert verdict["digest"] == signed.images["app"][1]
    assert [s["format"] for s in verdict["signatures"] if s["verified"]] == ["simple-signing"]
    refused, status = run_one(playbook, "verify cosign save, other key", "airgap.images.image_verify", {
        "path": saved, "signed_by": [signed.keys["other"][1]]}, expect_failure=True)
    assert status == "fatal" and refused["signatures"][0]["verified"] is False


def load_args(signed, site, images, key="release"):
    return {"engine": "registry", "engine_host": site.host, "insecure_registry": True, "src": signed.bundle,
            "images": images, "signed_by": [signed.keys[key][1]]}


def test_the_site_registry_serves_what_cosign_verifies(signed, bundle, engines, playbook, report):
    site = engines.registry()
    app = signed.ref("app", digest=False)
    checked, status = run_one(playbook, "verify on the controller", "airgap.images.image_verify", {
        "path": bundle, "images": [app], "signed_by": [signed.keys["release"][1]]})
    assert status == "ok" and [v["verified"] for v in checked["signatures"]] == [True]
    formats = sorted(s["format"] for s in checked["signatures"][0]["signatures"] if s["verified"])
    assert formats == ["sigstore-bundle", "simple-signing"], checked
    result, status = run_one(playbook, "load into the site registry", "airgap.images.image_load", load_args(signed, site, [app]))
    assert status == "changed" and result["signatures"][0]["verified"], result
    again, status = run_one(playbook, "load again", "airgap.images.image_load", load_args(signed, site, [app]))
    assert status == "ok" and again["loaded"] == []
    site_ref = "%s/sig/app@%s" % (site.host, signed.images["app"][1])
    verified = tool("cosign", "verify", "--key", signed.keys["release"][1], *VERIFY_FLAGS, site_ref)
    assert "The signatures were verified against the specified public key" in verified.stderr + verified.stdout
    refused = tool("cosign", "verify", "--key", signed.keys["other"][1], *VERIFY_FLAGS, site_ref, check=False)
    assert refused.returncode != 0
    discovered = tool("oras", "discover", "--plain-http", "--format", "json", site_ref).stdout
    assert "application/spdx+json" in discovered
    report.append("## cosign verify against the site registry\n\n```\n$ cosign verify --key release/cosign.pub %s %s\n%s\n%s\n```"
                  % (" ".join(VERIFY_FLAGS), site_ref, verified.stderr.strip(), verified.stdout.strip()))


def test_a_signature_names_the_source_repository_and_still_counts_at_the_site(signed, bundle, engines, playbook):
    """cosign's rule: the docker-reference in a payload is not compared with where the image is verified."""
    site = engines.registry()
    result, status = run_one(playbook, "load", "airgap.images.image_load", load_args(signed, site, [signed.ref("app", digest=False)]))
    assert status == "changed"
    simple = [s for s in result["signatures"][0]["signatures"] if s["format"] == "simple-signing"]
    assert simple and simple[0]["docker_reference"] == "%s/sig/app" % signed.registry.host
    assert tool("cosign", "verify", "--key", signed.keys["release"][1], *VERIFY_FLAGS,
                "%s/sig/app:1" % site.host).returncode == 0


@pytest.mark.parametrize("check", [True, False], ids=["check-mode", "run"])
def test_unsigned_foreign_key_and_moved_signatures_are_refused_and_nothing_loads(signed, bundle, engines, playbook, report, check):
    site = engines.registry()
    images = [signed.ref(name, digest=False) for name in ("app", "unsigned", "other-key", "moved")]
    result, status = run_one(playbook, "refuse", "airgap.images.image_load", load_args(signed, site, images), check=check,
                             expect_failure=True)
    assert status == "fatal" and result["failed"] is True
    message = result["msg"]
    assert message.startswith("signature check refused 3 of 4 image(s), nothing was loaded")
    reasons = {v["image"].rsplit("/", 1)[-1]: v["reason"] for v in result["signatures"]}
    assert reasons["app:1"] is None
    assert reasons["unsigned:1"].startswith("no signature")
    assert "verifies with none of the 1 keys given" in reasons["other-key:1"]
    assert "the signed payload is for %s, not for this image's %s" % (signed.images["app"][1], signed.images["moved"][1]) \
        in reasons["moved:1"]
    assert site.catalog() == []
    if not check:
        report.append("## image_load signed_by: the refusal\n\n```\n%s\n```" % message.replace("; ", ";\n  "))


def test_image_verify_refuses_an_archive_signed_by_another_key(signed, bundle, playbook):
    result, status = run_one(playbook, "verify", "airgap.images.image_verify", {
        "path": bundle, "images": [signed.ref("app", digest=False)], "signed_by": [signed.keys["other"][1]]}, expect_failure=True)
    assert status == "fatal"
    reasons = [s["reason"] for s in result["signatures"][0]["signatures"]]
    assert any(reason.startswith("signed by an unknown key (key id") for reason in reasons), reasons
    assert any("verifies with none of the 1 keys given" in reason for reason in reasons), reasons


def test_image_pull_verifies_before_pulling(signed, playbook, tmp_path):
    layout = str(tmp_path / "pulled")
    args = {"registry": signed.registry.host, "registry_insecure": True, "engine": "oci", "engine_host": layout,
            "signed_by": [signed.keys["release"][1]]}
    result, status = run_one(playbook, "pull signed", "airgap.images.image_pull", dict(args, images=[signed.ref("app", digest=False)]))
    assert status == "changed" and result["signatures"][0]["verified"]
    refused, status = run_one(playbook, "pull unsigned", "airgap.images.image_pull",
                              dict(args, images=[signed.ref("unsigned", digest=False)]), expect_failure=True)
    assert status == "fatal" and "no signature" in refused["msg"]
    with open(os.path.join(layout, "index.json")) as handle:
        names = [(entry.get("annotations") or {}).get("io.containerd.image.name") for entry in json.load(handle)["manifests"]]
    assert not any(name and "/sig/unsigned" in name for name in names)


def test_a_bad_key_file_is_an_error_naming_it(signed, bundle, playbook, tmp_path):
    not_a_key = str(tmp_path / "not-a-key.pub")
    shutil.copyfile(os.path.join(signed.bundle, "oci-layout"), not_a_key)
    result, status = run_one(playbook, "bad key", "airgap.images.image_verify", {"path": bundle, "signed_by": [not_a_key]},
                             expect_failure=True)
    assert status == "fatal" and result["msg"].startswith("%s is not a PEM public key" % not_a_key)


def test_the_rollout_role_checks_signatures_on_the_controller_and_on_each_host(signed, collections_path, tmp_path, dockerd_factory):
    """A docker host and an OCI-layout host: the signed image converges (and a re-run is a no-op); a play with an
    unsigned image stops at the controller's check, before anything is shipped."""
    docker = dockerd_factory()
    hosts = {"docker-host": {"engine": "docker", "engine_host": docker.host},
             "oci-host": {"engine": "oci", "engine_host": str(tmp_path / "oci-host")}}
    fleet = Fleet(collections_path, str(tmp_path), signed.registry.host, hosts)
    role_vars = {"rollout_base": "", "rollout_lib": "", "rollout_source_engine": "registry", "rollout_source_insecure_registry": True,
                 "rollout_signed_by": [signed.keys["release"][1]]}
    recap, reports, _out = fleet.run([signed.ref("app", digest=False)], role_vars)
    assert all(counts["failed"] == 0 and counts["changed"] > 0 for counts in recap.values()), recap
    assert set(reports) == set(hosts)
    assert [line for line in docker.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split() if "sig/app" in line]
    recap, _reports, _out = fleet.run([signed.ref("app", digest=False)], role_vars)
    assert all(counts["changed"] == 0 for counts in recap.values()), recap
    role_vars["rollout_bundle_dir"] = str(tmp_path / "unsigned-bundle")
    _recap, _reports, out = fleet.run([signed.ref("app", digest=False), signed.ref("unsigned", digest=False)], role_vars, expect_rc=2)
    assert "Check the bundle's signatures before anything ships" in out and "unsigned:1" in out and "no signature" in out
    assert "Ship the layers (or separated tarballs) the host lacks" not in out.split("Check the bundle's signatures before anything ships", 1)[1]


def test_registry_mode_seeds_the_site_registry_with_signatures_and_hosts_pull_only_signed_images(signed, engines, collections_path, tmp_path):
    """rollout_mode=registry: the site registry's load checks and pushes the signatures, each host's pull checks
    them again from there, and cosign verify passes against the site registry."""
    site = engines.registry()
    hosts = {"oci-host": {"engine": "oci", "engine_host": str(tmp_path / "oci-host")}}
    fleet = Fleet(collections_path, str(tmp_path), signed.registry.host, hosts)
    role_vars = {"rollout_base": "", "rollout_lib": "", "rollout_source_engine": "registry", "rollout_source_insecure_registry": True,
                 "rollout_signed_by": [signed.keys["release"][1]], "rollout_mode": "registry", "rollout_registry": site.host,
                 "rollout_registry_insecure": True}
    recap, _reports, out = fleet.run([signed.ref("app", digest=False)], role_vars)
    assert recap["oci-host"]["failed"] == 0 and recap["oci-host"]["changed"] > 0, out[-3000:]
    site_ref = "%s/sig/app@%s" % (site.host, signed.images["app"][1])
    assert tool("cosign", "verify", "--key", signed.keys["release"][1], *VERIFY_FLAGS, site_ref).returncode == 0
    with open(os.path.join(str(tmp_path / "oci-host"), "index.json")) as handle:
        digests = [entry["digest"] for entry in json.load(handle)["manifests"]]
    assert signed.images["app"][1] in digests


def test_a_new_signature_at_the_source_makes_the_bundle_be_saved_again(signed, playbook, tmp_path):
    """The bundle holds the same images, but the source signed one again (a key rotation): not 'ok' with the old
    signatures only."""
    name, digest = push_image(signed.registry, "sig/rotated", 9, str(tmp_path))
    pinned = "%s@%s" % (name.rsplit(":", 1)[0], digest)
    tool("cosign", "sign", "--key", signed.keys["release"][0], *COSIGN_FLAGS, pinned)
    args = {"engine": "registry", "engine_host": signed.registry.host, "insecure_registry": True, "images": [name],
            "dest": str(tmp_path / "rotated"), "format": "oci-dir", "referrers": True}
    assert run_one(playbook, "save", "airgap.images.image_save", args)[1] == "changed"
    assert run_one(playbook, "save again", "airgap.images.image_save", args)[1] == "ok"
    tool("cosign", "sign", "--key", signed.keys["other"][0], *COSIGN_FLAGS, pinned)
    result, status = run_one(playbook, "save after the new signature", "airgap.images.image_save", args)
    assert status == "changed" and "other signatures or attachments" in result["msg"], result
    checked, status = run_one(playbook, "verify with the new key", "airgap.images.image_verify", {
        "path": args["dest"], "signed_by": [signed.keys["other"][1]]})
    assert status == "ok" and checked["signatures"][0]["verified"]
