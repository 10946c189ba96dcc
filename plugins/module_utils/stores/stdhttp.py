# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP with the standard library alone (``http.client``, ``ssl``), for hosts where ``requests`` is not installed.

It offers the part of ``requests`` the Docker, Podman and registry stores use, under the same names: a ``Session``
(``request``, ``get``, ``mount`` of a unix socket, ``verify``, ``cert``, ``close``), responses (``status_code``,
``headers``, ``content``, ``text``, ``json()``, ``iter_content``, ``iter_lines``, ``close``) and the exceptions
the stores catch (``exceptions.ConnectionError``, ``SSLError``, ``Timeout``, ``ChunkedEncodingError``). A connection
is kept for the next request once a response has been read to its end. Bodies may be bytes, a file object (sent as
it is read) or an iterator of bytes (sent chunked).
"""

import http.client
import json
import socket
import ssl
from urllib.parse import urlencode, urljoin, urlsplit

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
BLOCK = 1024 * 1024


class RequestException(Exception):
    """Base of what a request can raise (``requests.exceptions.RequestException``)."""


class ConnectionError(RequestException):  # pylint: disable=redefined-builtin
    """The peer could not be reached, or the connection broke."""


class SSLError(ConnectionError):
    """TLS failed (as in requests, a kind of ConnectionError)."""


class Timeout(RequestException):
    """The peer did not answer in time."""


class ChunkedEncodingError(RequestException):
    """A response body ended before its end."""


class exceptions:  # pylint: disable=invalid-name,too-few-public-methods
    """``requests.exceptions``' names."""

    RequestException = RequestException
    ConnectionError = ConnectionError
    SSLError = SSLError
    Timeout = Timeout
    ChunkedEncodingError = ChunkedEncodingError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path, timeout):
        http.client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        self.sock = connect_unix(self.socket_path, self.timeout)


