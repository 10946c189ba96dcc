# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hostile archives through image_load (ansible-playbook, the installed collection) into a real dockerd.

Each task fails with a message naming the bad entry; the engine's images and layers are unchanged; no temp file is
left beside the archive and nothing is written outside its directory. One playbook run holds every case.
tests/unit/plugins/module_utils/test_hostile_archives.py has every case at the reader level.
"""

import gzip
import json
import os

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.test_hostile_archives import (
    entry, manifest_of, our_archive, replaced, tar_of, tree, with_manifest)


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "wb") as out:
        out.write(data)
    return path


def traversal(folder, members):
    return write(folder, "traversal.tar", tar_of(members[:3] + [entry("../../evil", payload=b"x")] + members[3:])), "'../../evil'"


def diffid_mismatch(folder, members):
    """A byte of a file in the layer changed (not a tar header: the engine gets the archive as it is and names the
    layer by its DiffID; a changed header it reports only as 'invalid tar header')."""
    layer = manifest_of(members)[0]["Layers"][1]
    data = dict((info.name, data) for info, data in members)[layer]
    where = data.index(b"a" * 1000) + 500
    tampered = data[:where] + b"b" + data[where + 1:]
    path = write(folder, "tampered.tar", tar_of(replaced(members, layer, tampered)))
    with open_archive(path) as archive:
        assert archive.as_is_regions(archive.images), "the engine is sent this archive as it is, checked on the way"
    return path, layer.split("/")[-1]


def truncated_gzip(folder, members):
    data = gzip.compress(tar_of(members), mtime=0)
    return write(folder, "truncated.tar.gz", data[:len(data) * 2 // 3]), "truncated gzip"


def config_at_etc_passwd(folder, members):
    return write(folder, "passwd.tar", tar_of(with_manifest(members, lambda item: item.update(Config="/etc/passwd")))), \
        "'/etc/passwd'"


def separated_traversal(folder, members):
    directory = os.path.join(folder, "separated")
    app = write(directory, "a_1_app_image.tar", tar_of(members))
    manifest = {"example.com/apps/a:1": {"app": "../../../etc/passwd", "appHash": "", "lib": "", "libHash": "",
                                         "base": os.path.basename(app), "baseHash": ""}}
    write(directory, "manifest", json.dumps(manifest).encode())
    return directory, "'../../../etc/passwd'"


CASES = [traversal, diffid_mismatch, truncated_gzip, config_at_etc_passwd, separated_traversal]


def engine_state(dockerd):
    """Every image (dangling ones too) and every layer the daemon holds."""
    layerdb = os.path.join(dockerd.data_root, "image", "vfs", "layerdb", "sha256")
    layers = set(os.listdir(layerdb)) if os.path.isdir(layerdb) else set()
    return set(dockerd.cli("images", "-a", "-q", "--no-trunc").stdout.split()), layers


def load_task(source, dockerd):
    options = dict(engine="docker", engine_host=dockerd.host)
    if os.path.isdir(source):
        options["separated"] = dict(dir=source, app="example.com/apps/a:1")
    else:
        options["src"] = source
    return {"airgap.images.image_load": options}


def test_hostile_archives_fail_the_task_and_load_nothing(playbook, dockerd, tmp_path):
    members = our_archive(tmp_path)
    archives = tmp_path / "archives"
    made = [case(str(archives / case.__name__), members) for case in CASES]
    before_files, before_engine = tree(str(tmp_path)), engine_state(dockerd)
    assert not dockerd.image_ids() & {image.id for image in sample_images()}
    with open("/etc/passwd", "rb") as handle:
        passwd = handle.read()
    results, _out = playbook.run([load_task(source, dockerd) for source, _entry in made], expect_failure=True)
    for (source, named), result, case in zip(made, results, CASES):
        assert result.get("failed"), (case.__name__, result)
        assert named in result["msg"], (case.__name__, result["msg"])
        assert "unexpected error" not in result["msg"] and not result.get("loaded")
    assert engine_state(dockerd) == before_engine
    leftovers = tree(str(tmp_path)) - before_files
    assert {os.path.basename(path) for path in leftovers} <= {"play-1.yml", "results-1.json"}, leftovers
    assert not [path for path in tree(str(archives)) if os.path.basename(path).startswith(".airgap-")]
    assert not os.path.exists(str(tmp_path.parent / "evil")) and not os.path.exists(str(tmp_path / "evil"))
    with open("/etc/passwd", "rb") as handle:
        assert handle.read() == passwd
