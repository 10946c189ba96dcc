# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of image_ship: its SSH settings for transfers, pipelining, and resuming a cut copy (a recording
connection stands in for the host; tests/system/test_rollout_ssh.py runs the whole action over real SSH)."""

import hashlib

from ansible_collections.airgap.images.plugins.action.image_ship import ActionModule, _message


class RecordingConnection:
    transport = "ssh"
    has_pipelining = True

    def __init__(self, ssh_args="-C -o ControlMaster=auto -o ControlPersist=60s"):
        self.options = {"ssh_args": ssh_args, "control_path": None, "host": "10.0.0.5", "port": None,
                        "remote_user": "deploy", "pipelining": False}
        self.puts = []

    def get_option(self, name):
        return self.options[name]

    def set_option(self, name, value):
        self.options[name] = value

    @staticmethod
    def _create_control_path(host, port, user, connection=None):
        return "%(directory)s/" + hashlib.sha1(("%s-%s-%s-%s" % (host, port, user, connection)).encode()).hexdigest()[:10]

    def put_file(self, local, remote):
        with open(local, "rb") as source:
            self.puts.append((remote, source.read(), dict(self.options)))


def action(connection, commands=None):
    plugin = ActionModule.__new__(ActionModule)
    plugin._connection = connection
    plugin.calls = 0
    plugin.pipelined = True
    ran = commands if commands is not None else []

    def run(cmd, sudoable=True):
        ran.append((cmd, sudoable))
        return {"rc": 0, "stdout": "", "stderr": ""}
    plugin._low_level_execute_command = run
    return plugin


def test_transfers_over_ssh_with_the_default_ssh_args_use_their_own_connection_without_compression():
    connection = RecordingConnection()
    with action(connection)._uncompressed_transfers():
        inside = dict(connection.options)
    assert inside["ssh_args"] == "-o ControlMaster=auto -o ControlPersist=60s"
    assert inside["control_path"] and inside["control_path"] != RecordingConnection._create_control_path("10.0.0.5", None, "deploy")
    assert connection.options["ssh_args"] == "-C -o ControlMaster=auto -o ControlPersist=60s"  # restored
    assert connection.options["control_path"] is None


def test_ssh_args_without_compression_and_other_connections_are_left_alone():
    plain = RecordingConnection(ssh_args="-o ControlMaster=auto")
    with action(plain)._uncompressed_transfers():
        assert plain.options["ssh_args"] == "-o ControlMaster=auto" and plain.options["control_path"] is None
    local = RecordingConnection()
    local.transport = "local"
    with action(local)._uncompressed_transfers():
        assert local.options["ssh_args"].startswith("-C")


def test_pipelining_is_on_for_the_call_only():
    connection = RecordingConnection()
    with action(connection)._pipelining_on():
        assert connection.options["pipelining"] is True
    assert connection.options["pipelining"] is False


def test_a_cut_copy_whose_start_matches_receives_only_the_rest(tmp_path):
    blob = bytes(range(256)) * 40
    local = tmp_path / "blob"
    local.write_bytes(blob)
    connection, commands = RecordingConnection(), []
    plugin = action(connection, commands)
    report = {"resumed_files": []}
    entry = {"file": "blobs/sha256/x", "size": len(blob), "staged_bytes": 1000,
             "staged_sha256": hashlib.sha256(blob[:1000]).hexdigest()}
    sent = plugin._send_file(str(local), "/stage/blobs/sha256/x", entry, report)
    assert sent == len(blob) - 1000 and report["resumed_files"] == ["blobs/sha256/x"]
    assert [(remote, data) for remote, data, _options in connection.puts] == [("/stage/blobs/sha256/x.rest", blob[1000:])]
    assert commands == [("cat -- /stage/blobs/sha256/x.rest >> /stage/blobs/sha256/x && rm -f -- /stage/blobs/sha256/x.rest", False)]


def test_a_cut_copy_that_does_not_match_is_sent_whole(tmp_path):
    blob = b"layer" * 1000
    local = tmp_path / "blob"
    local.write_bytes(blob)
    connection = RecordingConnection()
    report = {"resumed_files": []}
    entry = {"file": "blobs/sha256/x", "size": len(blob), "staged_bytes": 10, "staged_sha256": "0" * 64}
    assert action(connection)._send_file(str(local), "/stage/blobs/sha256/x", entry, report) == len(blob)
    assert [(remote, data) for remote, data, _options in connection.puts] == [("/stage/blobs/sha256/x", blob)]
    assert report["resumed_files"] == []


def test_the_message_says_would_in_check_mode():
    report = {"loaded": ["sha256:a"], "tagged": [], "skipped_bytes": 5, "bundle_bytes": 15, "naive_bytes": 40}
    assert _message(report, 10, 1) == ("shipped 10 bytes in 1 file(s), skipped 5 of a 15-byte bundle; loaded 1 image(s), "
                                       "tagged 0 (a full copy of every image would be 40 bytes)")
    assert _message(report, 10, 1, would=True).startswith("would ship 10 bytes in 1 file(s), would skip 5")
