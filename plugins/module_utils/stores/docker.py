# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker Engine API (and Podman's Docker-compatible API) as a store.

Addresses and TLS come from the arguments or, as the docker CLI takes them,
from ``DOCKER_HOST``, ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH``. The API
version is negotiated with ``/_ping``; nothing is hard-coded but the newest
version this client knows. Streams (save and load) have a connect timeout
and no read timeout, so multi-GB transfers are not cut off.
"""

import contextlib
import json
import os
from urllib.parse import quote

from ..atomic import check_free_space, reporting_full_disk
from ..errors import ImageNotFoundError, StoreError
from .http_unix import UNIX_BASE_URL, mount_unix_socket, requests

DEFAULT_HOST = "unix:///var/run/docker.sock"
NEWEST_API = (1, 47)
OLDEST_API = (1, 25)
CHUNK = 1024 * 1024
BROKEN_CONNECTION = ("Connection aborted", "Broken pipe", "Connection reset", "RemoteDisconnected", "Connection broken")


def version_tuple(text):
    try:
        major, minor = text.split(".")[:2]
        return int(major), int(minor)
    except (AttributeError, ValueError):
        return None


class DockerClient:
    """A requests session bound to one engine address, with version negotiation and clear errors."""

    engine = "Docker"

    def __init__(self, host=None, tls_verify=None, cert_path=None, ca_path=None, timeout=60):
        self.host = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self.base_url = self._configure(tls_verify, cert_path, ca_path)
        self.api_version = None
        self.libpod_version = None  # Podman's own API version, (major, minor), from the same answer

    def _configure(self, tls_verify, cert_path, ca_path):
        if self.host.startswith("unix://"):
            mount_unix_socket(self.session, self.host[len("unix://"):], self.timeout)
            return UNIX_BASE_URL
        if not self.host.startswith(("tcp://", "http://", "https://")):
            raise StoreError("%s address %r is not supported: use unix:///path/to/socket or tcp://host:port"
                             % (self.engine, self.host))
        if tls_verify is None:
            tls_verify = os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
        cert_path = cert_path or os.environ.get("DOCKER_CERT_PATH")
        address = self.host.split("://", 1)[1]
        use_tls = tls_verify or self.host.startswith("https://") or bool(cert_path)
        if use_tls:
            self._configure_tls(tls_verify, cert_path, ca_path)
        return ("https://" if use_tls else "http://") + address

    def _configure_tls(self, tls_verify, cert_path, ca_path):
        if cert_path:
            if not os.path.isdir(cert_path):
                raise StoreError("%s: the TLS certificate directory %s (DOCKER_CERT_PATH) does not exist" % (self, cert_path))
            client = (os.path.join(cert_path, "cert.pem"), os.path.join(cert_path, "key.pem"))
            if all(os.path.exists(path) for path in client):
                self.session.cert = client
            ca_path = ca_path or os.path.join(cert_path, "ca.pem")
        if tls_verify and ca_path and not os.path.isfile(ca_path):
            raise StoreError("%s: the CA certificate %s does not exist" % (self, ca_path))
        self.session.verify = (ca_path or True) if tls_verify else False

    def __str__(self):
        return "%s at %s" % (self.engine, self.host)

    def close(self):
        self.session.close()

    # requests ------------------------------------------------------------------------------------------

    def negotiate(self):
        if self.api_version is None:
            response = self._send("GET", self.base_url + "/_ping", stream=False)
            self._raise_for_status(response, "/_ping")
            server = version_tuple(response.headers.get("Api-Version", ""))
            self.libpod_version = version_tuple(response.headers.get("Libpod-Api-Version", ""))
            if server is None:
                server = version_tuple(self._send("GET", self.base_url + "/version", stream=False).json().get("ApiVersion"))
            if server is not None and server < OLDEST_API:
                raise StoreError("%s speaks API %d.%d; airgap.images needs %d.%d or newer (Docker 1.13+)"
                                 % ((self,) + server + OLDEST_API))
            self.api_version = "%d.%d" % min(server or NEWEST_API, NEWEST_API)
        return self.api_version

    def url(self, path):
        return "%s/v%s%s" % (self.base_url, self.negotiate(), path)

    def request(self, method, path, expect=(200,), stream=False, **kwargs):
        response = self._send(method, self.url(path), stream=stream, **kwargs)
        if response.status_code not in expect:
            self._raise_for_status(response, path)
        return response

    def _send(self, method, url, stream, **kwargs):
        timeout = (self.timeout, None) if stream else (self.timeout, self.timeout)
        try:
            return self.session.request(method, url, stream=stream, timeout=timeout, **kwargs)
        except requests.exceptions.SSLError as err:
            raise StoreError("cannot reach %s: TLS failed (%s); check DOCKER_CERT_PATH / ca_path" % (self, err)) from None
        except requests.exceptions.ConnectionError as err:
            raise StoreError(self._unreachable(err)) from None
        except requests.exceptions.Timeout:
            raise StoreError("%s did not answer within %s s; raise 'timeout' or check the engine" % (self, self.timeout)) from None

    def _unreachable(self, err):
        text = str(err)
        hint = "is the engine running and the address right?"
        if "Permission denied" in text:
            hint = "permission denied: is the user in the docker group, or should the task run with become?"
        elif "No such file or directory" in text:
            hint = "the socket does not exist: is the engine running?"
        elif "Connection refused" in text:
            hint = "connection refused: is the engine running and listening there?"
        elif any(mark in text for mark in BROKEN_CONNECTION):
            return self.broken_message()
        return "cannot reach %s: %s" % (self, hint)

    def broken_message(self):
        return ("%s: the connection broke mid-request: the engine stopped or restarted; check it (its service status and "
                "log), start it again if needed, and re-run the task (what did not arrive is sent again)" % self)

    @contextlib.contextmanager
    def streaming(self):
        """Around reading a streamed response: an engine that goes away mid-stream is a StoreError that says so."""
        try:
            yield
        except requests.exceptions.RequestException:
            raise StoreError(self.broken_message()) from None

    def _raise_for_status(self, response, path):
        if response.status_code == 404:
            raise ImageNotFoundError("%s: %s" % (self, error_message(response)))
        if response.status_code >= 400:
            raise StoreError("%s: %s %s failed (HTTP %d): %s" % (self, response.request.method, path,
                                                                 response.status_code, error_message(response)))


def error_message(response):
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason
    if isinstance(body, dict):
        return body.get("message") or body.get("cause") or json.dumps(body)
    return json.dumps(body)[:500]


class DockerStore:
    """Images in a Docker (or Podman-compatible) engine."""

    kind = "docker"
    client_class = DockerClient

    def __init__(self, host=None, tls_verify=None, cert_path=None, ca_path=None, timeout=60):
        self.client = self.client_class(host, tls_verify, cert_path, ca_path, timeout)

    def __str__(self):
        return str(self.client)

    def close(self):
        self.client.close()

    def inspect(self, name):
        """The engine's inspect document for ``name`` (name:tag, name@digest or ID), or None when absent."""
        try:
            return self.client.request("GET", "/images/%s/json" % quote(name, safe="")).json()
        except ImageNotFoundError:
            return None

    def uses_containerd_store(self):
        """Whether Docker keeps images in containerd's image store (Docker 29's default; ``/info`` names its
        snapshotter as the driver), where an image's ID is its manifest's or index's digest."""
        if getattr(self, "_containerd_store", None) is None:
            status = self.client.request("GET", "/info").json().get("DriverStatus") or []
            self._containerd_store = any(len(pair) == 2 and pair[0] == "driver-type" and "snapshotter" in str(pair[1])
                                         for pair in status)
        return self._containerd_store

    def image_list(self):
        return self.client.request("GET", "/images/json").json() or []

    def layer_ids(self):
        """DiffIDs of every layer of every image the engine holds."""
        held = set()
        for summary in self.image_list():
            document = self.inspect(summary["Id"])
            if document:
                held.update((document.get("RootFS") or {}).get("Layers") or [])
        return held

    def export(self, names, sink):
        """Stream ``docker save`` of ``names`` into the binary writer ``sink``; returns the byte count.

        A file ``sink`` is first checked for room for the largest image (the least the export needs), and a disk
        that fills up on the way is reported as such.
        """
        path = getattr(sink, "name", None)
        if not isinstance(path, str):
            return self._stream_export(names, sink)
        what = "the export from %s (a temp file beside the destination)" % self
        check_free_space(path, self._largest_size(names), what)
        with reporting_full_disk(path, what=what, partial=True):
            total = self._stream_export(names, sink)
            sink.flush()
        return total

    def _stream_export(self, names, sink):
        params = [("names", name) for name in names]
        response = self.client.request("GET", "/images/get", params=params, stream=True)
        total = 0
        tail = b""
        with response, self.client.streaming():
            for chunk in response.iter_content(CHUNK):
                sink.write(chunk)
                total += len(chunk)
                tail = (tail + chunk[-4096:])[-4096:]
        _raise_for_appended_error(tail, self.client)
        return total

    def _largest_size(self, names):
        sizes = [(self.inspect(name) or {}).get("Size") for name in names]
        return None if None in sizes or not sizes else max(sizes)

    def load(self, body):
        """``POST /images/load`` of ``body`` (a file object or an iterator of bytes); returns the engine's messages."""
        response = self.client.request("POST", "/images/load", params={"quiet": "1"}, data=body, stream=True,
                                       headers={"Content-Type": "application/x-tar"})
        with response, self.client.streaming():
            return _load_messages(response.iter_lines(), self.client)

    def tag(self, image_id, reference):
        self.client.request("POST", "/images/%s/tag" % quote(image_id, safe=""), expect=(200, 201),
                            params={"repo": "%s/%s" % (reference.domain, reference.path), "tag": reference.tag})


def _raise_for_appended_error(tail, client):
    """The engine appends a JSON error to the tar when saving fails after it started sending."""
    stripped = tail.rstrip(b"\x00\r\n ")
    start = stripped.rfind(b'{"errorDetail"')
    if start == -1:
        start = stripped.rfind(b'{"message"')
    if start == -1:
        return
    try:
        error = json.loads(stripped[start:].decode("utf-8"))
    except ValueError:
        return
    message = (error.get("errorDetail") or {}).get("message") or error.get("message") or error.get("error")
    raise StoreError("%s: save failed while streaming: %s" % (client, message))


def _load_messages(lines, client):
    messages = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line.decode("utf-8"))
        except ValueError:
            messages.append(line.decode("utf-8", "replace"))
            continue
        if event.get("errorDetail") or event.get("error"):
            detail = (event.get("errorDetail") or {}).get("message") or event.get("error")
            raise StoreError("%s refused the load: %s" % (client, detail))
        if event.get("stream"):
            messages.extend(part.strip() for part in event["stream"].splitlines() if part.strip())
    return messages
