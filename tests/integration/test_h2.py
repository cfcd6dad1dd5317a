"""HTTP/2 on the front side (http/h2_conn.c) with real clients: curl
--http2-prior-knowledge on an "h2c" listener, h1 still served there (the
preface tells them apart, also when it arrives in pieces), ALPN h2 over TLS
(curl --http2, nghttp) and http/1.1 for a client that offers only that,
many streams on one connection (h2load), share/return/Range/304 and
request bodies on h2, the mapping seen by variables and the access log
(HTTP/2.0, $host from :authority, joined cookies), malformed requests
(stream errors), and GOAWAY on a graceful reconfiguration."""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse

import pytest

from lib.certs import CertSet
from lib.wharf import free_port, scaled

CURL = shutil.which("curl")
NGHTTP = shutil.which("nghttp")
H2LOAD = shutil.which("h2load")

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is missing")


def h2c_conf(routes, http=None, **listener):
    lconf = {"pass": "routes", "h2c": True}
    lconf.update(listener)
    conf = {"listeners": {"127.0.0.1:{port}": lconf}, "routes": routes}
    if http is not None:
        conf["settings"] = {"http": http}
    return conf


def curl(*args, timeout=30):
    """Runs curl; returns (status, headers dict, body bytes, http version)."""
    cmd = [CURL, "-sS", "--max-time", str(timeout)]
    if "-I" not in args:
        cmd += ["-D", "-", "-o", "-"]
    cmd += list(args)
    out = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
    assert out.returncode == 0, out.stderr
    raw = out.stdout
    head, _, body = raw.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/") and b" 100" in head.split(b"\r\n")[0]:
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ")[0], int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body, version


@pytest.fixture
def h2c_server(wharf, docroot):
    routes = [
        {"match": {"uri": "/var"},
         "action": {"return": 200,
                    "location": "$request_line|$host|$scheme|$request_uri"
                                "|$method|$cookie_a|$cookie_b"}},
        {"match": {"uri": "/ret"}, "action": {"return": 204}},
        {"action": {"share": str(docroot) + "$uri"}},
    ]
    server = wharf(h2c_conf(routes))
    return server


def test_h2c_prior_knowledge_share(h2c_server, docroot):
    url = h2c_server.url("/a.txt")
    status, headers, body, version = curl("--http2-prior-knowledge", url)
    assert version == "HTTP/2"
    assert status == 200
    assert body == (docroot / "a.txt").read_bytes()
    assert headers["content-length"] == [str(len(body))]
    assert "connection" not in headers
    assert "transfer-encoding" not in headers


def test_h2c_listener_still_serves_h1(h2c_server, docroot):
    status, _, body, version = curl("--http1.1", h2c_server.url("/a.txt"))
    assert (status, version) == (200, "HTTP/1.1")
    assert body == (docroot / "a.txt").read_bytes()


def test_h2c_preface_in_pieces(h2c_server):
    """The preface split over several reads still selects h2."""
    s = socket.create_connection(("127.0.0.1", h2c_server.port),
                                 timeout=scaled(10))
    try:
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        for piece in (preface[:3], preface[3:11], preface[11:]):
            s.sendall(piece)
            time.sleep(0.05)
        s.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS
        data = s.recv(9)
        assert len(data) == 9 and data[3] == 4  # the server's SETTINGS
    finally:
        s.close()


def test_h2c_off_by_default(wharf, docroot):
    """Without "h2c" the preface is an HTTP/1 request line: 505 or 400."""
    server = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                    "routes": [{"action": {"return": 200}}]})
    s = socket.create_connection(("127.0.0.1", server.port),
                                 timeout=scaled(10))
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 ")
    finally:
        s.close()


def test_h2c_variables_and_cookies(h2c_server):
    status, headers, _, _ = curl(
        "--http2-prior-knowledge", "-H", "Cookie: a=1", "-H", "Cookie: b=2",
        h2c_server.url("/var?x=1"))
    assert status == 200
    loc = urllib.parse.unquote(headers["location"][0])
    assert loc == ("GET /var?x=1 HTTP/2.0|127.0.0.1|http|/var?x=1|GET|1|2")


def test_h2c_return_and_head(h2c_server):
    status, headers, body, _ = curl("--http2-prior-knowledge",
                                    h2c_server.url("/ret"))
    assert (status, body) == (204, b"")
    status, headers, body, _ = curl("--http2-prior-knowledge", "-I",
                                    h2c_server.url("/hello.txt"))
    assert status == 200 and body == b""
    assert headers["content-length"] == ["20"]


def test_h2c_range_and_304(h2c_server):
    url = h2c_server.url("/hello.txt")
    status, headers, body, _ = curl("--http2-prior-knowledge", "-r", "2-5",
                                    url)
    assert (status, body) == (206, b"2345")
    assert headers["content-range"] == ["bytes 2-5/20"]
    _, headers, _, _ = curl("--http2-prior-knowledge", url)
    etag = headers["etag"][0]
    status, _, body, _ = curl("--http2-prior-knowledge", "-H",
                              "If-None-Match: " + etag, url)
    assert (status, body) == (304, b"")


