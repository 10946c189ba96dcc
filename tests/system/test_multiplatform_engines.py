# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A two-platform image (linux/amd64, linux/arm64) keeps its index digest through a registry, archives and engines.

The image is made with the core and written as an OCI layout directory (tests/unit/.../test_multiplatform.py:
TwoPlatformImage). ``image_load engine=registry`` pushes it to a registry (distribution 2.8); ``image_save
engine=registry`` saves all of it, its arm64 half and its host (amd64) half to docker-archives; ``image_load`` puts
those into containerd 2.1 (the host's platform, and linux/arm64) and into Docker 28's containerd image store. Each
engine must name the image by the index's digest, and hold the chosen platform's content. Every second run must
report ``ok``. A registry refuses an index whose other platform's manifest it lacks, and our message says why.
"""

import json
import os
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import blob_path
from ansible_collections.airgap.images.plugins.module_utils.model import MEDIA_OCI_INDEX
from ansible_collections.airgap.images.tests.system.engines import find_generation
from ansible_collections.airgap.images.tests.system.playbooks import Playbook, recap, task_status, warning_lines
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.test_multiplatform import (
    AMD64, ARM64, PLATFORMS, TwoPlatformImage, host_name)

pytestmark = pytest.mark.engines

REPO = "multi/app"
SAVES = {"all": (["all"], PLATFORMS), "arm64": ([ARM64], (ARM64,)), "default": (None, None)}


def runnable(name):
    generation = find_generation(name)
    if generation.missing:
        pytest.skip("%s cannot run here: %s" % (name, generation.missing))
    return generation


def run_task(playbook, name, module, args, path_env=None, expect_failure=False):
    """Run one named task; (its result, the status word Ansible printed); fails on any Ansible warning."""
    task = {"name": name, module: args}
    if path_env:
        task["environment"] = {"PATH": path_env}
    done = playbook.play([task], expect_failure=expect_failure)
    assert warning_lines(done.stdout) + warning_lines(done.stderr) == [], done.stdout[-3000:]
    assert recap(done.stdout)["skipped"] == 0, done.stdout[-2000:]
    return done.results[0], task_status(done.stdout, name)


@pytest.fixture(scope="module", name="multi")
def fixture_multi():
    return TwoPlatformImage()


@pytest.fixture(scope="module", name="module_playbook")
def fixture_module_playbook(collections_path, tmp_path_factory):
    return Playbook(collections_path, str(tmp_path_factory.mktemp("multiplatform-play")))


class Pushed:
    """The registry the layout was pushed to, and the two image_load runs that pushed it."""

    def __init__(self, registry, first, again):
        self.registry = registry
        self.first = first
        self.again = again

    @property
    def reference(self):
        return "%s/%s:1" % (self.registry.host, REPO)

    def options(self):
        return {"engine": "registry", "engine_host": self.registry.host, "insecure_registry": True}


@pytest.fixture(scope="module", name="pushed")
def fixture_pushed(engines, multi, module_playbook, tmp_path_factory):
    """The layout pushed to a fresh registry with ``image_load engine=registry platform=all``, twice."""
    registry = engines.registry()
    layout = multi.write(str(tmp_path_factory.mktemp("multiplatform-layout") / "layout"))
    args = dict(src=layout, platform="all", engine="registry", engine_host=registry.host, insecure_registry=True)
    first = run_task(module_playbook, "push", "airgap.images.image_load", args)
    again = run_task(module_playbook, "push again", "airgap.images.image_load", args)
    return Pushed(registry, first, again)


class Saved:
    """One image_save from the registry to a docker-archive, run twice."""

    def __init__(self, path, first, again, mtime):
        self.path = path
        self.first = first
        self.again = again
        self.mtime = mtime


@pytest.fixture(scope="module", name="saved")
def fixture_saved(pushed, module_playbook, tmp_path_factory):
    """{"all" | "arm64" | "default": Saved}: ``image_save engine=registry`` with platforms [all], [linux/arm64],
    and none."""
    work = tmp_path_factory.mktemp("multiplatform-saves")
    done = {}
    for key, (platforms, _expected) in SAVES.items():
        args = dict(images=[pushed.reference], dest=str(work / ("%s.tar" % key)), **pushed.options())
        if platforms is not None:
            args["platforms"] = platforms
        first = run_task(module_playbook, "save " + key, "airgap.images.image_save", args)
        mtime = os.stat(args["dest"]).st_mtime_ns
        again = run_task(module_playbook, "save %s again" % key, "airgap.images.image_save", args)
        done[key] = Saved(args["dest"], first, again, mtime)
    return done


def test_push_keeps_the_index_and_a_second_push_is_ok(multi, pushed):
    (result, word), (again, again_word) = pushed.first, pushed.again
    assert word == "changed" and result["changed"], result.get("msg")
    assert sorted(result["loaded"]) == sorted(part.image.id for part in multi.parts.values())
    described = {(entry["platform"], entry["index_digest"], entry["target_digest"], entry["digest_kept"])
                 for entry in result["images"]}
    assert described == {(name, multi.index_digest, multi.index_digest, True) for name in PLATFORMS}
    status, headers, body = pushed.registry.get("/v2/%s/manifests/1" % REPO, headers={"Accept": MEDIA_OCI_INDEX})
    assert status == 200 and body == multi.index
    assert headers["Docker-Content-Digest"] == multi.index_digest and headers["Content-Type"] == MEDIA_OCI_INDEX
    for part in multi.parts.values():
        status, _headers, body = pushed.registry.get("/v2/%s/manifests/%s" % (REPO, part.manifest_digest),
                                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert status == 200 and body == part.manifest
        for digest, blob in zip(part.layer_digests, part.layer_blobs):
            assert pushed.registry.get("/v2/%s/blobs/%s" % (REPO, digest))[2] == blob
    assert again_word == "ok" and not again["changed"], again["msg"]
    assert again["loaded"] == [] and len(again["present"]) == 2, again["msg"]


def archive_members(path):
    with tarfile.open(path) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}


def expected_platforms(key):
    return SAVES[key][1] or (host_name(),)


@pytest.mark.parametrize("key", sorted(SAVES))
def test_save_from_the_registry_keeps_the_index_and_only_the_selected_platforms(multi, pushed, saved, key):
    platforms = expected_platforms(key)
    run = saved[key]
    (result, word), (again, again_word) = run.first, run.again
    assert word == "changed" and result["changed"], result.get("msg")
    assert sorted((entry["platform"], entry["index_digest"], entry["manifest_digest"]) for entry in result["images"]) \
        == sorted((name, multi.index_digest, multi.parts[name].manifest_digest) for name in platforms)
    members = archive_members(run.path)
    assert members[blob_path(multi.index_digest)] == multi.index
    blobs = {"sha256:" + name.rsplit("/", 1)[1] for name in members if name.startswith("blobs/")}
    assert blobs == multi.blob_digests(platforms)
    assert [entry["digest"] for entry in json.loads(members["index.json"])["manifests"]] == [multi.index_digest]
    items = json.loads(members["manifest.json"])
    assert sorted(tag for item in items for tag in item["RepoTags"]) == [pushed.reference]
    with open_archive(run.path, "all") as archive:
        assert sorted((image.platform_name, image.digest, image.manifest_digest) for image in archive.images) == \
            sorted((name, multi.index_digest, multi.parts[name].manifest_digest) for name in platforms)
    assert again_word == "ok" and not again["changed"], again["msg"]
    assert os.stat(run.path).st_mtime_ns == run.mtime


def ctr_images(containerd):
    """{name: (media type, target digest)} as ``ctr images ls`` lists them."""
    lines = containerd.ctr("images", "ls").stdout.splitlines()[1:]
    return {line.split()[0]: (line.split()[1], line.split()[2]) for line in lines if line.strip()}


def ctr_content(containerd):
    return set(containerd.ctr("content", "ls", "-q").stdout.split())


def ctr_check(containerd, name):
    """``ctr images check``'s status and unpacked columns for ``name`` (``complete (3/3)``, ``true``). ctr checks the
    host's platform only (it has no platform flag; for an image without the host's content it fails)."""
    out = containerd.ctr("images", "check", "name==" + name).stdout.splitlines()
    (line,) = [line for line in out[1:] if line.startswith(name + " ")]
    fields = line.split()
    return " ".join(fields[3:5]), fields[-1]


def ctr_blob(containerd, digest):
    return containerd.ctr("content", "get", digest, text=False).stdout


def containerd_load(engines, module_playbook, source, platform=None):
    """A fresh containerd 2.1 loaded with ``source`` by image_load (twice); (containerd, first, again)."""
    generation = runnable("containerd21")
    containerd = engines.containerd(generation=generation)
    args = dict(src=source, engine="containerd", engine_host=containerd.address)
    if platform:
        args["platform"] = platform
    first = run_task(module_playbook, "load", "airgap.images.image_load", args, generation.path_env())
    again = run_task(module_playbook, "load again", "airgap.images.image_load", args, generation.path_env())
    return containerd, first, again


@pytest.mark.parametrize("key", ["all", "default"])
def test_containerd21_takes_the_host_platform_by_the_index_digest(multi, pushed, saved, engines, module_playbook, key):
    host = host_name()
    containerd, (result, word), (again, again_word) = containerd_load(engines, module_playbook, saved[key].path)
    assert word == "changed" and [(e["platform"], e["target_digest"]) for e in result["images"]] == \
        [(host, multi.index_digest)], result.get("msg")
    assert ctr_images(containerd) == {pushed.reference: (MEDIA_OCI_INDEX, multi.index_digest)}
    content = ctr_content(containerd)
    assert multi.blob_digests([host]) <= content, sorted(multi.blob_digests([host]) - content)
    assert ctr_check(containerd, pushed.reference) == ("complete (3/3)", "true")  # config and two layers, unpacked
    assert again_word == "ok" and not again["changed"] and len(again["present"]) == 1, again["msg"]


@pytest.mark.parametrize("key", ["all", "arm64"])
def test_containerd21_takes_linux_arm64_by_the_index_digest(multi, pushed, saved, engines, module_playbook, key):
    containerd, (result, word), (again, again_word) = containerd_load(engines, module_playbook, saved[key].path, ARM64)
    assert word == "changed" and [(e["platform"], e["target_digest"], e["digest_kept"]) for e in result["images"]] == \
        [(ARM64, multi.index_digest, True)], result.get("msg")
    assert ctr_images(containerd) == {pushed.reference: (MEDIA_OCI_INDEX, multi.index_digest)}
    content = ctr_content(containerd)
    assert multi.blob_digests([ARM64]) <= content, sorted(multi.blob_digests([ARM64]) - content)
    part = multi.parts[ARM64]
    assert ctr_blob(containerd, part.manifest_digest) == part.manifest
    assert [ctr_blob(containerd, digest) for digest in part.layer_digests] == part.layer_blobs
    if key == "arm64":
        assert not multi.parts[AMD64].blob_digests() & content
    assert again_word == "ok" and not again["changed"] and len(again["present"]) == 1, again["msg"]


def test_loading_an_arm64_archive_for_the_host_platform_fails_naming_what_it_holds(saved, engines, module_playbook):
    if host_name() != AMD64:
        pytest.skip("the archive's only platform is this host's")
    generation = runnable("containerd21")
    containerd = engines.containerd(generation=generation)
    args = dict(src=saved["arm64"].path, engine="containerd", engine_host=containerd.address)
    result, word = run_task(module_playbook, "load", "airgap.images.image_load", args, generation.path_env(),
                            expect_failure=True)
    assert word == "fatal" and result["failed"]
    assert "no manifest for platform linux/amd64" in result["msg"], result["msg"]
    assert "holds: linux/arm64" in result["msg"], result["msg"]
    assert ctr_images(containerd) == {}


def docker_ids(dockerd):
    lines = dockerd.cli("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split()
    return dict(zip(lines[::2], lines[1::2]))


DOCKER_ALL_PLATFORMS = ("Docker's containerd store loads both platforms (ID = index digest), but the docker store's "
                        "find() inspects the name without ?platform= (API 1.49+), so it sees only the host's platform "
                        "and image_load reports the arm64 image missing after the load")


@pytest.mark.parametrize("key, platform", [
    ("all", None), pytest.param("all", "all", marks=pytest.mark.xfail(strict=True, reason=DOCKER_ALL_PLATFORMS)),
    ("arm64", ARM64)], ids=["host", "all", "arm64"])
def test_docker28_containerd_store_keys_the_image_on_the_index_digest(multi, pushed, saved, engines, module_playbook,
                                                                      key, platform):
    generation = runnable("docker28-containerd-store")
    dockerd = engines.dockerd(generation=generation)
    args = dict(src=saved[key].path, engine="docker", engine_host=dockerd.host)
    if platform:
        args["platform"] = platform
    result, word = run_task(module_playbook, "load", "airgap.images.image_load", args, generation.path_env())
    chosen = PLATFORMS if platform == "all" else (platform or host_name(),)
    assert word == "changed" and sorted((e["platform"], e["target_digest"]) for e in result["images"]) == \
        sorted((name, multi.index_digest) for name in chosen), result.get("msg")
    assert docker_ids(dockerd) == {pushed.reference: multi.index_digest}
    again, again_word = run_task(module_playbook, "load again", "airgap.images.image_load", args, generation.path_env())
    assert again_word == "ok" and not again["changed"] and len(again["present"]) == len(chosen), again["msg"]


def test_a_registry_refuses_an_index_without_its_other_platform(multi, saved, engines, module_playbook):
    registry = engines.registry()
    args = dict(src=saved["arm64"].path, platform=ARM64, engine="registry", engine_host=registry.host,
                insecure_registry=True)
    result, word = run_task(module_playbook, "push arm64 only", "airgap.images.image_load", args, expect_failure=True)
    assert word == "fatal" and result["failed"]
    assert "refused index %s" % multi.index_digest in result["msg"] and "platforms: all" in result["msg"], result["msg"]
    assert "MANIFEST_BLOB_UNKNOWN" in result["msg"] or "manifest blob unknown" in result["msg"], result["msg"]
    assert registry.get("/v2/%s/manifests/1" % REPO, headers={"Accept": MEDIA_OCI_INDEX})[0] == 404
    arm64 = registry.get("/v2/%s/manifests/%s" % (REPO, multi.parts[ARM64].manifest_digest),
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert arm64[0] == 200 and arm64[2] == multi.parts[ARM64].manifest
