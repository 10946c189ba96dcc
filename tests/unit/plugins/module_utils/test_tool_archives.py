# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shapes of archives real tools write (issue 11), synthesized small; tests/system/test_interop_generations.py has
the tools write them.

* containers/image's ``dir:`` transport (``skopeo copy ... dir:P``, ``podman save --format docker-dir``): one image's
  ``manifest.json`` (a single manifest, not docker save's list), a ``version`` file, blobs named by hex digest.  Not an
  image archive: refused saying what it is and how to make an archive of it (it used to fail as "invalid
  manifest.json: expected a JSON array of images").
* crane's ``--format=tarball``: ``manifest.json`` whose Config is ``sha256:<hex>`` and whose layers are gzip blobs
  ``<hex>.tar.gz``: read, each blob checked.
"""

import gzip
import json
import os
import tarfile

import pytest

from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive
from ansible_collections.airgap.images.plugins.module_utils.digest import drain, sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.errors import ArchiveError
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DIR_VERSION = b"Directory Transport Version: 1.1\n"


def layer_bytes(layer):
    with layer.open() as stream:
        return stream.read()


def descriptor(media_type, data):
    return {"mediaType": media_type, "size": len(data), "digest": sha256_digest(data)}


def write_files(folder, files):
    os.makedirs(folder)
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(data)
    return folder


def tar_of(folder, dest):
    with tarfile.open(dest, "w") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, name), arcname=name)
    return dest


def dir_transport_files(image):
    """What ``skopeo copy docker-archive:... dir:P`` writes for ``image``."""
    layers = [layer_bytes(layer) for layer in image.layers]
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": descriptor(DOCKER_CONFIG, image.config_bytes),
                "layers": [descriptor(DOCKER_LAYER, data) for data in layers]}
    files = {"manifest.json": json.dumps(manifest).encode(), "version": DIR_VERSION}
    for data in [image.config_bytes] + layers:
        files[sha256_digest(data).split(":")[1]] = data
    return files


@pytest.mark.parametrize("packed", [False, True], ids=["directory", "tar"])
def test_dir_transport_is_refused_saying_what_it_is(tmp_path, packed):
    path = write_files(str(tmp_path / "dir-transport"), dir_transport_files(sample_images()[0]))
    if packed:
        path = tar_of(path, str(tmp_path / "dir-transport.tar"))
    with pytest.raises(ArchiveError) as refused:
        open_archive(path)
    message = str(refused.value)
    assert path in message and "`dir:`" in message and "skopeo copy dir:" in message, message
    assert "JSON array" not in message


def test_a_version_file_that_is_not_the_dir_transports_changes_nothing(tmp_path):
    image = sample_images()[0]
    layers = [layer_bytes(layer) for layer in image.layers]
    names = ["%d/layer.tar" % n for n in range(len(layers))]
    files = {"config.json": image.config_bytes, "version": b"1.0\n",
             "manifest.json": json.dumps([{"Config": "config.json", "RepoTags": ["a:1"], "Layers": names}]).encode()}
    folder = write_files(str(tmp_path / "docker"), files)
    for name, data in zip(names, layers):
        write_files(os.path.join(folder, os.path.dirname(name)), {"layer.tar": data})
    with open_archive(tar_of(folder, str(tmp_path / "docker.tar"))) as archive:
        assert [(i.id, i.repo_tags) for i in archive.images] == [(image.id, ["a:1"])]


def test_crane_tarball_with_gzip_layers_named_by_blob_digest_reads(tmp_path):
    image = sample_images()[0]
    blobs = [gzip.compress(layer_bytes(layer), mtime=0) for layer in image.layers]
    config_name = image.id  # "sha256:<hex>", no .json
    layer_names = [sha256_digest(blob).split(":")[1] + ".tar.gz" for blob in blobs]
    files = {config_name: image.config_bytes, "manifest.json": json.dumps(
        [{"Config": config_name, "RepoTags": ["example.com/apps/a:1"], "Layers": layer_names}]).encode()}
    files.update(zip(layer_names, blobs))
    path = tar_of(write_files(str(tmp_path / "crane"), files), str(tmp_path / "crane.tar"))
    with open_archive(path) as archive:
        (read,) = archive.images
        assert (read.id, read.diff_ids, read.repo_tags) == (image.id, image.diff_ids, ["example.com/apps/a:1"])
        for layer in read.layers:
            with layer.open() as stream:
                drain(stream)
