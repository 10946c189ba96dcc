# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Archives other tools wrote, on every engine generation of the matrix (issue 11, "Archives other tools wrote").

The real tools write the archives: ``docker save`` (Docker 20.10; Docker 28 classic and with the containerd image
store), ``podman save`` (4.3, 5.8), ``skopeo copy`` (1.9, 1.22), ``ctr images export`` (containerd 1.6, 2.1) and
``crane pull`` (0.20).  Each archive is read with our core, every layer to its end (so every DiffID and blob digest is
checked), and compared with what skopeo reads from the same archive (config digests, layer counts) and with what
the engine that made it reports (DiffIDs, tags).  A generation that cannot run here is skipped with the reason.
"""

import hashlib
import json
import os
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.compression import GZIP, detect
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError
from ansible_collections.airgap.images.tests.system.engines import (
    CURRENT_BINS, CURRENT_CHROOT, CURRENT_SETUP, EngineError, build_test_images, chroot_command, run_command)
from ansible_collections.airgap.images.tests.system.matrix import generation_params
from ansible_collections.airgap.images.tests.system.test_interop import familiar, read_and_verify

pytestmark = pytest.mark.engines

APP_A, APP_B = "airgap-test/app-a:1", "airgap-test/app-b:1"
APPS = [APP_A, APP_B]
UNTAGGED = "airgap-test/untagged:1"
CRANE = os.path.join(CURRENT_BINS, "usr", "bin", "crane")
REGISTRY_REPO = "interop-generations"  # pushed as 127.0.0.1:PORT/interop-generations/app-a:1


def runnable(generation):
    """``generation`` when it can run here; else the test is skipped with the reason."""
    if generation.missing:
        pytest.skip("%s cannot run here: %s" % (generation.name, generation.missing))
    return generation


# ---- skopeo, as a writer and as the reference reader ------------------------------------------------------------


class SkopeoTool:
    """One skopeo generation: Debian 12's 1.9 (``engines.Skopeo``, private config) or Debian unstable's 1.22 in the
    chroot (its own /etc/containers; the host's /tmp is visible there).  ``run(*args)`` runs
    ``skopeo --insecure-policy ARGS``."""

    def __init__(self, name, run):
        self.name = name
        self.run = run

    def __repr__(self):
        return "SkopeoTool(%s)" % self.name

    def image_view(self, ref):
        """(config digest, layer count) of one image as skopeo reads it; the raw config must hash to the digest."""
        manifest = json.loads(self.run("inspect", "--raw", ref).stdout)
        config = self.run("inspect", "--raw", "--config", ref, text=False).stdout
        assert "sha256:" + hashlib.sha256(config).hexdigest() == manifest["config"]["digest"], ref
        return manifest["config"]["digest"], len(manifest["layers"])

    def archive_view(self, transport, path):
        """{config digest: layer count} of every image skopeo finds in the archive at ``path``."""
        return dict(self.image_view(ref) for ref in image_refs(transport, path))


def current_skopeo_run(*args, **kwargs):
    """skopeo 1.22 inside Debian unstable's chroot."""
    return run_command(chroot_command(["skopeo", "--insecure-policy"] + list(args)), **kwargs)


def current_skopeo_missing():
    if not os.path.exists(os.path.join(CURRENT_CHROOT, "usr", "bin", "skopeo")):
        return "skopeo from Debian unstable is not set up: run %s" % CURRENT_SETUP
    return None


def skopeo_tool(source, skopeo):
    """The ``system`` skopeo (1.9, through the ``skopeo`` fixture) or the ``current`` one (1.22; skipped when the
    chroot is not set up)."""
    if source == "system":
        return SkopeoTool("skopeo19", skopeo.run)
    missing = current_skopeo_missing()
    if missing:
        pytest.skip(missing)
    return SkopeoTool("skopeo122", current_skopeo_run)


def image_refs(transport, path):
    """skopeo references to each image of the archive: ``docker-archive:P:@N`` per manifest.json entry; for an OCI
    layout ``oci:P`` when it holds one entry, else ``oci:P:REF`` per ``ref.name`` (``oci:P:@N`` for an unnamed one)."""
    if transport == "docker-archive":
        return ["docker-archive:%s:@%d" % (path, n) for n in range(len(archive_json(path, "manifest.json")))]
    entries = archive_json(path, "index.json")["manifests"]
    if len(entries) == 1:
        return ["%s:%s" % (transport, path)]
    names = [(entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") for entry in entries]
    return ["%s:%s:%s" % (transport, path, name or "@%d" % n) for n, name in enumerate(names)]


def archive_json(path, name):
    """One JSON file of a tar archive or a layout directory, as the tool wrote it."""
    if os.path.isdir(path):
        with open(os.path.join(path, name), "rb") as handle:
            return json.load(handle)
    with tarfile.open(path) as tar:
        return json.load(tar.extractfile(name))


def assert_reads_as_skopeo(path, transport, reader, expected):
    """Read every layer of the archive; the config digests and layer counts are skopeo's, the DiffIDs and the
    (familiar) names are ``expected`` ({tuple of DiffIDs: sorted names}).  Returns (format, {config digest: (tags,
    DiffIDs)})."""
    archive_format, ours = read_and_verify(path)
    assert {digest: len(diff_ids) for digest, (_tags, diff_ids) in ours.items()} == reader.archive_view(transport, path)
    assert {tuple(diff_ids): familiar(tags) for tags, diff_ids in ours.values()} == expected
    return archive_format, ours


def seed_truth(docker_images, names):
    """{tuple of DiffIDs: [name]} of the session's test images (Debian 12's dockerd built them)."""
    return {tuple(docker_images[name].diff_ids): [name] for name in names}


@pytest.fixture(scope="module")
def reader(skopeo):
    """The skopeo that reads every archive for comparison: the newest that runs here."""
    return skopeo_tool("system" if current_skopeo_missing() else "current", skopeo)


@pytest.fixture(scope="module")
def seed(docker_images_archive):
    """The four test images as Debian 12's ``docker save`` wrote them: what podman, ctr and the registry start from."""
    return docker_images_archive


@pytest.fixture(scope="module")
def skopeo_seed(dockerd, docker_images, tmp_path_factory):
    """app-a alone as Debian 12's ``docker save`` wrote it: what ``skopeo copy`` starts from.  (Neither skopeo 1.9
    nor 1.22 copies app-a from :func:`seed` to docker-archive: or dir:: Docker 20.10 writes each layer once and
    symlinks it from the other images' chains, and skopeo takes the link's size, 0, for the layer's: "archive/tar:
    write too long", "Size mismatch ... expected 0".  We read that archive: test_interop.py.)"""
    path = str(tmp_path_factory.mktemp("skopeo-seed") / "app-a.tar")
    dockerd.cli("save", "-o", path, APP_A)
    return path


# ---- docker save ------------------------------------------------------------------------------------------------


class DockerSource:
    """A dockerd of one generation holding the test images, an untagged image and what it reports of them."""

    def __init__(self, generation, daemon, built, untagged_id):
        self.generation = generation
        self.daemon = daemon
        self.built = built
        self.untagged_id = untagged_id

    def layers(self, image):
        return tuple(self.daemon.inspect(image)[0]["RootFS"]["Layers"])


def make_untagged(daemon, directory):
    """An image that lost its only tag to a newer build of the same name (``<none>``); returns its ID."""
    ids = []
    for version in ("1", "2"):
        context = os.path.join(directory, "untagged-" + version)
        os.makedirs(context)
        with open(os.path.join(context, "Dockerfile"), "w", encoding="utf-8") as handle:
            handle.write("FROM airgap-test/lib:1\nLABEL org.airgap.untagged=%s\n" % version)
        daemon.cli("build", "--quiet", "--network", "none", "-t", UNTAGGED, context)
        ids.append(daemon.inspect(UNTAGGED)[0]["Id"])
    assert ids[0] != ids[1]
    return ids[0]


@pytest.fixture(scope="module", params=generation_params("docker"))
def docker_source(request, engines, tmp_path_factory):
    generation = runnable(request.param)
    daemon = engines.dockerd(generation=generation)
    work = str(tmp_path_factory.mktemp("build-" + generation.name))
    built = build_test_images(daemon, work)
    yield DockerSource(generation, daemon, built, make_untagged(daemon, work))
    engines.stop(daemon)


def test_docker_save_of_tagged_images(docker_source, reader, tmp_path):
    path = str(tmp_path / "tagged.tar")
    docker_source.daemon.cli("save", "-o", path, *APPS)
    expected = {docker_source.layers(name): [name] for name in APPS}
    ours = assert_reads_as_skopeo(path, "docker-archive", reader, expected)
    assert_docker_ids(docker_source, path, ours, APPS)


def test_docker_save_of_an_untagged_image_by_id(docker_source, reader, tmp_path):
    path = str(tmp_path / "untagged.tar")
    assert "<none>" in docker_source.daemon.cli("images", "--no-trunc").stdout
    docker_source.daemon.cli("save", "-o", path, docker_source.untagged_id)
    expected = {docker_source.layers(docker_source.untagged_id): []}
    ours = assert_reads_as_skopeo(path, "docker-archive", reader, expected)
    assert_docker_ids(docker_source, path, ours, [docker_source.untagged_id])


def test_docker_save_of_a_tagged_image_by_id(docker_source, reader, tmp_path):
    path = str(tmp_path / "by-id.tar")
    image_id = docker_source.built[APP_B].id
    docker_source.daemon.cli("save", "-o", path, image_id)
    expected = {docker_source.layers(APP_B): []}  # saved by ID: docker writes no RepoTags
    ours = assert_reads_as_skopeo(path, "docker-archive", reader, expected)
    assert_docker_ids(docker_source, path, ours, [image_id])


def assert_docker_ids(docker_source, path, ours, names):
    """Docker 25+ archives are also OCI layouts.  Classic store: the image ID is the config digest.  Containerd
    store: the ID (the manifest or index digest) is among the digests we read."""
    archive_format, images = ours
    ids = [docker_source.daemon.inspect(name)[0]["Id"] for name in names]
    major = int(docker_source.generation.version.split(".")[0])
    assert archive_format == ("docker-archive+oci" if major >= 25 else "docker-archive")
    if docker_source.generation.store != "containerd":
        assert sorted(images) == sorted(ids)
        return
    with open_archive(path) as archive:
        assert set(ids) <= {digest for image in archive.images for digest in image.digests}


# ---- podman save ------------------------------------------------------------------------------------------------

PODMAN_SAVES = {  # id: (podman save options, images, transport skopeo reads it with)
    "docker-archive": (["--format", "docker-archive"], [APP_A], "docker-archive"),
    "docker-archive-multi": (["-m", "--format", "docker-archive"], APPS, "docker-archive"),
    "oci-archive": (["--format", "oci-archive"], [APP_A], "oci-archive"),
    "oci-dir": (["--format", "oci-dir"], [APP_A], "oci"),
}


@pytest.fixture(scope="module", params=generation_params("podman"))
def podman_source(request, engines, seed):
    """A podman of one generation that loaded the seed archive."""
    podman = engines.podman(generation=runnable(request.param))
    podman.cli("load", "-i", seed)
    yield podman
    engines.stop(podman)


def podman_view(podman, names):
    """{tuple of DiffIDs: sorted names} as ``podman image inspect`` reports the images (it loaded Docker's
    ``airgap-test/app-a:1`` as ``localhost/airgap-test/app-a:1``)."""
    documents = json.loads(podman.cli("image", "inspect", *names).stdout)
    return {tuple(doc["RootFS"]["Layers"]): sorted(doc["RepoTags"]) for doc in documents}


@pytest.mark.parametrize("save", sorted(PODMAN_SAVES))
def test_podman_save(podman_source, save, reader, docker_images, tmp_path):
    options, names, transport = PODMAN_SAVES[save]
    path = str(tmp_path / ("podman-" + save))  # under /tmp: podman 5.8's chroot sees it at the same path
    podman_source.cli("save", *(options + ["-o", path] + names))
    expected = podman_view(podman_source, names)
    assert sorted(expected) == sorted(seed_truth(docker_images, names))  # podman holds the layers Docker built
    archive_format, ours = assert_reads_as_skopeo(path, transport, reader, expected)
    assert archive_format == {"oci": "oci-dir"}.get(transport, transport)
    if transport == "docker-archive":  # podman keeps the config as loaded: the IDs are Docker 20.10's
        assert sorted(ours) == sorted(docker_images[name].id for name in names)


def test_podman_docker_dir_is_refused_as_what_it_is(podman_source, tmp_path):
    path = str(tmp_path / "podman-docker-dir")
    podman_source.cli("save", "--format", "docker-dir", "-o", path, APP_A)
    assert_refused_as_dir_transport(path)


def assert_refused_as_dir_transport(path):
    with pytest.raises(ArchiveError) as refused:
        open_archive(path)
    message = str(refused.value)
    assert path in message and "`dir:`" in message and "skopeo copy dir:" in message, message


# ---- skopeo copy ------------------------------------------------------------------------------------------------

SKOPEO_ARCHIVES = {"docker-archive": "docker-archive", "oci-archive": "oci-archive", "oci": "oci-dir"}


@pytest.fixture(scope="module", params=["system", "current"], ids=["skopeo19", "skopeo122"])
def skopeo_writer(request, skopeo):
    return skopeo_tool(request.param, skopeo)


@pytest.mark.parametrize("transport", sorted(SKOPEO_ARCHIVES))
def test_skopeo_copy(skopeo_writer, transport, reader, skopeo_seed, docker_images, tmp_path):
    path = str(tmp_path / ("skopeo-" + transport))
    skopeo_writer.run("copy", "docker-archive:" + skopeo_seed, "%s:%s:%s" % (transport, path, APP_A))
    archive_format, ours = assert_reads_as_skopeo(path, transport, reader, seed_truth(docker_images, [APP_A]))
    assert archive_format == SKOPEO_ARCHIVES[transport]
    assert list(ours) == [skopeo_writer.image_view("%s:%s" % (transport, path))[0]]


def test_skopeo_dir_transport_is_refused_as_what_it_is(skopeo_writer, reader, skopeo_seed, docker_images, tmp_path):
    """``dir:`` is one image's manifest and blobs named by hex, not an image archive: refused, saying so (skopeo
    reads it, as the ``dir:`` transport, not as an archive)."""
    path = str(tmp_path / "skopeo-dir")
    skopeo_writer.run("copy", "docker-archive:" + skopeo_seed, "dir:" + path)
    assert reader.image_view("dir:" + path)[0] == docker_images[APP_A].id
    assert_refused_as_dir_transport(path)


# ---- registry images, as skopeo pushed them (gzip layers) --------------------------------------------------------


@pytest.fixture(scope="module")
def pushed(registry, skopeo, seed):
    """{name: reference} of the two apps pushed to the session registry with skopeo (layers gzip-compressed)."""
    refs = {}
    for name in APPS:
        refs[name] = "%s/%s/%s" % (registry.host, REGISTRY_REPO, name.split("/", 1)[1])
        skopeo.run("copy", "--dest-tls-verify=false", "docker-archive:%s:%s" % (seed, name), "docker://" + refs[name])
    return refs


def registry_truth(docker_images, pushed):
    return {tuple(docker_images[name].diff_ids): [pushed[name]] for name in APPS}


# ---- ctr images export ------------------------------------------------------------------------------------------


@pytest.fixture(params=generation_params("containerd"))
def containerd_source(request, engines):
    """An empty containerd of one generation for one test.  (Not shared: containerd 2.1 does not fetch the blobs of
    layers it has unpacked already, so a pull after an import of the same layers leaves an image that
    ``ctr images export`` refuses, "content digest ...: not found".)"""
    daemon = engines.containerd(generation=runnable(request.param))
    yield daemon
    engines.stop(daemon)


def test_ctr_export_of_imported_images(containerd_source, reader, seed, docker_images, tmp_path):
    containerd_source.ctr("images", "import", seed)
    names = ["docker.io/" + name for name in APPS]
    path = str(tmp_path / "ctr-imported.tar")
    containerd_source.export(path, names, ["--platform", "linux/amd64"])
    archive_format, ours = assert_reads_as_skopeo(path, "docker-archive", reader, seed_truth(docker_images, APPS))
    assert archive_format == "docker-archive+oci"
    assert sorted(ours) == sorted(docker_images[name].id for name in APPS)
    assert_ctr_digests(containerd_source, path, names)


def test_ctr_export_of_pulled_images(containerd_source, reader, pushed, docker_images, tmp_path):
    names = [pushed[name] for name in APPS]
    for name in names:
        containerd_source.ctr("images", "pull", "--plain-http", name)
    path = str(tmp_path / "ctr-pulled.tar")
    containerd_source.export(path, names, ["--platform", "linux/amd64"])
    assert_compressed_layers(path)
    archive_format, ours = assert_reads_as_skopeo(path, "docker-archive", reader, registry_truth(docker_images, pushed))
    assert archive_format == "docker-archive+oci"
    assert sorted(ours) == sorted(docker_images[name].id for name in APPS)
    assert_ctr_digests(containerd_source, path, names)


def assert_ctr_digests(containerd_source, path, names):
    """Each image's manifest digest, as ``ctr images ls`` lists it, is among the digests we read."""
    listed = {line.split()[0]: line.split()[2] for line in containerd_source.ctr("images", "ls").stdout.splitlines()[1:]}
    with open_archive(path) as archive:
        digests = {digest for image in archive.images for digest in image.digests}
    assert {listed[name] for name in names} <= digests


def assert_compressed_layers(path):
    """The archive holds the registry's gzip blobs (their digests are not the DiffIDs), not uncompressed layers."""
    with open_archive(path) as archive:
        layers = [layer for image in archive.images for layer in image.layers]
        kinds = set()
        for layer in layers:
            with layer.open_blob() as blob:
                kinds.add(detect(blob.read(6)))
    assert kinds == {GZIP} and all(layer.blob_digest != layer.diff_id for layer in layers), kinds


# ---- crane pull -------------------------------------------------------------------------------------------------

CRANE_FORMATS = {"oci": ("oci", "oci-dir"), "tarball": ("docker-archive", "docker-archive"),
                 "legacy": ("docker-archive", "docker-archive")}


@pytest.fixture(scope="module")
def crane():
    if not os.path.exists(CRANE):
        pytest.skip("crane is not set up: run %s" % CURRENT_SETUP)
    try:
        run_command([CRANE, "version"], check=False, timeout=30)
    except (EngineError, OSError) as exc:
        pytest.skip("%s does not run here: %s" % (CRANE, exc))
    return CRANE


@pytest.mark.parametrize("crane_format", sorted(CRANE_FORMATS))
def test_crane_pull(crane, crane_format, reader, pushed, docker_images, tmp_path):
    transport, expected_format = CRANE_FORMATS[crane_format]
    path = str(tmp_path / ("crane-" + crane_format))
    names = [pushed[name] for name in APPS]
    run_command([crane, "--insecure", "pull", "--format=" + crane_format] + names + [path])
    truth = registry_truth(docker_images, pushed)
    if crane_format == "oci":  # crane names no entry of an OCI layout
        truth = {diff_ids: [] for diff_ids in truth}
    archive_format, ours = assert_reads_as_skopeo(path, transport, reader, truth)
    assert archive_format == expected_format
    assert sorted(ours) == sorted(docker_images[name].id for name in APPS)
