# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An image keeps its manifest digest at every hop, on real engines (issue "keep every image's identity end to end").

The source is made as upstream images are: two gzip-compressed layers, pushed with skopeo to a registry, whose
``Docker-Content-Digest`` is the digest to keep.  ``ctr pull`` brings it into containerd (2.1; 1.6 for comparison);
image_save writes a docker-archive and an oci-archive of it; image_load puts each into a fresh engine of every
generation and into a second registry.  Each engine's own tool says what digest it knows the image by afterwards.
Engines that key images on the manifest digest (containerd, Docker's containerd store, a registry) must show the
source's; Docker's classic store keys on the config digest only: it must show the source's image ID, and the module
must say there that the digest was not kept.  Podman keys on the config digest but keeps the manifest too (its
DIGEST column shows the source's).  The hops are written to .build/identity-hops.md.
"""

import hashlib
import os
import urllib.request

import pytest

from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.model import MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_MANIFEST
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore
from ansible_collections.airgap.images.tests.system.engines import find_generation, generations, seeded_bytes
from ansible_collections.airgap.images.tests.system.matrix import marker_name
from ansible_collections.airgap.images.tests.system.playbooks import Playbook
from ansible_collections.airgap.images.tests.system.test_matrix import fresh, run_task

REPO, TAG = "identity/app", "1"
FORMATS = ("docker-archive", "oci-archive")
SOURCES = ("containerd21", "containerd16")
KEEPERS = ("containerd21", "containerd16", "docker28-containerd-store", "registry")
CONFIG_ONLY = ("docker20", "docker28")
PODMANS = ("podman43", "podman58")
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
TABLE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          ".build", "identity-hops.md")
COLUMNS = ("ctr pull", "saved docker-archive", "saved oci-archive", "loaded docker-archive", "loaded oci-archive",
           "image ID")


def runnable(name):
    """The generation called ``name``; skips the test when it cannot run here."""
    gen = find_generation(name)
    if gen.missing:
        pytest.skip("%s cannot run here: %s" % (gen.name, gen.missing))
    return gen


def params(names):
    """(target, format) pytest params, marked with the generation's marker (the registry has none)."""
    known = {gen.name for gen in generations()}
    marks = {name: [getattr(pytest.mark, marker_name(find_generation(name)))] if name in known else []
             for name in names}
    return [pytest.param(name, fmt, id="%s-%s" % (name, fmt), marks=marks[name]) for name in names for fmt in FORMATS]


def short(digest):
    return digest[:19] if digest else "none"


def registry_digest(registry, repo=REPO, tag=TAG):
    """The ``Docker-Content-Digest`` a registry answers ``HEAD /v2/<repo>/manifests/<tag>`` with."""
    request = urllib.request.Request("%s/v2/%s/manifests/%s" % (registry.url, repo, tag), method="HEAD",
                                     headers={"Accept": ACCEPT})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
        return response.headers["Docker-Content-Digest"]


def engine_digest(target, name):
    """The digest the engine's own CLI lists for ``name``: containerd's target, Docker's and Podman's DIGEST column."""
    if target.kind == "containerd":
        return target.tags().get(name)
    lines = target.engine.cli("images", "--digests", "--no-trunc", "--format",
                              "{{.Repository}}:{{.Tag}} {{.Digest}}").stdout.splitlines()
    listed = dict(line.split() for line in lines if line.strip())
    return None if listed.get(name) in (None, "<none>") else listed[name]


def raw_manifest_digest(skopeo, archive):
    """sha256 of the manifest skopeo reads raw from ``archive`` as an OCI layout (our docker-archive is one too)."""
    raw = skopeo.run("inspect", "--raw", "oci-archive:" + archive, text=False).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def file_digest(path):
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()  # small archives


class RegistryTarget:
    """A registry as image_load's target (for run_task): its module options and a plain environment."""

    kind = "registry"

    def __init__(self, registry):
        self.registry = registry

    def options(self):
        return {"engine": "registry", "engine_host": self.registry.host, "insecure_registry": True}

    def environment(self):
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


class Upstream:
    """The source image in its registry: reference, the registry's manifest digest, the config digest."""

    def __init__(self, name, digest, config_digest):
        self.name = name
        self.digest = digest
        self.config_digest = config_digest


class HopTable:
    """The digest each engine knows the image by after each hop, as a markdown table."""

    def __init__(self):
        self.before = None
        self.rows = {}

    def row(self, engine):
        return self.rows.setdefault(engine, {})

    def markdown(self):
        lines = ["| engine | digest before | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
        for engine in [name for name in dict.fromkeys(SOURCES + KEEPERS + CONFIG_ONLY + PODMANS) if name in self.rows]:
            cells = [short(self.rows[engine][column]) if column in self.rows[engine] else "-" for column in COLUMNS]
            lines.append("| %s | %s | %s |" % (engine, short(self.before), " | ".join(cells)))
        lines += ["", "none: the engine lists no digest for the image; it knows it by its config digest (image ID)."]
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def hops():
    """The module's :class:`HopTable`, written to .build/identity-hops.md when the module ends."""
    table = HopTable()
    yield table
    if table.rows:
        os.makedirs(os.path.dirname(TABLE_PATH), exist_ok=True)
        with open(TABLE_PATH, "w", encoding="utf-8") as out:
            out.write(table.markdown())


@pytest.fixture(scope="module")
def upstream(engines, skopeo, hops, tmp_path_factory):
    """A two-layer image with gzip layers, pushed by skopeo to a registry of its own."""
    registry = engines.registry()
    name = "%s/%s:%s" % (registry.host, REPO, TAG)
    base = layer_from_bytes(layer_tar({"etc": None, "etc/os-release": b"ID=identity\n"}))
    app = layer_from_bytes(layer_tar({"app": None, "app/data.bin": seeded_bytes(300 * 1024, 7)}))
    image = build_image([base, app], [parse_reference(name)], config={"Cmd": ["/app/data.bin"]})
    layout = str(tmp_path_factory.mktemp("identity-upstream") / "layout")
    LayoutStore(layout).import_images([image], compression="gzip")
    skopeo.run("copy", "--dest-tls-verify=false", "oci:%s:%s" % (layout, name), "docker://" + name)
    pushed = skopeo.inspect("docker://" + name, "--raw", "--tls-verify=false")
    assert pushed["mediaType"] == MEDIA_OCI_MANIFEST and pushed["config"]["digest"] == image.id
    assert [layer["mediaType"] for layer in pushed["layers"]] == [MEDIA_OCI_LAYER_GZIP] * 2
    digest = registry_digest(registry)
    hops.before = digest
    return Upstream(name, digest, image.id)


@pytest.fixture(scope="module")
def saves(engines, collections_path, upstream, skopeo, hops, tmp_path_factory):
    """``saves(generation name)`` -> {format: archive}: pulled with ``ctr pull`` into a fresh containerd of that
    generation and saved with image_save in each format (once per module), asserting the digest stays."""
    done = {}

    def save(name):
        if name not in done:
            work = tmp_path_factory.mktemp("identity-save-" + name)
            done[name] = save_from(Playbook(collections_path, str(work)), fresh(engines, runnable(name)), upstream,
                                   skopeo, hops.row(name), str(work))
        return done[name]

    return save


def save_from(playbook, source, upstream, skopeo, row, work):
    source.engine.ctr("images", "pull", "--plain-http", upstream.name)
    row["ctr pull"] = source.tags()[upstream.name]
    assert row["ctr pull"] == upstream.digest, "ctr pull changed the digest"
    archives = {}
    for fmt in FORMATS:
        dest = archives[fmt] = os.path.join(work, "app-%s.tar" % fmt)
        args = dict(images=[upstream.name], dest=dest, format=fmt, **source.options())
        saved, word = run_task(playbook, "save " + fmt, "airgap.images.image_save", args, source)
        assert word == "changed", saved["msg"]
        [image] = saved["images"]
        assert image["manifest"] == "kept", image
        assert (image["manifest_digest"], image["id"]) == (upstream.digest, upstream.config_digest)
        row["saved " + fmt] = raw_manifest_digest(skopeo, dest)
        assert row["saved " + fmt] == upstream.digest, "skopeo reads another manifest from the %s" % fmt
        again, word = run_task(playbook, "save %s again" % fmt, "airgap.images.image_save", args, source)
        assert word == "ok" and not again["changed"], again["msg"]
    return archives


@pytest.mark.parametrize("name", SOURCES)
def test_save_from_containerd_keeps_the_registry_digest(saves, name):
    archives = saves(name)
    if name != SOURCES[0] and not find_generation(SOURCES[0]).missing:  # the same image gives the same bytes
        assert {fmt: file_digest(path) for fmt, path in archives.items()} == \
            {fmt: file_digest(path) for fmt, path in saves(SOURCES[0]).items()}


def load(playbook, target, archive, upstream):
    """image_load ``archive`` into ``target``, then again (ok); returns the module's report on the image."""
    args = dict(src=archive, **target.options())
    loaded, word = run_task(playbook, "load", "airgap.images.image_load", args, target)
    assert word == "changed" and loaded["loaded"] == [upstream.config_digest], loaded["msg"]
    [image] = loaded["images"]
    assert (image["manifest_digest"], image["id"]) == (upstream.digest, upstream.config_digest)
    again, word = run_task(playbook, "load again", "airgap.images.image_load", args, target)
    assert word == "ok" and not again["changed"] and again["loaded"] == [], again["msg"]
    assert again["images"][0]["target_digest"] == image["target_digest"]
    return image


@pytest.mark.parametrize("name, fmt", params(KEEPERS))
def test_load_keeps_the_manifest_digest(playbook, engines, saves, upstream, hops, name, fmt):
    archive = saves("containerd21")[fmt]
    if name == "registry":
        target = RegistryTarget(engines.registry())
    else:
        target = fresh(engines, runnable(name))
    image = load(playbook, target, archive, upstream)
    assert image["digest_kept"] is True and image["target_digest"] == upstream.digest, image
    row = hops.row(name)
    if name == "registry":
        seen = row["loaded " + fmt] = registry_digest(target.registry)
    elif target.kind == "containerd":
        seen = row["loaded " + fmt] = target.tags()[upstream.name]
    else:  # Docker's containerd store: the image ID is the manifest digest, and the DIGEST column lists it too
        [row["image ID"]] = target.engine.cli("image", "inspect", "--format", "{{.Id}}", upstream.name).stdout.split()
        assert row["image ID"] == upstream.digest
        seen = row["loaded " + fmt] = engine_digest(target, upstream.name)
    assert seen == upstream.digest, "%s knows the image by %s, the source by %s" % (name, seen, upstream.digest)


@pytest.mark.parametrize("name, fmt", params(CONFIG_ONLY))
def test_load_where_only_the_config_digest_is_kept(playbook, engines, saves, upstream, hops, name, fmt):
    archive = saves("containerd21")[fmt]
    target = fresh(engines, runnable(name))
    image = load(playbook, target, archive, upstream)
    assert image["digest_kept"] is False and image["target_digest"] is None, image
    row = hops.row(name)
    row["image ID"] = target.tags()[upstream.name]
    assert row["image ID"] == upstream.config_digest
    row["loaded " + fmt] = engine_digest(target, upstream.name)
    assert row["loaded " + fmt] is None, "Docker's classic store lists a digest: the module should report it"


@pytest.mark.parametrize("name, fmt", params(PODMANS))
def test_load_into_podman_keeps_both_digests(playbook, engines, saves, upstream, hops, name, fmt):
    archive = saves("containerd21")[fmt]
    target = fresh(engines, runnable(name))
    image = load(playbook, target, archive, upstream)
    row = hops.row(name)
    row["image ID"] = target.tags()[upstream.name]
    assert row["image ID"] == upstream.config_digest
    row["loaded " + fmt] = engine_digest(target, upstream.name)
    assert row["loaded " + fmt] == upstream.digest, "podman knows the image by another manifest"
    assert image["digest_kept"] and image["target_digest"] == upstream.digest, image  # among Podman's RepoDigests
