# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""containerd as a store, through its ``ctr`` client.

The namespace defaults to ``k8s.io`` so that the kubelet sees what is
loaded. containerd's content store is an OCI blob store, so its images are
read with the same OCI code as a layout directory: ``ctr images ls`` gives
the names and targets (a synthetic ``index.json``), ``ctr content get`` the
blobs, each verified against its digest.

ctr runs through ``subprocess`` (``ansible-bad-function`` is disabled at each call, which ansible-test 2.21's
pylint flags in module_utils): this code runs without an AnsibleModule, and its reads stream ``ctr images
export`` and ``ctr content get`` output that AnsibleModule.run_command would hold in memory whole.
"""

import json
import os
import shutil
import socket
import subprocess

from ..errors import ArchiveError, StoreError
from ..formats.oci_layout import ANNOTATION_CONTAINERD_NAME, read_layout_images
from ..formats.safetar import MAX_JSON_SIZE
from ..model import HeldLayers
from ..platforms import parse_platforms

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = "k8s.io"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
WATCH_SECONDS = 1
GONE = ("code = Unavailable", "connection refused", "transport is closing", "error reading from server")
GONE_HINT = ("; containerd stopped or restarted during the command: check it (its service status and log), start it "
             "again if needed, and re-run the task (what did not arrive is imported again)")


class ContainerdStore:
    kind = "containerd"

    def __init__(self, address=None, namespace=None, platform=None, ctr=None, timeout=60):
        self.address = address or os.environ.get("CONTAINERD_ADDRESS") or DEFAULT_ADDRESS
        if self.address.startswith("unix://"):
            self.address = self.address[len("unix://"):]
        self.namespace = namespace or os.environ.get("CONTAINERD_NAMESPACE") or DEFAULT_NAMESPACE
        self.platform = platform
        self.timeout = timeout
        self.ctr = ctr or shutil.which("ctr")
        if not self.ctr:
            raise StoreError("containerd: the 'ctr' client is not installed on this host (Debian/Ubuntu: apt-get install containerd)")
        self.label = "containerd at %s (namespace %s)" % (self.address, self.namespace)

    def __str__(self):
        return self.label

    def close(self):
        pass

    def _command(self, *args):
        return [self.ctr, "--address", self.address, "--namespace", self.namespace] + list(args)

    def _check_socket(self):
        if not os.path.exists(self.address):
            raise StoreError("cannot reach %s: the socket does not exist: is containerd running?" % self)
        if not os.access(self.address, os.R_OK | os.W_OK):
            raise StoreError("cannot reach %s: permission denied: run the task with become" % self)

    def run(self, *args, **kwargs):
        """Run ctr; returns stdout bytes or raises StoreError with ctr's own message."""
        self._check_socket()
        try:
            done = subprocess.run(self._command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                                  timeout=kwargs.pop("timeout", self.timeout), check=False, **kwargs)
        except subprocess.TimeoutExpired:
            raise StoreError("%s: 'ctr %s' did not finish within %s s" % (self, " ".join(args[:2]), self.timeout)) from None
        if done.returncode != 0:
            self._fail(args, done.stderr)
        return done.stdout

    def _fail(self, args, stderr):
        message = stderr.decode("utf-8", "replace").strip().replace("ctr: ", "", 1)
        gone = any(mark in message for mark in GONE) or not self._answers()
        raise StoreError("%s: 'ctr %s' failed: %s%s" % (self, " ".join(args[:2]), message, GONE_HINT if gone else ""))

    def run_watched(self, *args):
        """Run a long ctr command with no time limit, but stop it when containerd goes away (ctr would wait forever)."""
        self._check_socket()
        with subprocess.Popen(self._command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # pylint: disable=ansible-bad-function
            while True:
                try:
                    out, err = proc.communicate(timeout=WATCH_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if not self._answers():
                        proc.kill()
                        proc.communicate()
                        raise StoreError("%s: containerd went away during 'ctr %s' (its socket refuses connections)%s"
                                         % (self, " ".join(args[:2]), GONE_HINT)) from None
        if proc.returncode != 0:
            self._fail(args, err)
        return out

    def _answers(self):
        """Whether something listens on containerd's socket."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(self.timeout)
            probe.connect(self.address)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def image_targets(self):
        """``{name: (target digest, media type)}`` for every image in the namespace."""
        targets = {}
        for line in self.run("images", "ls").decode("utf-8").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3:
                targets[fields[0]] = (fields[2], fields[1])
        return targets

    def content_digests(self):
        return {line.split()[0] for line in self.run("content", "ls", "-q").decode().splitlines() if line.strip()}

    def images(self, platform=None):
        return read_layout_images(ContentSource(self), platform or self.platform)

    def layer_ids(self):
        """The blobs of the content store by digest, and the DiffIDs containerd labels them with
        (``containerd.io/uncompressed``): a layer pulled compressed from a registry counts by both, and as a blob
        (``HeldLayers.blobs``) only by its compressed digest."""
        blobs, diff_ids = set(), set()
        for line in self.run("content", "ls").decode("utf-8", "replace").splitlines()[1:]:
            fields = line.split()
            if not fields or not fields[0].startswith("sha256:"):
                continue
            blobs.add(fields[0])
            for label in fields[-1].split(","):
                key, _sep, value = label.partition("=")
                if key == UNCOMPRESSED_LABEL and value.startswith("sha256:"):
                    diff_ids.add(value)
        return HeldLayers(blobs | diff_ids, blobs)

    def _platform_args(self):
        """ctr's own platform flag, for one named platform; several (or all) are ctr's ``--all-platforms``."""
        selection = parse_platforms(self.platform) if self.platform else None
        if selection is None:
            return []
        if selection.several:
            return ["--all-platforms"]
        return ["--platform", str(selection.platforms[0])]

    def export(self, names, sink):
        """``ctr images export`` of ``names`` into the binary writer ``sink``."""
        args = ["images", "export"]
        args += self._platform_args()
        self._check_socket()
        command = self._command(*(args + ["-"] + list(names)))
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # pylint: disable=ansible-bad-function
            total = 0
            for chunk in iter(lambda: proc.stdout.read(1024 * 1024), b""):
                sink.write(chunk)
                total += len(chunk)
            error = proc.stderr.read().decode("utf-8", "replace").strip()
            if proc.wait() != 0:
                raise StoreError("%s: 'ctr images export' failed: %s" % (self, error))
        return total

    def load(self, path):
        """``ctr images import`` of an archive file (a thin one too, when the content store has the missing blobs)."""
        args = ["images", "import"]
        args += self._platform_args()
        return self.run_watched(*(args + [path])).decode("utf-8", "replace").splitlines()

    def tag(self, image_name, reference):
        self.run("images", "tag", "--force", image_name, str(reference))


class ContentSource:
    """containerd's content store seen as an OCI layout (for the readers in oci_layout)."""

    def __init__(self, store):
        self.store = store
        self.label = str(store)
        self.compression = "none"
        self._digests = None

    def _digest_of(self, name):
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "blobs":
            return None
        return "%s:%s" % (parts[1], parts[2])

    @staticmethod
    def region(name):  # pylint: disable=unused-argument
        """No blob here lies in a plain file of this host (the readers then stream it)."""
        return None

    def exists(self, name):
        if name == "index.json":
            return True
        digest = self._digest_of(name)
        if digest is None:
            return False
        if self._digests is None:
            self._digests = self.store.content_digests()
        return digest in self._digests

    def read_json(self, name, limit=MAX_JSON_SIZE):
        if name != "index.json":
            return json.loads(self.read_bytes(name, limit).decode("utf-8"))
        manifests = [{"mediaType": media_type, "digest": digest, "annotations": {ANNOTATION_CONTAINERD_NAME: image_name}}
                     for image_name, (digest, media_type) in sorted(self.store.image_targets().items())]
        return {"schemaVersion": 2, "manifests": manifests}

    def read_bytes(self, name, limit=MAX_JSON_SIZE):
        digest = self._digest_of(name)
        if digest is None:
            raise ArchiveError("%s: no entry %r" % (self.label, name))
        data = self.store.run("content", "get", digest)
        if len(data) > limit:
            raise ArchiveError("%s: blob %s is larger than the %d bytes allowed for metadata" % (self.label, digest, limit))
        return data

    def open(self, name):
        digest = self._digest_of(name)
        self.store._check_socket()  # pylint: disable=protected-access
        proc = subprocess.Popen(self.store._command("content", "get", digest),  # pylint: disable=protected-access,ansible-bad-function
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return _ProcessReader(proc, "%s: blob %s" % (self.label, digest))


class _ProcessReader:
    def __init__(self, proc, what):
        self._proc = proc
        self._what = what

    def read(self, size=-1):
        data = self._proc.stdout.read(size)
        if not data and self._proc.wait() != 0:
            raise StoreError("%s: 'ctr content get' failed (exit %d)" % (self._what, self._proc.returncode))
        return data

    def close(self):
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.stdout.close()
        self._proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
