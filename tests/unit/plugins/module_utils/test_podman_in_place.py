# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What PodmanStore.load_as_is does with each answer of ``/libpod/local/images/load`` (the engine test,
tests/system/test_matrix.py, covers Podman 5.8 and 4.3 themselves): 200 is the load; a 404 or a permission error sends
the bytes instead; any other refusal fails with Podman's message; a directory that takes no link sends the bytes; the
link is gone afterwards in every case. The Podman service is a fake here; the archive and its checks are real."""

import json
import os

import pytest

from ansible_collections.airgap.images.plugins.module_utils.errors import StoreError
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import open_archive, save_archive
from ansible_collections.airgap.images.plugins.module_utils.stores import store as STORE
from ansible_collections.airgap.images.tests.unit.plugins.module_utils.archive_helpers import sample_images


class Answer:
    def __init__(self, status, body):
        self.status_code = status
        self.content = json.dumps(body).encode() if isinstance(body, dict) else body
        self.text = self.content.decode()
        self.reason = "reason"

    def json(self):
        return json.loads(self.content.decode())


@pytest.fixture
def podman(tmp_path, monkeypatch):
    """A PodmanStore whose service answers ``answers[0]`` to the local load; ``named`` and ``sent`` record what it got."""
    store = STORE.PodmanStore("unix://" + str(tmp_path / "podman.sock"))
    store.answers, store.named, store.sent = [], [], []

    def libpod_request(method, path, params):
        assert (method, path) == ("POST", "/local/images/load")
        store.named.append(params["path"])
        assert os.path.isfile(params["path"]) and os.path.samefile(params["path"], store.archive_path)
        return store.answers[0]
    monkeypatch.setattr(store.client, "negotiate", lambda: "1.41")
    monkeypatch.setattr(store.client, "libpod_request", libpod_request, raising=False)
    store.client.libpod_version = (5, 8)
    monkeypatch.setattr(STORE.DockerStore, "load", lambda _store, body: store.sent.append(b"".join(body)) or [])
    archive_path = str(tmp_path / "images.tar")
    save_archive(list(sample_images()), archive_path)
    store.archive_path = archive_path
    yield store
    store.close()


def load(store):
    with open_archive(store.archive_path) as archive:
        regions = archive.as_is_regions(archive.images, qualified_tags=True)
        assert regions, "our archive goes as it is"
        return store.load_as_is(archive, regions)


def leftovers(store):
    return [name for name in os.listdir(os.path.dirname(store.archive_path)) if name.startswith(".airgap-load-")]


def test_podman_loads_the_file_it_is_named_and_nothing_is_sent(podman):
    podman.answers.append(Answer(200, {"Names": ["docker.io/library/a:latest"]}))
    assert load(podman) == ["Loaded image: docker.io/library/a:latest"]
    assert len(podman.named) == 1 and os.path.basename(podman.named[0]).startswith(".airgap-load-")
    assert podman.sent == [] and leftovers(podman) == []


@pytest.mark.parametrize("answer", [Answer(404, b"Not Found\n"),
                                    Answer(404, {"cause": "file does not exist", "message": "file does not exist"}),
                                    Answer(500, {"message": "open /srv/x.tar: permission denied"})])
def test_a_podman_that_cannot_see_or_read_the_file_is_sent_its_bytes(podman, answer):
    podman.answers.append(answer)
    load(podman)
    with open(podman.archive_path, "rb") as handle:
        assert podman.sent == [handle.read()]
    assert len(podman.named) == 1 and leftovers(podman) == []


def test_any_other_refusal_fails_with_podman_s_message(podman):
    podman.answers.append(Answer(500, {"cause": "x", "message": "payload does not match any of the supported image formats"}))
    with pytest.raises(StoreError, match="refused the load of .*images.tar: payload does not match"):
        load(podman)
    assert podman.sent == [] and leftovers(podman) == []


def test_a_directory_that_takes_no_link_sends_the_bytes(podman, monkeypatch):
    def refuse(*_args):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "link", refuse)
    load(podman)
    assert podman.named == [] and len(podman.sent) == 1


@pytest.mark.parametrize("version,host", [((5, 7), "unix:///run/podman.sock"), ((5, 8), "tcp://127.0.0.1:8080"), (None, "unix:///x")])
def test_only_a_local_podman_5_8_or_newer_is_named_the_file(podman, version, host):
    podman.client.libpod_version, podman.client.host = version, host
    load(podman)
    assert podman.named == [] and len(podman.sent) == 1
