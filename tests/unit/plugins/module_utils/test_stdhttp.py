# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The standard library's HTTP, against a local http.server: what the stores rely on beyond a plain GET (which the
engine tests cover: tests/system/test_bare_python_hosts.py)."""

import http.server
import io
import socket
import threading

import pytest

from ansible_collections.airgap.images.plugins.module_utils.stores import stdhttp


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = []

    def _answer(self, status, body=b"", headers=None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # pylint: disable=invalid-name
        Handler.seen.append((self.command, self.path, self.headers.get("Authorization"), self.client_address[1]))
        if self.path == "/moved":
            self._answer(307, headers={"Location": "http://localhost:%d/target" % self.server.server_address[1]})
        elif self.path == "/lines":
            self._answer(200, b'{"stream":"one"}\r\n{"stream":"two"}\n{"last":true}')
        else:
            self._answer(200, b"hello " + self.path.encode())

    def do_PUT(self):  # pylint: disable=invalid-name
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                body += self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    break
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        Handler.seen.append((self.command, self.path, body, self.client_address[1]))
        self._answer(201, str(len(body)).encode())

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


@pytest.fixture
def server():
    Handler.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_a_connection_is_kept_for_the_next_request_once_a_response_is_read(server):
    session = stdhttp.Session()
    first = session.request("GET", server + "/a")
    second = session.request("GET", server + "/b", stream=True)
    assert (first.status_code, first.content, second.content) == (200, b"hello /a", b"hello /b")
    assert Handler.seen[0][3] == Handler.seen[1][3]  # the same client port: one connection
    session.close()


def test_a_redirect_to_another_host_drops_the_credentials(server):
    session = stdhttp.Session()
    response = session.request("GET", server + "/moved", headers={"Authorization": "Bearer secret"})
    assert response.status_code == 200 and response.content == b"hello /target"
    assert [(path, auth) for _method, path, auth, _port in Handler.seen] == [("/moved", "Bearer secret"), ("/target", None)]


def test_bodies_are_sent_from_bytes_files_and_iterators(server):
    session = stdhttp.Session()
    assert session.request("PUT", server + "/bytes", data=b"abc").content == b"3"
    sized = session.request("PUT", server + "/file", data=io.BytesIO(b"x" * 3_000_000), headers={"Content-Length": "3000000"})
    assert sized.content == b"3000000"
    chunked = session.request("PUT", server + "/chunks", data=iter([b"ab", b"", b"cde"]))
    assert chunked.content == b"5"
    assert [body for method, _path, body, _port in Handler.seen if method == "PUT"] == [b"abc", b"x" * 3_000_000, b"abcde"]


def test_lines_of_a_streamed_answer(server):
    response = stdhttp.Session().request("GET", server + "/lines", stream=True)
    assert list(response.iter_lines()) == [b'{"stream":"one"}', b'{"stream":"two"}', b'{"last":true}']


def test_params_are_encoded_as_requests_encodes_them(server):
    stdhttp.Session().request("GET", server + "/images/get", params=[("names", "a:1"), ("names", "b/c:2")])
    assert Handler.seen[0][1] == "/images/get?names=a%3A1&names=b%2Fc%3A2"


def test_failures_are_requests_exceptions_with_what_the_stores_read_in_them(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(stdhttp.exceptions.ConnectionError) as refused:
        stdhttp.Session().request("GET", "http://127.0.0.1:%d/" % port, timeout=(2, 2))
    assert "Connection refused" in str(refused.value)
    session = stdhttp.Session()
    session.mount("http://docker.socket", str(tmp_path / "absent.sock"))
    with pytest.raises(stdhttp.exceptions.ConnectionError) as absent:
        session.request("GET", "http://docker.socket/_ping", timeout=(2, 2))
    assert "No such file or directory" in str(absent.value)
    assert issubclass(stdhttp.exceptions.SSLError, stdhttp.exceptions.ConnectionError)  # as in requests: caught first


def test_a_silent_peer_is_a_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        with pytest.raises(stdhttp.exceptions.Timeout):
            stdhttp.Session().request("GET", "http://127.0.0.1:%d/" % listener.getsockname()[1], timeout=(2, 0.5))
    finally:
        listener.close()
