# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsing what the Docker and Podman APIs stream back (pure logic; the engines themselves are in tests/system)."""

import pytest

from ansible_collections.airgap.images.plugins.module_utils.errors import StoreError
from ansible_collections.airgap.images.plugins.module_utils.stores.docker import _load_messages, _raise_for_appended_error


class Named:
    def __str__(self):
        return "Docker at unix:///x.sock"


def test_load_stream_messages_docker_style():
    lines = [b'{"stream":"Loaded image: busybox:latest\\n"}', b"", b'{"stream":"Loaded image ID: sha256:ab\\n"}']
    assert _load_messages(lines, Named()) == ["Loaded image: busybox:latest", "Loaded image ID: sha256:ab"]


def test_load_stream_podman_single_object():
    assert _load_messages([b'{"stream":"Loaded image: docker.io/a:1,docker.io/b:2"}'], Named()) == [
        "Loaded image: docker.io/a:1,docker.io/b:2"]


def test_load_stream_error_is_raised_verbatim_with_the_engine():
    lines = [b'{"errorDetail":{"message":"invalid diffID for layer 0: expected \\"sha256:aa\\", got \\"sha256:bb\\""},'
             b'"error":"invalid diffID"}']
    with pytest.raises(StoreError) as err:
        _load_messages(lines, Named())
    assert 'invalid diffID for layer 0: expected "sha256:aa", got "sha256:bb"' in str(err.value)
    assert "unix:///x.sock" in str(err.value)


def test_error_appended_to_a_save_stream_is_detected():
    tail = b"\x00" * 600 + b'{"errorDetail":{"message":"open /var/lib/docker/x: no such file"},"error":"open"}\r\n'
    with pytest.raises(StoreError, match="no such file"):
        _raise_for_appended_error(tail, Named())
    _raise_for_appended_error(b"\x00" * 1024, Named())
