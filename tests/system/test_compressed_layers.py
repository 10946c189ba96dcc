# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archives whose layers are gzip or zstd blobs, read by every engine of the matrix.

Our docker-archive keeps layers as the blobs they came as: ``manifest.json``'s ``Layers`` and the OCI side
(``index.json``, manifests) name the same compressed blobs. Two images (a base, and an app on it) are built by the
core, stored in an OCI layout with gzip or zstd layers, and saved from there as docker-archive and oci-archive. Each
engine loads them with its own CLI (``docker load``, ``podman load``, ``ctr images import``, ``skopeo copy``) and
then through ``image_load``; each must hold both images under their config digest (or, where it keys on manifests,
their manifest digest) with their DiffIDs. One engine cannot: Docker 20.10 decompresses gzip, bzip2 and xz layers
but not zstd (Docker 23 learned it), so it takes a zstd frame for a tar and fails; that is asserted, not skipped.
"""

import hashlib
import json
import os
import random
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.compression import detect
from ansible_collections.airgap.images.plugins.module_utils.digest import drain
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import blob_path
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore
from ansible_collections.airgap.images.tests.system.engines import EngineCommandError, chroot_command, run_command
from ansible_collections.airgap.images.tests.system.matrix import generation_params
from ansible_collections.airgap.images.tests.system.test_matrix import Target, run_task

BASE, APP = "example.com/compressed/base:1", "example.com/compressed/app:1"
COMPRESSIONS = ("gzip", "zstd")
FORMATS = ("docker-archive", "oci-archive")
# What `docker load` of Docker < 23 prints for a zstd layer: its loader hands the undecompressed frame to tar.
OLD_DOCKER_ON_ZSTD = "ApplyLayer exit status 1 stdout:  stderr: archive/tar: invalid tar header"


def make_images():
    """A base of random and repetitive files, and an app on it (about 600 KB of layers)."""
    noise = random.Random(20240601)
    base = layer_from_bytes(layer_tar({"etc/": None, "etc/os-release": b"ID=compressed\n", "base/": None,
                                       "base/noise.bin": noise.randbytes(200 * 1024),
                                       "base/text.txt": b"air gap " * 24000}))
    app = layer_from_bytes(layer_tar({"app/": None, "app/a.bin": noise.randbytes(100 * 1024),
                                      "app/zeros": bytes(100 * 1024)}))
    return [build_image([base], [parse_reference(BASE)]),
            build_image([base, app], [parse_reference(APP)], config={"Cmd": ["/app/a.bin"]})]


class Expected:
    """What an image is called everywhere, as the layout holds it."""

    def __init__(self, image):
        self.id = image.id
        self.diff_ids = list(image.diff_ids)
        self.manifest_digest = image.manifest_digest
        self.blobs = [layer.blob_digest for layer in image.layers]
        self.config_bytes = image.config_bytes


class Built:
    """One compression's OCI layout of the two images, its docker-archive and oci-archive, and the expected names."""

    def __init__(self, work, compression):
        layout = os.path.join(work, "layout")
        LayoutStore(layout).import_images(make_images(), compression=compression)
        self.paths = {fmt: os.path.join(work, "images.%s.tar" % fmt) for fmt in FORMATS}
        with open_archive(layout) as opened:
            for fmt, path in self.paths.items():
                save_archive(opened.images, path, fmt)
            self.expected = {image.repo_tags[0]: Expected(image) for image in opened.images}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return {compression: Built(str(tmp_path_factory.mktemp("compressed-" + compression)), compression)
            for compression in COMPRESSIONS}


@pytest.fixture(params=generation_params())
def generation(request):
    gen = request.param
    if gen.missing:
        pytest.skip("%s cannot run here: %s" % (gen.name, gen.missing))
    return gen


def refusal(generation, compression):
    """The error ``generation`` gives for layers of ``compression``, or None where it reads them."""
    if generation.kind == "docker" and int(generation.version.split(".")[0]) < 23 and compression == "zstd":
        return OLD_DOCKER_ON_ZSTD
    return None


def read_member(path, name):
    with tarfile.open(path) as tar:
        return tar.extractfile(name).read()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_archives_point_at_the_compressed_blobs(built, compression):
    made = built[compression]
    docker_archive, oci_archive = made.paths["docker-archive"], made.paths["oci-archive"]
    items = json.loads(read_member(docker_archive, "manifest.json"))
    assert [item["RepoTags"] for item in items] == [[BASE], [APP]]
    for item in items:
        want = made.expected[item["RepoTags"][0]]
        assert item["Config"] == blob_path(want.id) and item["Layers"] == [blob_path(blob) for blob in want.blobs]
        assert not set(want.blobs) & set(want.diff_ids)  # compressed blobs, not the uncompressed tars
        for path in item["Layers"]:
            assert detect(read_member(docker_archive, path)[:8]) == compression
    for path in (docker_archive, oci_archive):
        index = json.loads(read_member(path, "index.json"))
        manifests = [entry["digest"] for entry in index["manifests"]]
        assert manifests == [made.expected[name].manifest_digest for name in (BASE, APP)]
        with open_archive(path) as archive:
            for image in archive.images:
                want = made.expected[image.repo_tags[0]]
                assert (image.manifest_digest, image.id) == (want.manifest_digest, want.id)
                assert [layer.compression for layer in image.layers] == [compression] * len(image.layers)


