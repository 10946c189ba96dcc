# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules promise, on every engine generation of the matrix (tests/system/engines.py: generations()).

Each test runs once per generation (docker20, docker28, docker28-containerd-store, containerd16, containerd21,
podman43, podman58 on Debian 12; select one with ``-m docker28`` and so on).  A generation that cannot run on this
machine is skipped with the reason.  The behaviours: save and an unchanged re-save (as is, and converted), separate
and an unchanged re-run, load and an unchanged re-load,
check mode, tag-only repair, a thin load, and the rollout role converging with a re-run that changes nothing;
each checks the status word ``ansible-playbook`` prints and that Ansible printed no warning.

On the engines that key images on manifest digests (containerd, Docker's containerd store) the IDs compared are
those digests: our archives keep the source's manifests, so an image keeps its ID at every hop.
"""

import os
import shutil
import tempfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.errors import DigestMismatchError
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import blob_path
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.docker import DockerStore
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
from ansible_collections.airgap.images.tests.system.engines import build_test_images
from ansible_collections.airgap.images.tests.system.matrix import generation_params
from ansible_collections.airgap.images.tests.system.playbooks import recap, task_status, warning_lines
from ansible_collections.airgap.images.tests.system.test_rollout import BASE, LIB, Fleet

APP_A, APP_B = "airgap-test/app-a:1", "airgap-test/app-b:1"
APPS = [APP_A, APP_B]


class Target:
    """One engine of a generation, seen through its own CLI, and the module options that reach it."""

    def __init__(self, generation, engine):
        self.generation = generation
        self.kind = generation.kind
        self.engine = engine

    def options(self):
        if self.kind == "docker":
            return {"engine": "docker", "engine_host": self.engine.host}
        if self.kind == "containerd":
            return {"engine": "containerd", "engine_host": self.engine.address}
        return {"engine": "podman", "engine_host": "unix://" + self.engine.service()}

    def environment(self):
        """The task environment: this generation's ``ctr`` first on PATH."""
        return {"PATH": self.generation.path_env()}

    def tags(self):
        """{tag: ID} as the engine's CLI lists them (containerd: the target digest; names without docker.io/)."""
        if self.kind == "containerd":
            lines = self.engine.ctr("images", "ls").stdout.splitlines()[1:]
            return {short(line.split()[0]): line.split()[2] for line in lines if line.strip()}
        cli = self.engine.cli
        lines = cli("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split()
        return {short(tag): image_id for tag, image_id in zip(lines[::2], lines[1::2]) if "<none>" not in tag}

    def load(self, archive):
        if self.kind == "containerd":
            self.engine.ctr("images", "import", "--all-platforms", archive)
        else:
            self.engine.cli("load", "-i", archive)

    def remove(self, name):
        """Remove the image ``name`` names (its other names keep it, as ``docker rmi`` does)."""
        if self.kind == "containerd":
            self.engine.ctr("images", "rm", qualified(name))
        else:
            self.engine.cli("rmi", name if self.kind == "docker" else qualified(name))

    def dangling(self):
        """Images the engine lists without a name (containerd: images registered under a bare digest)."""
        if self.kind == "containerd":
            return [name for name in self.engine.image_refs() if "@" in name or name.startswith("sha256:")]
        return self.engine.cli("images", "-q", "--filter", "dangling=true").stdout.split()

    def move_tag(self, old, new):
        """Tag ``old``'s image as ``new`` and drop the ``old`` tag (the image stays, under ``new``)."""
        if self.kind == "containerd":
            self.engine.ctr("images", "tag", qualified(old), qualified(new))
            self.engine.ctr("images", "rm", qualified(old))
        elif self.kind == "podman":
            self.engine.cli("tag", qualified(old), qualified(new))
            self.engine.cli("untag", qualified(old), qualified(old))
        else:
            self.engine.cli("tag", old, new)
            self.engine.cli("rmi", old)


def short(name):
    """Docker's familiar form of a name an engine lists (``docker.io/airgap-test/app-a:1`` -> ``airgap-test/app-a:1``)."""
    return parse_reference(name).familiar()


def qualified(name):
    return "docker.io/" + name


def run_task(playbook, name, module, args, target, check=False, diff=False):
    """Run one named task; return (result, the status word Ansible printed); fails on any Ansible warning."""
    task = {"name": name, module: args, "environment": target.environment()}
    done = playbook.play([task], check=check, diff=diff)
    assert warning_lines(done.stdout) + warning_lines(done.stderr) == [], done.stdout[-3000:]
    assert recap(done.stdout)["skipped"] == 0, done.stdout[-2000:]  # no result key made Ansible think so
    return done.results[0], task_status(done.stdout, name)


@pytest.fixture(scope="module", params=generation_params())
def generation(request):
    gen = request.param
    if gen.missing:
        pytest.skip("%s cannot run here: %s" % (gen.name, gen.missing))
    return gen


@pytest.fixture(scope="module")
def bundle(dockerd, docker_images, tmp_path_factory):
    """Our archive of the four test images (from the session's system dockerd), a lib-only archive and a thin
    archive of app-a without the lib's layers."""
    work = tmp_path_factory.mktemp("matrix-bundle")
    paths = {name: str(work / ("%s.tar" % name)) for name in ("all", "lib", "thin")}
    source = open_store("docker", dockerd.host)
    with source.open_images([BASE, LIB] + APPS, str(work)) as images:  # in the order Docker exported them
        named = {image.repo_tags[0]: image for image in images}
        save_archive([named[name] for name in [BASE, LIB] + APPS], paths["all"])
        save_archive([named[LIB]], paths["lib"])
        save_archive([named[APP_A]], paths["thin"], omit_layers=named[LIB].diff_ids)
    with open_archive(paths["thin"]) as archive:
        assert [layer.available for layer in archive.images[0].layers] == [False, False, True]
    return paths


def fresh(engines, generation):
    return Target(generation, engines.engine(generation))


@pytest.mark.parametrize("convert", [False, True], ids=["as-is", "convert"])
def test_save_then_unchanged_resave(playbook, engines, generation, bundle, docker_images, tmp_path, convert):
    """A save, then a re-save that changes nothing; with ``convert`` (new manifests, layers uncompressed) too, where
    the engine may know the images only by digests the converted archive does not have."""
    source = fresh(engines, generation)
    expected = {name: docker_images[name].diff_ids for name in APPS}
    if generation.kind == "docker":  # built there, as users' images are (Docker 28's containerd store: gzip layers)
        built = build_test_images(source.engine, str(tmp_path / "build"))
        expected = {name: built[name].diff_ids for name in APPS}  # each Docker version writes COPY layers its own way
    else:
        source.load(bundle["all"])
    dest = str(tmp_path / "apps.tar")
    args = dict(images=APPS, dest=dest, convert=convert, **source.options())
    predicted, word = run_task(playbook, "save (check)", "airgap.images.image_save", args, source, check=True)
    assert word == "changed" and predicted["changed"] and not os.path.exists(dest)
    saved, word = run_task(playbook, "save", "airgap.images.image_save", args, source)
    assert word == "changed" and saved["changed"]
    if convert:
        assert [image["manifest"] for image in saved["images"]] == ["converted", "converted"]
        if generation.kind == "containerd" or generation.store == "containerd":  # the engine's ID is the source's digest
            held = source.tags()
            assert {image["repo_tags"][0]: image["converted_from"] for image in saved["images"]} == {name: held[name] for name in APPS}
    with open_archive(dest) as archive:
        assert sorted(tag for image in archive.images for tag in image.repo_tags) == sorted(APPS)
        assert {image.repo_tags[0]: image.diff_ids for image in archive.images} == expected
    mtime = os.stat(dest).st_mtime_ns
    again, word = run_task(playbook, "save again", "airgap.images.image_save", args, source, diff=True)
    assert word == "ok" and not again["changed"], again["msg"]
    assert again["diff"]["before"] == again["diff"]["after"] and again["diff"]["before"].count("sha256:") == 2, again["diff"]
    assert os.stat(dest).st_mtime_ns == mtime


def test_load_check_mode_then_unchanged_reload(playbook, engines, generation, bundle, docker_images):
    target = fresh(engines, generation)
    if generation.kind in ("docker", "podman"):
        with open_archive(bundle["all"]) as archive:
            assert archive.as_is_regions(archive.images), "Docker and Podman are sent this file's own bytes"
    args = dict(src=bundle["all"], **target.options())
    predicted, word = run_task(playbook, "load (check)", "airgap.images.image_load", args, target, check=True)
    assert word == "changed" and len(predicted["loaded"]) == 4 and target.tags() == {}
    loaded, word = run_task(playbook, "load", "airgap.images.image_load", args, target)
    assert word == "changed" and len(loaded["loaded"]) == 4
    held = target.tags()
    assert set(held) == {BASE, LIB} | set(APPS), held
    if generation.kind == "docker" and generation.store is None:
        assert all(held[name] == docker_images[name].id for name in held)  # classic Docker: ID = config digest
    again, word = run_task(playbook, "load again", "airgap.images.image_load", args, target)
    assert word == "ok" and not again["changed"] and again["loaded"] == [] and len(again["present"]) == 4
    assert target.tags() == held


@pytest.mark.parametrize("podman_generation", generation_params("podman"))
def test_podman_reads_a_plain_archive_where_it_lies_and_loads_nothing_of_a_corrupt_one(engines, podman_generation, bundle,
                                                                                       tmp_path, monkeypatch):
    """Podman 5.8 is named the archive (``/libpod/local/images/load``) instead of being sent its bytes; Podman 4.3,
    which cannot, is sent them, and so is a Podman that does not see the file (5.8 runs in a chroot that shares only
    the host's /tmp, as a service in a container shares only what is mounted into it). A corrupt archive is refused
    before Podman sees it, so no image of it is loaded (Podman would load those before the corrupt one), and no hard
    link is left beside it."""
    if podman_generation.missing:
        pytest.skip("%s cannot run here: %s" % (podman_generation.name, podman_generation.missing))
    sent = []
    real = DockerStore.load
    monkeypatch.setattr(DockerStore, "load", lambda store, body: sent.append(1) or real(store, body))
    in_place = tuple(int(part) for part in podman_generation.version.split(".")[:2]) >= (5, 8)
    corrupt = str(tmp_path / "corrupt.tar")
    with open_archive(bundle["all"]) as archive:
        layer = archive.images[-1].layers[-1]
        offset = archive.source.resolve(blob_path(layer.stored_digest)).offset
    with open(bundle["all"], "rb") as source, open(corrupt, "wb") as out:
        data = bytearray(source.read())
        data[offset + 600] ^= 1
        out.write(bytes(data))
    unseen = tempfile.mkdtemp(prefix="airgap-unseen-", dir="/var/tmp")  # the chroot of Podman 5.8 sees the host's /tmp only
    try:
        hidden = shutil.copy(bundle["all"], unseen)
        for path, fails, named in ((corrupt, True, in_place), (bundle["all"], False, in_place), (hidden, False, False)):
            target = fresh(engines, podman_generation)
            store = open_store("podman", "unix://" + target.engine.service())
            try:
                del sent[:]
                if fails:
                    with pytest.raises(DigestMismatchError, match=layer.stored_digest):
                        store.load(path)
                    assert target.tags() == {}
                else:
                    store.load(path)
                    assert sorted(target.tags()) == sorted([BASE, LIB] + APPS)
                assert sent == ([] if named else [1]), "%s: %s" % (path, "named in place" if named else "sent the bytes")
            finally:
                store.close()
            assert not [name for name in os.listdir(os.path.dirname(path)) if name.startswith(".airgap-load-")]
    finally:
        shutil.rmtree(unseen)


def test_tag_only_repair(playbook, engines, generation, bundle):
    target = fresh(engines, generation)
    target.load(bundle["all"])
    target.move_tag(APP_A, "airgap-test/app-a:moved")
    assert APP_A not in target.tags()
    args = dict(src=bundle["all"], **target.options())
    repaired, word = run_task(playbook, "repair tags", "airgap.images.image_load", args, target)
    assert word == "changed" and repaired["loaded"] == [] and repaired["tagged"] == [APP_A], repaired["msg"]
    held = target.tags()
    assert held[APP_A] == held["airgap-test/app-a:moved"]
    again, word = run_task(playbook, "repair again", "airgap.images.image_load", args, target)
    assert word == "ok" and not again["changed"]


@pytest.fixture(scope="module")
def docker_saved(dockerd, docker_images, tmp_path_factory):  # pylint: disable=unused-argument
    """``docker save`` of the four test images by the session's dockerd (Docker 20.10: ``<id>/layer.tar``)."""
    path = str(tmp_path_factory.mktemp("matrix-docker-save") / "saved.tar")
    dockerd.cli("save", "-o", path, BASE, LIB, *APPS)
    return path


def test_a_docker_save_loads_then_reloads_unchanged(playbook, engines, generation, docker_saved, docker_images):
    """Classic Docker is sent the file as it is; Podman (familiar tags) and Docker's containerd store (no manifests:
    it would make its own) our archive of it, and the latter then knows each image by the manifest we made."""
    if generation.kind not in ("docker", "podman"):
        pytest.skip("only Docker and Podman are sent archives as they are (ctr imports the file; the rest get blobs)")
    classic = generation.kind == "docker" and generation.store is None
    with open_archive(docker_saved) as archive:
        regions = archive.as_is_regions(archive.images, with_manifests=generation.store is not None,
                                        qualified_tags=generation.kind == "podman")
        assert (regions is not None) == classic
    target = fresh(engines, generation)
    args = dict(src=docker_saved, **target.options())
    loaded, word = run_task(playbook, "load", "airgap.images.image_load", args, target)
    assert word == "changed" and len(loaded["loaded"]) == 4
    held = target.tags()
    assert set(held) == {BASE, LIB} | set(APPS), held
    if classic:
        assert all(held[name] == docker_images[name].id for name in held)
    again, word = run_task(playbook, "load again", "airgap.images.image_load", args, target)
    assert word == "ok" and not again["changed"] and len(again["present"]) == 4


def test_thin_load_completes_from_held_layers(playbook, engines, generation, bundle, docker_images):
    target = fresh(engines, generation)
    target.load(bundle["lib"])
    args = dict(src=bundle["thin"], **target.options())
    loaded, word = run_task(playbook, "thin load", "airgap.images.image_load", args, target)
    assert word == "changed" and len(loaded["loaded"]) == 1, loaded["msg"]
    found = open_store(target.options()["engine"], target.options()["engine_host"]).find(APP_A)
    assert found is not None and found.diff_ids == docker_images[APP_A].diff_ids
    again, word = run_task(playbook, "thin load again", "airgap.images.image_load", args, target)
    assert word == "ok" and not again["changed"]


def test_rollout_converges_and_reruns_unchanged(collections_path, engines, generation, dockerd, docker_images, tmp_path):
    host = fresh(engines, generation)
    options = host.options()
    fleet = Fleet(collections_path, str(tmp_path), dockerd.host, {"host1": options})
    play = {"environment": host.environment()}
    recap, reports, out = fleet.run(APPS, play_options=play)
    assert recap["host1"]["failed"] == 0 and recap["host1"]["changed"] > 0, out[-3000:]
    assert warning_lines(out) == [], out[-3000:]
    held = host.tags()
    assert set(APPS) <= set(held), held
    recap, reports, out = fleet.run(APPS, play_options=play)
    assert recap["host1"]["changed"] == 0 and recap["host1"]["failed"] == 0, out[-3000:]
    assert int(reports["host1"]["shipped_bytes"]) == 0
    assert host.tags() == held


def saved_from_a_source(playbook, engines, generation, bundle, tmp_path, names):
    """A fresh engine holding the test images (built there when it is Docker, as users' images are), the archive
    image_save wrote of ``names``, and the task's result."""
    source = fresh(engines, generation)
    if generation.kind == "docker":
        build_test_images(source.engine, str(tmp_path / "build"))
    else:
        source.load(bundle["all"])
    dest = str(tmp_path / "saved.tar")
    saved, _word = run_task(playbook, "save", "airgap.images.image_save", dict(images=names, dest=dest, **source.options()), source)
    return source, dest, saved


def test_save_then_load_elsewhere_keeps_the_source_ids(playbook, engines, generation, bundle, tmp_path):
    source, dest, _saved = saved_from_a_source(playbook, engines, generation, bundle, tmp_path, APPS)
    target = fresh(engines, generation)
    loaded, word = run_task(playbook, "load", "airgap.images.image_load", dict(src=dest, **target.options()), target)
    assert word == "changed" and len(loaded["loaded"]) == 2
    assert {name: target.tags()[name] for name in APPS} == {name: source.tags()[name] for name in APPS}


def test_load_after_removing_only_the_app_touches_nothing_else(playbook, engines, generation, bundle, tmp_path):
    """The target keeps base, lib and app-b; app-a is removed and loaded again: only it changes, with its source ID."""
    source, dest, _saved = saved_from_a_source(playbook, engines, generation, bundle, tmp_path, [BASE, LIB] + APPS)
    target = fresh(engines, generation)
    run_task(playbook, "load", "airgap.images.image_load", dict(src=dest, **target.options()), target)
    before = target.tags()
    target.remove(APP_A)
    assert APP_A not in target.tags()
    loaded, word = run_task(playbook, "load after removing the app", "airgap.images.image_load",
                            dict(src=dest, **target.options()), target)
    assert word == "changed" and len(loaded["loaded"]) == 1 and len(loaded["present"]) == 3, loaded["msg"]
    assert target.tags() == before, "the base, lib and app-b are untouched and app-a has its ID again"
    assert target.tags()[APP_A] == source.tags()[APP_A]
    assert target.dangling() == [], "no image left without a name"
    again, word = run_task(playbook, "load again", "airgap.images.image_load", dict(src=dest, **target.options()), target)
    assert word == "ok" and not again["changed"]


def test_separate_then_unchanged_reseparate(playbook, engines, generation, bundle, tmp_path):
    """image_separate straight from the engine: isula-build's manifest naming every layer of each part, then a re-run
    that reads only the engine's answers and the files' remembered hashes (``ok``, no file touched); each app then
    loads from the parts into an OCI layout with the ID image_save gives it."""
    source, _archive, saved = saved_from_a_source(playbook, engines, generation, bundle, tmp_path, APPS)
    dest = str(tmp_path / "separated")
    args = dict(images=APPS, base=BASE, lib=LIB, dest=dest, **source.options())
    done, word = run_task(playbook, "separate", "airgap.images.image_separate", args, source)
    assert word == "changed" and done["changed"], done["msg"]
    manifest = done["manifest"]
    assert sorted(manifest) == APPS
    for image in saved["images"]:
        entry = manifest[image["repo_tags"][0]]
        layers = [diff_id.split(":", 1)[1] for diff_id in image["diff_ids"]]
        assert [entry["baseLayer"]] + entry["libLayers"] + entry["appLayers"] == layers
        assert entry["airgap"]["imageId"] == image["id"]
    stamps = {name: os.stat(os.path.join(dest, name)).st_mtime_ns for name in os.listdir(dest)}
    again, word = run_task(playbook, "separate again", "airgap.images.image_separate", args, source)
    assert word == "ok" and not again["changed"], again["msg"]
    assert all(item["reused"] for item in again["files"])
    assert {name: os.stat(os.path.join(dest, name)).st_mtime_ns for name in os.listdir(dest)} == stamps
    layout = dict(engine="oci", engine_host=str(tmp_path / "layout"))
    loaded, word = run_task(playbook, "load app-a", "airgap.images.image_load",
                            dict(separated=dict(dir=dest, app=APP_A), **layout), source)
    assert word == "changed" and loaded["loaded"] == [next(image["id"] for image in saved["images"] if APP_A in image["repo_tags"])]