def test_h2c_request_body_to_share(h2c_server, tmp_path):
    """A body the endpoint does not read is dropped under flow control
    (more than the stream window); the answer comes."""
    if NGHTTP is None:
        pytest.skip("nghttp is missing")
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 300000)
    # nghttp, not curl: curl 7.88 may stall when the answer comes before
    # its upload ends
    out = subprocess.run([NGHTTP, "-nv", "-d", str(blob),
                          h2c_server.url("/ret")],
                         capture_output=True, timeout=60, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    assert ":status: 204" in out.stdout


def test_h2c_many_streams(h2c_server, docroot):
    if H2LOAD is None:
        pytest.skip("h2load is missing")
    out = subprocess.run([H2LOAD, "-n", "400", "-c", "2", "-m", "20",
                          h2c_server.url("/a.txt")],
                         capture_output=True, timeout=60, text=True)
    assert "400 succeeded" in out.stdout, out.stdout + out.stderr
    assert "0 failed" in out.stdout


def test_h2c_big_file(h2c_server, docroot):
    data = os.urandom(5 * 1024 * 1024 + 7)
    (docroot / "big.bin").write_bytes(data)
    status, _, body, _ = curl("--http2-prior-knowledge",
                              h2c_server.url("/big.bin"))
    assert status == 200 and body == data


def test_h2c_access_log(wharf, docroot, tmp_path):
    log = tmp_path / "access.log"
    conf = h2c_conf([{"action": {"share": str(docroot) + "$uri"}}])
    conf["access_log"] = {"path": str(log),
                          "format": "$request_line $status $body_bytes_sent"}
    server = wharf(conf)
    status, _, _, _ = curl("--http2-prior-knowledge", server.url("/a.txt"))
    assert status == 200
    deadline = time.monotonic() + scaled(5)
    while time.monotonic() < deadline:
        if log.exists() and log.read_text():
            break
        time.sleep(0.05)
    assert log.read_text().strip() == "GET /a.txt HTTP/2.0 200 11"


def test_h2c_conf_rejects_non_boolean(wharf):
    server = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                    "routes": [{"action": {"return": 200}}]})
    api = server.api()
    r = api.request("PUT", "/config/listeners/127.0.0.1:%d/h2c"
                    % server.port, '"yes"')
    assert r.status == 400, r


# ---- TLS: ALPN ------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return CertSet(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_server(wharf, certs, docroot):
    server = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                    "routes": [{"action": {"return": 200}}]})
    api = server.api()
    r = api.request("PUT", "/certificates/rsa",
                    certs.rsa.bundle(certs.ca))
    assert r.status == 200, r
    server.tls_port = free_port()
    conf = {"listeners": {
        "127.0.0.1:%d" % server.tls_port: {"pass": "routes",
                                           "tls": {"certificate": "rsa"}},
        "127.0.0.1:%d" % server.port: {"pass": "routes"}},
        "routes": [
            {"match": {"uri": "/var"},
             "action": {"return": 200, "location": "$scheme|$request_line"}},
            {"action": {"share": str(docroot) + "$uri"}}]}
    r = api.request("PUT", "/config", conf)
    assert r.status == 200, r
    server.fd_baseline = server.settled_fd_count()
    return server


def tls_url(server, path):
    return "https://127.0.0.1:%d%s" % (server.tls_port, path)


def test_tls_alpn_h2(tls_server, docroot, certs):
    status, headers, body, version = curl(
        "--http2", "--cacert", certs.ca.crt, "--resolve",
        "example.com:%d:127.0.0.1" % tls_server.tls_port,
        "https://example.com:%d/a.txt" % tls_server.tls_port)
    assert (status, version) == (200, "HTTP/2")
    assert body == (docroot / "a.txt").read_bytes()
    status, headers, _, _ = curl("--http2", "-k", tls_url(tls_server, "/var"))
    assert urllib.parse.unquote(headers["location"][0]) == \
        "https|GET /var HTTP/2.0"


def test_tls_alpn_http11_still_works(tls_server, docroot):
    status, _, body, version = curl("--http1.1", "-k",
                                    tls_url(tls_server, "/a.txt"))
    assert (status, version) == (200, "HTTP/1.1")


def test_tls_no_alpn_is_http1(tls_server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", tls_server.tls_port),
                                  timeout=scaled(10)) as raw:
        with ctx.wrap_socket(raw) as s:
            assert s.selected_alpn_protocol() is None
            s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 200")