def chain_ids(diff_ids):
    """The snapshot keys containerd unpacks ``diff_ids`` into."""
    chain = [diff_ids[0]]
    for diff_id in diff_ids[1:]:
        chain.append("sha256:" + hashlib.sha256(("%s %s" % (chain[-1], diff_id)).encode()).hexdigest())
    return chain


def config_digest_in_containerd(ctr, manifest_digest, namespace):
    """The config digest the manifest that containerd holds names."""
    return json.loads(ctr("content", "get", manifest_digest, namespace=namespace).stdout)["config"]["digest"]


def assert_holds(target, expected):
    """``target`` holds each image as ``expected``: its ID (config digest, or manifest digest where the engine keys on
    manifests) and DiffIDs, as the engine's own CLI reports them."""
    gen, engine = target.generation, target.engine
    keyed_on_manifest = gen.kind == "containerd" or gen.store == "containerd"
    ids = {name: want.manifest_digest if keyed_on_manifest else want.id for name, want in expected.items()}
    assert target.tags() == ids
    for name, want in expected.items():
        if gen.kind == "containerd":
            assert config_digest_in_containerd(engine.ctr, want.manifest_digest, engine.namespace) == want.id
            held = set(engine.ctr("snapshots", "ls").stdout.split())
            assert set(chain_ids(want.diff_ids)) <= held, "not unpacked: %s" % held  # decompressed, DiffIDs checked
            continue
        info = json.loads(engine.cli("image", "inspect", name).stdout)[0]
        assert info["RootFS"]["Layers"] == want.diff_ids
        if gen.store == "containerd":
            assert config_digest_in_containerd(engine.containerd.ctr, want.manifest_digest, "moby") == want.id
        else:
            assert "sha256:" + info["Id"].split(":")[-1] == want.id


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_engine_cli_loads(engines, generation, built, compression):
    made = built[compression]
    # `docker load` reads docker-archives; `podman load` an oci-archive of one image only (skopeo reads ours, below)
    formats = FORMATS if generation.kind == "containerd" else FORMATS[:1]
    for fmt in formats:
        target = Target(generation, engines.engine(generation))
        error = refusal(generation, compression)
        if error is None:
            target.load(made.paths[fmt])
            assert_holds(target, made.expected)
        else:
            with pytest.raises(EngineCommandError) as failed:
                target.load(made.paths[fmt])
            assert error in failed.value.stderr and target.tags() == {}
        engines.stop(target.engine)


def skopeo_122(*args):
    return run_command(chroot_command(["skopeo", "--insecure-policy"] + list(args)))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("version", ["skopeo19", "skopeo122"])
def test_skopeo_copies_to_an_oci_layout(skopeo, built, compression, fmt, version, tmp_path):
    made = built[compression]
    run = skopeo.run if version == "skopeo19" else skopeo_122
    for name, want in made.expected.items():
        dest = str(tmp_path / parse_reference(name).familiar_name().split("/")[-1])  # no ":" in oci:PATH
        run("copy", "%s:%s:%s" % (fmt, made.paths[fmt], name), "oci:%s:copied" % dest)
        with open_archive(dest) as copied:
            (image,) = copied.images
            assert image.diff_ids == want.diff_ids
            for layer in image.layers:  # every layer skopeo wrote unpacks to the DiffID it is listed under
                with layer.open() as stream:
                    drain(stream)
            if fmt == "oci-archive":  # OCI to OCI: the manifest, config and blobs as they were
                assert (image.manifest_digest, image.id) == (want.manifest_digest, want.id)
                assert [layer.blob_digest for layer in image.layers] == want.blobs
            else:  # skopeo converts the Docker manifest to OCI and re-serialises the config (other key order)
                assert json.loads(image.config_bytes) == json.loads(want.config_bytes)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_image_load_module(playbook, engines, generation, built, compression):
    made = built[compression]
    target = Target(generation, engines.engine(generation))
    args = dict(src=made.paths["docker-archive"], **target.options())
    # Docker < 23 cannot read zstd layers (refusal() says what its own `docker load` prints): image_load sends it
    # those images with their layers uncompressed; that Docker knows images by config digest, which stays.
    loaded, word = run_task(playbook, "load", "airgap.images.image_load", args, target)
    assert word == "changed" and sorted(loaded["loaded"]) == sorted(want.id for want in made.expected.values())
    assert_holds(target, made.expected)
    again, word = run_task(playbook, "load again", "airgap.images.image_load", args, target)
    assert word == "ok" and not again["changed"] and again["loaded"] == [] and len(again["present"]) == 2
    assert_holds(target, made.expected)
