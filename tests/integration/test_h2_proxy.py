"""HTTP/2 to backends (issue 12, back side): "h2c://" and "h2://"
proxies and "protocol": "h2" upstreams, against Python's h2 package as the
backend (lib/h2_backend.py) and curl, nghttp and h2raw as the clients:
the request and response mapping, bodies both ways under flow control,
trailers to an h2 client, multiplexing within the peer's
SETTINGS_MAX_CONCURRENT_STREAMS, GOAWAY, a dying connection, TLS with
ALPN, validation."""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from lib.h2_backend import H2Backend

CURL = shutil.which("curl")
NGHTTP = shutil.which("nghttp")

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is missing")


def curl(url, *args, h2=False, timeout=60):
    out = subprocess.run([CURL, "-sS", "--max-time", str(timeout), "-o", "-",
                          "-D", "/dev/stderr",
                          "-w", "\n%{http_code}"]
                         + (["--http2-prior-knowledge"] if h2 else [])
                         + list(args) + [url],
                         capture_output=True, timeout=timeout + 10)
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition(b"\n")
    head = {}
    for line in out.stderr.decode("latin-1").split("\r\n")[1:]:
        k, sep, v = line.partition(":")
        if sep:
            head[k.strip().lower()] = v.strip()
    return int(tail), head, body


@pytest.fixture
def backend():
    b = H2Backend()
    yield b
    b.stop()


def proxy_conf(target, settings=None):
    action = {"proxy": target}
    if settings is not None:
        action["proxy_settings"] = settings
    return {"listeners": {"127.0.0.1:{port}": {"pass": "routes",
                                               "h2c": True}},
            "routes": [{"action": action}]}


def test_h2c_get_and_mapping(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr))
    status, head, body = curl(server.url("/echo?a=1"), "-H", "X-Foo: bar",
                              "-H", "Connection: keep-alive")
    assert status == 200 and body == b""
    assert head["x-method"] == "GET"
    assert head["x-path"] == "/echo?a=1"
    assert head["x-scheme"] == "http"
    assert head["x-authority"] == "127.0.0.1:%d" % server.port
    names = head["x-headers"].split(",")
    assert "x-foo" in names and "connection" not in names
    assert "host" not in names
    assert "connection-id" in head      # the backend's own field passes
    assert head["server"].startswith("Wharf") or "server" in head
