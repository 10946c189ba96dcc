# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No file handle or socket outlives the operation that opened it, through any store.

The first test repeats every operation the modules do against one store (load, plan, find, held layers, export
and read every layer, save an archive, read and verify it, separate it and load an app back from its tarballs)
three times on one open store, counting the entries of /proc/self/fd after each round; the second repeats a load
the store refuses. A live store may keep its HTTP connections pooled, so round 1 warms the pool and rounds 2 and
3 must end where it ended; after ``close()`` the count must be back where it was before the store was opened.
"""

import gc
import os

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats import separated
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.digest import drain
from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.loading import images_sender, plan_load, run_load
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
from ansible_collections.airgap.images.tests.system.engines import seeded_bytes

ENGINES = ("docker", "podman", "containerd", "registry", "oci")
APPS = 20
ROUNDS = 3
BASE_NAME = "airgap-leak/base:1"


def open_fds():
    """{fd: what it points at} of this process, after the garbage collector has run."""
    gc.collect()
    folder = "/proc/self/fd"
    found = {}
    for name in os.listdir(folder):
        try:
            found[int(name)] = os.readlink(os.path.join(folder, name))
        except FileNotFoundError:  # the descriptor os.listdir itself used
            continue
    return found


def assert_same_fds(before, after, when):
    opened = {fd: target for fd, target in after.items() if before.get(fd) != target}
    closed = {fd: target for fd, target in before.items() if after.get(fd) != target}
    assert len(after) == len(before), "%s: %d descriptors, not %d; new %s, gone %s" % (
        when, len(after), len(before), opened, closed)


@pytest.fixture(scope="module")
def images():
    """A base image and ``APPS`` distinct apps on it, each with one small layer of its own."""
    base_layer = layer_from_bytes(layer_tar({"etc": None, "etc/os-release": b"ID=airgap-leak\n"}), "base layer")
    base = build_image([base_layer], [parse_reference(BASE_NAME)])
    apps = []
    for index in range(APPS):
        layer = layer_from_bytes(layer_tar({"app": None, "app/data.bin": seeded_bytes(64 * 1024, index)}), "app %d layer" % index)
        apps.append(build_image([base_layer, layer], [parse_reference("airgap-leak/app-%d:1" % index)]))
    return base, apps


def store_address(request, engine, workdir):
    """Where the store for ``engine`` lives: the session's engine (started now, before any count) or a directory."""
    if engine == "docker":
        return request.getfixturevalue("dockerd").host
    if engine == "podman":
        return "unix://" + request.getfixturevalue("podman").service()
    if engine == "containerd":
        return request.getfixturevalue("containerd").address
    if engine == "registry":
        return request.getfixturevalue("registry").host
    return os.path.join(workdir, "layout")


def read_every_layer(images_read):
    """Read (and so verify) every layer of every image; returns the bytes read."""
    total = 0
    for image in images_read:
        for layer in image.layers:
            with layer.open() as stream:
                total += drain(stream)
    return total


def load_separated_apps(store, base, apps, dest):
    """Separate ``apps`` at ``base`` into ``dest``, then load each app back from its tarballs (image_load's path)."""
    parts, entries = separated.plan(apps, base, None, "none", None)
    separated.write(dest, parts, entries, base, None, "none")
    manifest = separated.read_manifest(dest)
    for app in apps:
        key, entry = separated.find_entry(manifest, app.repo_tags[0], dest)
        files = separated.entry_files(dest, entry)
        separated.verify_files(files, entry)
        with separated.SeparatedImage(files, key) as assembled:
            assert read_every_layer([assembled.image]) == app.size
            plan = plan_load(store, [assembled.image])
            plan.to_load = [assembled.image]  # as force: true does, so the load itself runs every round
            run_load(store, plan, images_sender(store))


def one_round(store, base, apps, workdir):
    """Every operation the modules do against ``store``, each checked to have done its work."""
    everything = [base] + apps
    store.load_images(everything)
    # a few, not all: each containerd find reads every image of the namespace (44 ctr calls here)
    assert not plan_load(store, everything[:3]).changed, "%s lacks images it just loaded" % store
    if store.kind != "registry":  # a registry cannot list what it holds
        assert base.diff_ids[0] in store.held_layers()
    archive_path = os.path.join(workdir, "from-store.tar")
    with store.open_images([image.repo_tags[0] for image in everything], workdir) as exported:
        assert sorted(image.id for image in exported) == sorted(image.id for image in everything)
        assert read_every_layer(exported) == sum(image.size for image in everything)
        save_archive(exported, archive_path)
    with open_archive(archive_path) as archive:
        by_id = {image.id: image for image in archive.images}
        assert read_every_layer(archive.images) == sum(image.size for image in everything)
        load_separated_apps(store, by_id[base.id], [by_id[app.id] for app in apps[:2]], os.path.join(workdir, "separated"))


def check_descriptors(engine, address, operation):
    """Open the store, run ``operation(store)`` ROUNDS times, close it; returns the closed store.

    The count must not grow after round 1 (which may leave pooled connections open), and after ``close()`` it
    must be what it was before the store was opened.
    """
    before_open = open_fds()
    store = open_store(engine, address, insecure_http=True)
    after_round = []
    for _round in range(ROUNDS):
        operation(store)
        after_round.append(open_fds())
    for number in range(1, ROUNDS):
        assert_same_fds(after_round[0], after_round[number], "%s after round %d against round 1" % (store, number + 1))
    store.close()
    assert_same_fds(before_open, open_fds(), "%s after close()" % store)
    return store


@pytest.mark.parametrize("engine", ENGINES)
def test_no_descriptor_outlives_its_operation(engine, images, request, tmp_path):
    base, apps = images
    address = store_address(request, engine, str(tmp_path))
    store = check_descriptors(engine, address, lambda store: one_round(store, base, apps, str(tmp_path)))
    assert store.find(BASE_NAME) is not None, "%s is not usable after close()" % store


@pytest.fixture(scope="module")
def thin_archive(tmp_path_factory):
    """An archive of one app without its base layer, a layer no store has ever been given."""
    base_layer = layer_from_bytes(layer_tar({"etc": None, "etc/unseen": seeded_bytes(4096, 1000)}), "unseen base layer")
    app_layer = layer_from_bytes(layer_tar({"app": None, "app/data.bin": seeded_bytes(4096, 1001)}), "thin app layer")
    app = build_image([base_layer, app_layer], [parse_reference("airgap-leak/thin:1")])
    path = str(tmp_path_factory.mktemp("thin") / "thin.tar")
    save_archive([app], path, omit_layers=[base_layer.diff_id])
    return path, base_layer.diff_id


@pytest.mark.parametrize("engine", ENGINES)
def test_a_refused_load_leaves_nothing_open(engine, thin_archive, request, tmp_path):
    path, missing = thin_archive

    def refused_load(store):
        with open_archive(path) as archive:
            with pytest.raises(ImageError):
                store.load_images(archive.images, omit_layers=[missing])

    check_descriptors(engine, store_address(request, engine, str(tmp_path)), refused_load)
