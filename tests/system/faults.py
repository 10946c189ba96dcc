# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults for the system tests: a registry proxy that fails, cuts and resets; a small filesystem; file listings."""

import contextlib
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time

from ansible_collections.airgap.images.tests.system.playbooks import Playbook

METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ")
TEMP_MARKS = (".tmp", ".pending", ".airgap-export-", ".airgap-import-")


class _Rule:
    def __init__(self, method, path_part, action, value, times):
        self.method = method
        self.path_part = path_part
        self.action = action
        self.value = value
        self.times = times

    def matches(self, method, path):
        return self.times > 0 and method == self.method and self.path_part in path


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of a registry that injects faults into the requests it is told to.

    * ``fail(method, path_part, status, times)``: answer matching requests with ``status`` instead of passing them on
      (GET and HEAD only: a request body would be left unread);
    * ``cut(method, path_part, after, times)``: pass the request on, then reset the connection once ``after`` bytes
      of the answer went through (a download broken mid-blob);
    * ``reset(method, path_part, times)``: reset the connection as soon as the request arrives (an upload lost).

    ``seen`` lists (method, path, fault) for every request; ``authorizations`` every Authorization header passed on;
    ``cuts`` counts the cut answers.
    """

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.rules = []
        self.seen = []
        self.authorizations = set()
        self.cuts = 0
        self._lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.host = "127.0.0.1:%d" % self.port
        threading.Thread(target=self._accept, daemon=True).start()

    def fail(self, method, path_part, status, times=1):
        self.rules.append(_Rule(method, path_part, "status", status, times))

    def cut(self, method, path_part, after, times=1):
        self.rules.append(_Rule(method, path_part, "cut", after, times))

    def reset(self, method, path_part, times=1):
        self.rules.append(_Rule(method, path_part, "reset", None, times))

    def close(self):
        self.server.close()

    def _take(self, method, path):
        with self._lock:
            rule = next((rule for rule in self.rules if rule.matches(method, path)), None)
            if rule is not None:
                rule.times -= 1
            self.seen.append((method, path, rule.action if rule else None))
            return rule

    def _accept(self):
        while True:
            try:
                client, _address = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            state = {"cut_after": None, "sent": 0}
            threading.Thread(target=self._from_client, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._from_upstream, args=(upstream, client, state), daemon=True).start()

    def _from_client(self, client, upstream, state):
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                rule = self._inspect(data)
                if rule is not None and rule.action == "reset":
                    break
                if rule is not None and rule.action == "status":
                    client.sendall(_answer(rule.value, data.split(b" ", 1)[0].decode()))
                    continue
                if rule is not None and rule.action == "cut":
                    state.update(cut_after=rule.value, sent=0)
                upstream.sendall(data)
        except OSError:
            pass
        _reset(client, upstream)

    def _inspect(self, data):
        """The rule for a request that starts in ``data`` (None for body bytes and unmatched requests)."""
        if not data.startswith(METHODS):
            return None
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, path = head[0].split(" ")[:2]
        for line in head[1:]:
            name, _sep, value = line.partition(":")
            if name.strip().lower() == "authorization":
                self.authorizations.add(value.strip())
        return self._take(method, path)

    def _from_upstream(self, upstream, client, state):
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if state["cut_after"] is not None:
                    state["sent"] += len(data)
                    if state["sent"] > state["cut_after"]:
                        self.cuts += 1
                        break
                client.sendall(data)
        except OSError:
            pass
        _reset(client, upstream)


def _answer(status, method):
    body = json.dumps({"errors": [{"code": "UNKNOWN", "message": "fault injected by the test proxy"}]}).encode()
    head = "HTTP/1.1 %d Injected\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (status, len(body))
    if status == 401:
        head += 'WWW-Authenticate: Basic realm="test proxy"\r\n'
    return (head + "\r\n").encode() + (b"" if method == "HEAD" else body)


def _reset(*sockets):
    """Close with RST, as a crashed peer or a middlebox does (not the orderly FIN of a finished answer)."""
    for sock in sockets:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD)  # wakes the other thread's recv; close alone would not, nor send the RST
        except OSError:
            pass
        sock.close()


@contextlib.contextmanager
def small_filesystem(path, size):
    """A tmpfs of ``size`` bytes mounted at ``path`` for the block (needs root)."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", path], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False, capture_output=True)


def fill(path, leave_free):
    """Write a file at ``path`` that leaves about ``leave_free`` bytes free on its filesystem."""
    stats = os.statvfs(os.path.dirname(path))
    size = max(stats.f_bavail * stats.f_frsize - leave_free, 0)
    with open(path, "wb") as out:
        out.truncate(0)
        for _block in range(size // (1 << 16)):
            out.write(b"\0" * (1 << 16))


def contents(folder):
    """{name: sha256} of every file in ``folder`` (not below it)."""
    found = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):  # pylint: disable=cell-var-from-loop
                    digest.update(chunk)
            found[name] = digest.hexdigest()
    return found


def leftovers(folder):
    """Temp files the collection writes (and must remove) found anywhere under ``folder``."""
    return sorted(os.path.join(root, name) for root, _dirs, names in os.walk(folder)
                  for name in names if any(mark in name for mark in TEMP_MARKS))


def lock_waiters(lock_path):
    """How many processes wait for the flock on ``lock_path`` (from /proc/locks)."""
    inode = ":%d " % os.stat(lock_path).st_ino
    with open("/proc/locks") as handle:
        return sum(1 for line in handle if "->" in line and "FLOCK" in line and inode in line)


def wait_for(probe, timeout, what, interval=0.01):
    """Poll ``probe`` until it returns something true; that value, or AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError("%s did not happen within %s s" % (what, timeout))


class VerbosePlaybook(Playbook):
    """A Playbook run at -vvv with Ansible's log in ``log_path``: everything a task shows, to search for secrets."""

    def __init__(self, collections, workdir):
        Playbook.__init__(self, collections, workdir)
        self.log_path = os.path.join(workdir, "ansible.log")

    def env(self):
        env = Playbook.env(self)
        env.update(ANSIBLE_VERBOSITY="3", ANSIBLE_LOG_PATH=self.log_path)
        return env

    def log(self):
        with open(self.log_path) as handle:
            return handle.read()