def connect_unix(socket_path, timeout):
    """A stream socket connected to ``socket_path`` (a Docker or Podman API socket), with ``timeout``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
    except OSError:
        sock.close()
        raise
    return sock


class Request:
    """What was sent (``response.request.method``, as requests gives it)."""

    def __init__(self, method, url):
        self.method = method
        self.url = url


class Response:
    """One answer; its connection goes back to the session when the body has been read to its end."""

    def __init__(self, session, key, connection, raw, request):
        self._session = session
        self._key = key
        self._connection = connection
        self.raw = raw
        self.request = request
        self.url = request.url
        self.status_code = raw.status
        self.reason = raw.reason
        self.headers = raw.msg
        self._content = None

    def read(self, size):
        try:
            data = self.raw.read(size)
        except (http.client.IncompleteRead, OSError, http.client.HTTPException) as err:
            self.close()
            raise ChunkedEncodingError("Connection broken: %s" % _describe(err)) from None
        if not data or self.raw.isclosed():
            self._release()
        return data

    @property
    def content(self):
        if self._content is None:
            chunks = []
            while True:
                chunk = self.read(BLOCK)
                if not chunk:
                    break
                chunks.append(chunk)
            self._content = b"".join(chunks)
        return self._content

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content.decode("utf-8"))

    def iter_content(self, chunk_size=BLOCK):
        if self._content is not None:
            yield self._content
            return
        while True:
            chunk = self.read(chunk_size or BLOCK)
            if not chunk:
                return
            yield chunk

    def iter_lines(self):
        pending = b""
        for chunk in self.iter_content(64 * 1024):
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield line.rstrip(b"\r")
        if pending:
            yield pending

    def _release(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            if self.raw.will_close:
                connection.close()
            else:
                self._session.keep(self._key, connection)

    def close(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Session:
    """Requests to HTTP(S) URLs, or (``mount``) to a unix socket; ``verify`` and ``cert`` as in requests."""

    def __init__(self):
        self.trust_env = False  # proxies are never used
        self.verify = True
        self.cert = None
        self._unix = {}
        self._idle = {}

    def mount(self, prefix, socket_path):
        """Send every request whose URL starts with ``prefix`` to the unix socket ``socket_path``."""
        self._unix[prefix.rstrip("/")] = socket_path

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def request(self, method, url, headers=None, stream=False, timeout=None, allow_redirects=True, data=None, params=None):
        headers = dict(headers or {})
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        for _hop in range(MAX_REDIRECTS):
            response = self._send(method, url, headers, timeout, data, stream)
            location = response.headers.get("Location")
            if not (allow_redirects and response.status_code in REDIRECTS and location and _replayable(data)):
                return response
            response.close()
            next_url = urljoin(url, location)
            if urlsplit(next_url).netloc != urlsplit(url).netloc:
                headers.pop("Authorization", None)  # as requests does: credentials stay with their host
            if response.status_code == 303:
                method, data = "GET", None
            url = next_url
        raise ConnectionError("Exceeded %d redirects (last %s)" % (MAX_REDIRECTS, url))

    def _send(self, method, url, headers, timeout, data, stream):
        connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        key, connection, target = self._connection(url, connect_timeout)
        reused = connection.sock is not None
        try:
            if connection.sock is None:
                connection.connect()
            connection.sock.settimeout(read_timeout)
            connection.request(method, target, body=_body(data), headers=headers)
            raw = connection.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
            connection.close()
            if reused and _replayable(data):  # an idle kept connection the peer had closed: once more, on a new one
                return self._send(method, url, headers, timeout, data, stream)
            raise ConnectionError("Connection aborted: %s" % _describe(err)) from None
        except socket.timeout:
            connection.close()
            raise Timeout("%s %s: no answer within the timeout" % (method, url)) from None
        except (ssl.SSLError, ssl.CertificateError) as err:
            connection.close()
            raise SSLError(str(err)) from None
        except (OSError, http.client.HTTPException) as err:
            connection.close()
            raise ConnectionError(_describe(err)) from None
        response = Response(self, key, connection, raw, Request(method, url))
        if not stream:
            response.content  # pylint: disable=pointless-statement
        return response

    def _connection(self, url, connect_timeout):
        """(pool key, a connection (kept, or new and not yet connected), the request target)."""
        for prefix, socket_path in self._unix.items():
            if url.startswith(prefix):
                key = ("unix", socket_path)
                return key, self._idle.pop(key, None) or _sized(_UnixConnection(socket_path, connect_timeout)), url[len(prefix):] or "/"
        parts = urlsplit(url)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        key = (parts.scheme, parts.netloc)
        kept = self._idle.pop(key, None)
        if kept is not None:
            return key, kept, target
        if parts.scheme == "https":
            return key, _sized(http.client.HTTPSConnection(parts.netloc, timeout=connect_timeout, context=self._tls_context())), target
        if parts.scheme == "http":
            return key, _sized(http.client.HTTPConnection(parts.netloc, timeout=connect_timeout)), target
        raise ConnectionError("unsupported URL scheme in %s" % url)

    def _tls_context(self):
        if self.verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=self.verify if isinstance(self.verify, str) else None)
        if self.cert:
            certfile, keyfile = self.cert if isinstance(self.cert, tuple) else (self.cert, None)
            context.load_cert_chain(certfile, keyfile)
        return context

    def keep(self, key, connection):
        """A connection whose response was read to its end, for the next request to the same peer."""
        old = self._idle.pop(key, None)
        if old is not None:
            old.close()
        self._idle[key] = connection

    def close(self):
        for connection in self._idle.values():
            connection.close()
        self._idle = {}


def _sized(connection):
    connection.blocksize = BLOCK  # http.client sends a file body 8 KB at a time unless told otherwise
    return connection


def _body(data):
    if data is None or isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if hasattr(data, "read"):
        return _FileBody(data)
    return (bytes(chunk) for chunk in data)


class _FileBody:
    """A file object http.client sends block by block (it reads ``blocksize`` at a time)."""

    def __init__(self, stream):
        self._stream = stream

    def read(self, size=-1):
        return self._stream.read(size if size and size > 0 else BLOCK)


def _replayable(data):
    return data is None or isinstance(data, (bytes, bytearray, str))


def _describe(err):
    text = str(err)
    return "%s(%s)" % (type(err).__name__, text) if text else type(err).__name__
