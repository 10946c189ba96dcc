# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP library of the Docker, Podman and registry stores: ``requests`` where it is installed, else the
standard library's (``stdhttp``, the same names), so that a host needs nothing but Python. ``AIRGAP_IMAGES_HTTP=stdlib``
chooses the standard library even where ``requests`` is there. Also HTTP over a unix socket (Docker and Podman API
sockets) for either."""

import os

from . import stdhttp

try:
    if os.environ.get("AIRGAP_IMAGES_HTTP") == "stdlib":
        raise ImportError("the standard library's HTTP was asked for")
    import requests
    import requests.adapters
    import urllib3.connection
    import urllib3.connectionpool
    USING_REQUESTS = True
except ImportError:
    requests = stdhttp
    USING_REQUESTS = False

UNIX_BASE_URL = "http://docker.socket"


def mount_unix_socket(session, socket_path, connect_timeout):
    """Send the session's requests to ``UNIX_BASE_URL`` to the unix socket ``socket_path``."""
    if USING_REQUESTS:
        session.mount(UNIX_BASE_URL, UnixAdapter(socket_path, connect_timeout))
    else:
        session.mount(UNIX_BASE_URL, socket_path)


if USING_REQUESTS:

    class _UnixConnection(urllib3.connection.HTTPConnection):
        def __init__(self, socket_path, timeout):
            super().__init__("localhost", timeout=timeout)
            self.socket_path = socket_path

        def connect(self):
            self.sock = stdhttp.connect_unix(self.socket_path, self.timeout if isinstance(self.timeout, (int, float)) else None)

    class _UnixPool(urllib3.connectionpool.HTTPConnectionPool):
        def __init__(self, socket_path, timeout):
            super().__init__("localhost", timeout=timeout, maxsize=4)
            self.socket_path = socket_path

        def _new_conn(self):
            return _UnixConnection(self.socket_path, self.timeout.connect_timeout)

    class UnixAdapter(requests.adapters.HTTPAdapter):
        """Sends every request of the session to one unix socket."""

        def __init__(self, socket_path, connect_timeout):
            super().__init__()
            self._socket_path = socket_path
            self._timeout = urllib3.util.Timeout(connect=connect_timeout, read=None)
            self._pool = _UnixPool(socket_path, self._timeout)

        def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
            return self._pool

        def get_connection(self, url, proxies=None):
            return self._pool

        def request_url(self, request, proxies):
            return request.path_url

        def close(self):
            """Close the pooled sockets; as with requests' own adapters, a later request connects again."""
            self._pool.close()
            self._pool = _UnixPool(self._socket_path, self._timeout)
            super().close()
