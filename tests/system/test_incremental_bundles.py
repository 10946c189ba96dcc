# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""image_save format=oci-dir adds to a bundle: only the blobs it lacks are read and written, prune drops what is not
asked for, a re-run is ok; through ansible-playbook, from Docker and from a registry."""

import os
import re

from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.stores.store import open_store
from ansible_collections.airgap.images.tests.system.faults import FaultProxy
from ansible_collections.airgap.images.tests.system.playbooks import task_status, warning_lines

APP_A, APP_B = "airgap-test/app-a:1", "airgap-test/app-b:1"
BLOB_GET = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")


def save_task(name, dest, images, **options):
    return {"name": name, "airgap.images.image_save": dict(images=images, dest=dest, format="oci-dir", **options)}


def blob_files(root):
    folder = os.path.join(root, "blobs", "sha256")
    return {"sha256:" + name: os.stat(os.path.join(folder, name)) for name in os.listdir(folder) if not name.startswith(".")}


def unchanged(before, after, digests):
    return all((after[d].st_ino, after[d].st_mtime_ns) == (before[d].st_ino, before[d].st_mtime_ns) for d in digests)


def test_a_bundle_from_docker_grows_by_the_new_image_and_prune_drops_the_old(playbook, dockerd, docker_images, tmp_path):
    dest = str(tmp_path / "bundle")
    engine = dict(engine="docker", engine_host=dockerd.host)
    (first,), _out = playbook.run([save_task("first", dest, [APP_A], **engine)])
    assert first["changed"] and first["blobs_written"] == 5 and first["blobs_kept"] == 0  # 3 layers, config, manifest
    before = blob_files(dest)
    done = playbook.play([save_task("add", dest, [APP_A, APP_B], **engine),
                          save_task("again", dest, [APP_A, APP_B], **engine),
                          save_task("prune", dest, [APP_B], prune=True, **engine),
                          save_task("pruned again", dest, [APP_B], prune=True, **engine)])
    added, again, pruned, pruned_again = done.results
    words = {name: task_status(done.stdout, name) for name in ("add", "again", "prune", "pruned again")}
    assert words == {"add": "changed", "again": "ok", "prune": "changed", "pruned again": "ok"}
    assert warning_lines(done.stdout) + warning_lines(done.stderr) == []
    app_a, app_b = docker_images[APP_A], docker_images[APP_B]
    assert added["blobs_written"] == 3 and added["blobs_kept"] == 5  # app-b's layer, config and manifest are new
    assert again["blobs_written"] == 0 and again["images"] and not again["changed"]
    after = blob_files(dest)
    shared = app_a.diff_ids[:2]  # base and lib, uncompressed under their DiffIDs (Docker's classic store has no manifests)
    assert unchanged(before, after, shared) and set(shared) <= set(after)
    assert app_b.id in after and app_b.diff_ids[2] in after
    assert added["bytes_written"] == sum(after[d].st_size for d in set(after) - set(before) - {app_a.diff_ids[2]})
    assert [entry["name"] for entry in pruned["pruned"]] == ["docker.io/" + APP_A]
    assert pruned["blobs_deleted"] == 3 and app_a.id not in after and app_a.diff_ids[2] not in after
    assert pruned_again["pruned"] == [] and pruned_again["blobs_deleted"] == 0
    assert [image["id"] for image in pruned_again["images"]] == [app_b.id]


def test_a_bundle_from_a_registry_fetches_only_the_missing_blobs(playbook, registry, dockerd, docker_images, tmp_path):
    names = {name: "incremental/%s" % name.split("/", 1)[1] for name in (APP_A, APP_B)}
    with open_store("docker", dockerd.host).open_images(list(names), str(tmp_path)) as images:
        by_tag = {tag: image for image in images for tag in image.repo_tags}  # an export's order is Docker's
        open_store("registry", registry.host, insecure_http=True).push(
            [by_tag[tag].with_references([parse_reference(names[tag])]) for tag in names])
    proxy = FaultProxy(int(registry.host.split(":")[1]))
    try:
        dest = str(tmp_path / "bundle")
        engine = dict(engine="registry", engine_host=proxy.host, insecure_registry=True)
        playbook.run([save_task("first", dest, [names[APP_A]], **engine)])
        fetched_before = len(proxy.seen)
        done = playbook.play([save_task("add", dest, [names[APP_A], names[APP_B]], **engine)])
        (added,) = done.results
        assert task_status(done.stdout, "add") == "changed"
        assert warning_lines(done.stdout) + warning_lines(done.stderr) == []
        fetched = {BLOB_GET.match(path).group(1) for method, path, _fault in proxy.seen[fetched_before:]
                   if method == "GET" and BLOB_GET.match(path)}
        app_a, app_b = docker_images[APP_A], docker_images[APP_B]
        assert fetched & set(app_a.diff_ids + app_b.diff_ids) == {app_b.diff_ids[2]}  # the one layer the bundle lacked
        assert added["blobs_written"] == 3 and added["blobs_kept"] == 5
        checked = playbook.play([save_task("check", dest, [names[APP_B]], prune=True, **engine)], check=True)
        (predicted,) = checked.results
        assert task_status(checked.stdout, "check") == "changed"
        assert predicted["blobs_written"] == 0 and predicted["blobs_deleted"] == 3
        assert [entry["name"] for entry in predicted["pruned"]] == ["docker.io/" + names[APP_A]]
        assert len(blob_files(dest)) == 8
    finally:
        proxy.close()