def test_tls_h2_many_streams_and_big_file(tls_server, docroot):
    data = os.urandom(3 * 1024 * 1024 + 5)
    (docroot / "big.bin").write_bytes(data)
    status, _, body, version = curl("--http2", "-k",
                                    tls_url(tls_server, "/big.bin"))
    assert (status, version, body == data) == (200, "HTTP/2", True)
    if H2LOAD is None:
        return
    out = subprocess.run([H2LOAD, "-n", "300", "-c", "2", "-m", "10",
                          tls_url(tls_server, "/a.txt")],
                         capture_output=True, timeout=60, text=True)
    assert "300 succeeded" in out.stdout, out.stdout + out.stderr
    assert "h2" in out.stdout


# ---- graceful stop ----------------------------------------------------------

def slow_backend(delay):
    from lib.proxy_backends import RawBackend, response

    def handler(req, sock):
        time.sleep(delay)
        return response(200, b"slow answer")
    return RawBackend(handler)


def nghttp_during(url, action):
    """Runs nghttp -v on url, calls action() once the request is out,
    and returns nghttp's output."""
    if NGHTTP is None:
        pytest.skip("nghttp is missing")
    p = subprocess.Popen([NGHTTP, "-v", url], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.4)  # the request is at the backend
        action()
        out, _ = p.communicate(timeout=scaled(30))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return out


def test_quit_sends_goaway_and_finishes_streams(wharf):
    b = slow_backend(1.5)
    try:
        server = wharf({"listeners": {"127.0.0.1:{port}":
                                      {"pass": "routes", "h2c": True}},
                        "routes": [{"action": {"proxy": b.url}}]})

        def quit():
            server.proc.send_signal(signal.SIGQUIT)
            server.stopped_by_test = True
        out = nghttp_during(server.url("/slow"), quit)
        g = out.find("recv GOAWAY")
        assert g >= 0, out
        assert "NO_ERROR" in out[g:g + 200]
        assert "slow answer" in out[g:], out  # the stream finished after
        server.proc.wait(scaled(20))
    finally:
        b.stop()


def test_removed_listener_sends_goaway(wharf):
    b = slow_backend(1.5)
    try:
        server = wharf({"listeners": {"127.0.0.1:{port}":
                                      {"pass": "routes", "h2c": True}},
                        "routes": [{"action": {"proxy": b.url}}]})
        api = server.api()

        def remove():
            r = api.request("PUT", "/config/listeners",
                            {"127.0.0.1:%d" % free_port():
                             {"pass": "routes"}})
            assert r.status == 200, r
        out = nghttp_during(server.url("/slow"), remove)
        g = out.find("recv GOAWAY")
        assert g >= 0, out
        assert "NO_ERROR" in out[g:g + 200]
        assert "slow answer" in out[g:], out
    finally:
        b.stop()


def test_reset_mid_file_then_served(h2c_server, docroot):
    """A client that resets a stream while its file is going out (the
    no-copy path holds the stream until the frame's bytes are out) leaves
    nothing behind, and the connection keeps serving."""
    from h2raw import H2Client
    (docroot / "big.bin").write_bytes(b"r" * (4 * 1024 * 1024))
    c = H2Client(h2c_server.port, timeout=scaled(20))
    try:
        sid = c.request("/big.bin")
        while len(c.responses[sid]["body"]) < 100000:
            c.read_some()
        c.conn.reset_stream(sid)
        c.flush()
        sid2 = c.request("/hello.txt")
        r = c.wait(sid2)
        assert (r["status"], r["body"]) == (200, b"0123456789abcdefghij")
    finally:
        c.close()


def test_many_streams_of_a_file_interleave(h2c_server, docroot):
    """Ten concurrent 1 MiB streams on one connection all complete, byte
    exact (DATA frames of different streams interleave)."""
    from h2raw import H2Client
    data = os.urandom(1024 * 1024)
    (docroot / "mib.bin").write_bytes(data)
    c = H2Client(h2c_server.port, timeout=scaled(30))
    try:
        ids = [c.request("/mib.bin") for _ in range(10)]
        for sid in ids:
            r = c.wait(sid)
            assert r["status"] == 200 and r["body"] == data
    finally:
        c.close()


def test_status_counts_h2_connections_and_streams(h2c_server):
    from h2raw import H2Client
    api = h2c_server.api()
    before = api.get("/status").json
    c = H2Client(h2c_server.port, timeout=scaled(20))
    try:
        for _ in range(3):
            assert c.wait(c.request("/ret"))["status"] == 204
        now = api.get("/status").json
        assert now["requests"]["total"] - before["requests"]["total"] >= 3
        conns = now["connections"]
        assert conns["accepted"] - before["connections"]["accepted"] >= 1
        assert conns["active"] + conns["idle"] >= 1  # still open
    finally:
        c.close()
    deadline = time.monotonic() + scaled(5)
    while time.monotonic() < deadline:
        st = api.get("/status").json["connections"]
        if st["closed"] == st["accepted"] - 1:  # only the api's own is open
            break
        time.sleep(0.05)
    st = api.get("/status").json["connections"]
    assert st["closed"] >= before["connections"]["closed"] + 1
