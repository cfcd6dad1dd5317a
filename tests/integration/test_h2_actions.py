"""Every action on HTTP/2 (h2c, prior knowledge): the proxy to an h1
backend (bodies both ways), WSGI and ASGI applications (a request body far
larger than the stream window, read under back-pressure; streamed
responses), with curl and nghttp as the clients."""

import os
import shutil
import subprocess

import pytest

from h2raw import H2Client
from lib.proxy_backends import HttpServerBackend
from lib.wharf import WHARF_BIN

CURL = shutil.which("curl")
NGHTTP = shutil.which("nghttp")
APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
MODULES = os.path.join(os.path.dirname(WHARF_BIN), "modules") if WHARF_BIN \
    else ""

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is missing")


def h2get(url, *args, timeout=60):
    out = subprocess.run([CURL, "-sS", "--http2-prior-knowledge",
                          "--max-time", str(timeout), "-o", "-",
                          "-w", "\n%{http_code} %{http_version}"]
                         + list(args) + [url],
                         capture_output=True, timeout=timeout + 10)
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition(b"\n")
    status, version = tail.decode().split()
    return int(status), version, body


def test_proxy_over_h2(wharf, tmp_path):
    b = HttpServerBackend()
    try:
        server = wharf({"listeners": {"127.0.0.1:{port}":
                                      {"pass": "routes", "h2c": True}},
                        "routes": [{"action": {"proxy": b.url}}]})
        url = "http://127.0.0.1:%d/x?y=1" % server.port
        assert h2get(url) == (200, "2", b"GET /x?y=1\n")
        blob = tmp_path / "blob"
        data = os.urandom(200000)
        blob.write_bytes(data)
        status, version, body = h2get(url, "--data-binary", "@" + str(blob))
        assert (status, version) == (200, "2")
        assert body == b"POST /x?y=1\n" + data
    finally:
        b.stop()


@pytest.fixture
def apps(wharf):
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    server = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                    "routes": [{"action": {"return": 204}}]},
                   extra_args=["--modulesdir", MODULES])
    if "module: python" not in server.log_text():
        pytest.fail("main did not discover the Python module")
    api = server.api()
    conf = {
        "listeners": {"127.0.0.1:%d" % server.port:
                      {"pass": "routes", "h2c": True}},
        "routes": [
            {"match": {"uri": "/asgi/*"},
             "action": {"pass": "applications/asgi"}},
            {"action": {"pass": "applications/wsgi"}}],
        "applications": {
            "wsgi": {"type": "python 3", "path": APPS + "/wsgi",
                     "module": "body"},
            "asgi": {"type": "python 3", "path": APPS + "/asgi",
                     "module": "stream", "protocol": "asgi"},
            "wstream": {"type": "python 3", "path": APPS + "/wsgi",
                        "module": "stream"}}}
    r = api.put("/config", conf)
    assert r.status == 200, r
    server.conf = conf
    yield server
    if server.alive():
        api.put("/config", {"listeners": {"127.0.0.1:%d" % server.port:
                                          {"pass": "routes"}},
                            "routes": [{"action": {"return": 204}}]})
        server.wait_fds_at_most(server.fd_baseline or 1 << 30, timeout=10)


def test_wsgi_big_body_over_h2(apps, tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3 * 1024 * 1024 + 1))
    status, version, body = h2get(
        "http://127.0.0.1:%d/size" % apps.port,
        "--data-binary", "@" + str(blob))
    assert (status, version) == (200, "2")
    assert body == b'["%d"]' % (3 * 1024 * 1024 + 1)


def test_wsgi_body_without_length_over_h2(apps):
    """DATA without content-length: the app reads a body of unknown length
    (as a chunked one on h1) to its END_STREAM."""
    c = H2Client(apps.port)
    try:
        sid = c.request("/size", method="POST", body=b"y" * 200000)
        r = c.wait(sid)
        assert r["status"] == 200
        assert r["body"] == b'["200000"]'
    finally:
        c.close()


def test_asgi_stream_over_h2(apps):
    status, version, body = h2get(
        "http://127.0.0.1:%d/asgi/x?n=50&size=10000" % apps.port)
    assert (status, version) == (200, "2")
    assert len(body) == 500000
    assert body[:10000] == b"\x00" * 10000
    assert body[-10000:] == bytes([49]) * 10000
