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


def wait_for(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_h2c_post_body_both_ways(wharf, backend, tmp_path):
    """A body far over the stream windows, up and back, from an h1 and an
    h2 client."""
    server = wharf(proxy_conf("h2c://" + backend.addr))
    data = os.urandom(3 * 1024 * 1024 + 17)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    for h2 in (False, True):
        status, head, body = curl(server.url("/echo"), "--data-binary",
                                  "@" + str(blob), h2=h2)
        assert status == 200 and head["x-method"] == "POST"
        assert len(body) == len(data) and body == data
        assert "content-length" in head["x-headers"].split(",")
    # chunked from an h1 client: no content-length, no transfer-encoding
    status, head, body = curl(server.url("/echo"), "--data-binary",
                              "@" + str(blob), "-H",
                              "Transfer-Encoding: chunked")
    assert status == 200 and body == data
    assert "transfer-encoding" not in head["x-headers"].split(",")


def test_h2c_big_streamed_response(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr))
    n = 20 * 1024 * 1024 + 3
    for h2 in (False, True):
        status, head, body = curl(server.url("/big?n=%d" % n), h2=h2)
        assert status == 200 and len(body) == n


def test_status_and_no_body(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr))
    for code in (204, 404, 503):
        status, _, body = curl(server.url("/status/%d" % code))
        assert status == code and body == b""
    status, head, body = curl(server.url("/echo"), "-I")
    assert status == 200 and head["x-method"] == "HEAD"


def test_trailers_reach_an_h2_client(wharf, backend):
    import h2.events
    from h2raw import H2Client

    class Client(H2Client):
        trailers = {}

        def on_event(self, ev):
            if isinstance(ev, h2.events.TrailersReceived):
                self.trailers[ev.stream_id] = dict(ev.headers)
            super().on_event(ev)

    server = wharf(proxy_conf("h2c://" + backend.addr))
    c = Client(server.port)
    try:
        sid = c.request("/trailers")
        resp = c.wait(sid)
    finally:
        c.close()
    assert resp["status"] == 200 and resp["body"] == b"body"
    assert c.trailers[sid] == {"x-trailer": "yes", "grpc-status": "0"}
    # an h1 client gets the body (HTTP/1.1 trailers are not sent)
    status, _, body = curl(server.url("/trailers"))
    assert (status, body) == (200, b"body")


def test_one_connection_multiplexed(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr), threads=1)
    for _ in range(5):
        assert curl(server.url("/echo"))[0] == 200
    with_threads(lambda: curl(server.url("/echo"))[0] == 200, 8)
    assert backend.connections == 1


def with_threads(fn, n):
    res = []
    ts = [threading.Thread(target=lambda: res.append(fn())) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert res == [True] * n


def test_max_concurrent_streams_opens_more_connections(wharf):
    b = H2Backend(max_streams=2)
    try:
        server = wharf(proxy_conf("h2c://" + b.addr), threads=1)
        # a first request learns the server's SETTINGS
        assert curl(server.url("/echo"))[0] == 200
        res = []
        ts = [threading.Thread(
            target=lambda: res.append(curl(server.url("/wait"))[0]))
            for _ in range(6)]
        for t in ts:
            t.start()
        assert wait_for(lambda: len(b.requests) == 7)
        assert b.peak_streams <= 2
        assert b.connections == 3
        b.release()
        for t in ts:
            t.join(60)
        assert res == [200] * 6
    finally:
        b.stop()


def test_goaway_moves_new_streams(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr), threads=1)
    status, head, _ = curl(server.url("/goaway"))
    assert status == 200
    first = head["connection-id"]
    assert wait_for(lambda: backend.closed == 1)
    status, head, _ = curl(server.url("/echo"))
    assert status == 200 and head["connection-id"] != first
    assert backend.connections == 2


def test_goaway_lets_inflight_streams_finish(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr), threads=1)
    res = []
    t = threading.Thread(target=lambda: res.append(curl(server.url("/wait"))))
    t.start()
    assert wait_for(lambda: len(backend.requests) == 1)
    # the same connection is told GOAWAY (last stream: a later one)
    status, head, _ = curl(server.url("/goaway"))
    assert status == 200
    backend.release()
    t.join(60)
    assert res[0][0] == 200 and res[0][1]["x-path"] == "/wait"
    assert curl(server.url("/echo"))[0] == 200
    assert backend.connections == 2


def test_dead_connection_fails_only_its_streams(wharf):
    b = H2Backend(max_streams=1)
    try:
        server = wharf(proxy_conf("h2c://" + b.addr), threads=1)
        assert curl(server.url("/echo"))[0] == 200
        res = []
        t = threading.Thread(
            target=lambda: res.append(curl(server.url("/wait"))[0]))
        t.start()
        assert wait_for(lambda: len(b.requests) == 2)
        # the first connection is busy: /close goes on a second one, which
        # dies
        assert curl(server.url("/close"))[0] == 502
        b.release()
        t.join(60)
        assert res == [200]
        assert curl(server.url("/echo"))[0] == 200
    finally:
        b.stop()
    server.wait_log(r"proxy to .* \(h2\)")


def test_idle_timeout_closes(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr,
                              {"idle_timeout": 0.5}))
    assert curl(server.url("/echo"))[0] == 200
    assert wait_for(lambda: backend.closed == 1)


def test_backend_down_is_502(wharf):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % port.getsockname()[1]
    port.close()
    server = wharf(proxy_conf("h2c://" + addr))
    assert curl(server.url("/"))[0] == 502


def test_h1_backend_behind_h2c_is_502(wharf):
    from lib.proxy_backends import HttpServerBackend
    b = HttpServerBackend()
    try:
        server = wharf(proxy_conf("h2c://127.0.0.1:%d" % b.port))
        assert curl(server.url("/"))[0] == 502
    finally:
        b.stop()


def test_header_read_timeout_is_504(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr,
                              {"header_read_timeout": 0.5}))
    assert curl(server.url("/wait"))[0] == 504
    backend.release()
    assert curl(server.url("/echo"))[0] == 200


def test_upstream_protocol_h2_max_conns_counts_streams(wharf):
    b = H2Backend()
    try:
        server = wharf({
            "listeners": {"127.0.0.1:{port}": {"pass": "upstreams/app"}},
            "upstreams": {"app": {
                "servers": {b.addr: {"max_conns": 2}},
                "settings": {"protocol": "h2", "queue": 0}}}}, threads=1)
        assert curl(server.url("/echo"))[0] == 200
        res = []
        ts = [threading.Thread(
            target=lambda: res.append(curl(server.url("/wait"))[0]))
            for _ in range(2)]
        for t in ts:
            t.start()
        assert wait_for(lambda: len(b.requests) == 3)
        assert curl(server.url("/echo"))[0] == 503   # 2 streams: full
        b.release()
        for t in ts:
            t.join(60)
        assert res == [200, 200]
        assert b.connections == 1
        st = server.api().request("GET", "/status/upstreams/app")
        assert st.status == 200
    finally:
        b.stop()


def test_client_gone_resets_stream(wharf, backend):
    server = wharf(proxy_conf("h2c://" + backend.addr), threads=1)
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: len(backend.requests) == 1)
    s.close()
    backend.release()
    assert curl(server.url("/echo"))[0] == 200
    assert backend.connections == 1


@pytest.mark.parametrize("value,message", [
    ("h3", 'The "protocol" value must be "http/1.1" or "h2".'),
    (2, None),
])
def test_protocol_validation(wharf, value, message):
    server = wharf({"listeners": {}, "routes": []})
    r = server.api().request("PUT", "/config", {
        "listeners": {}, "routes": [{"action": {
            "proxy": "http://127.0.0.1:1",
            "proxy_settings": {"protocol": value}}}]})
    assert r.status == 400
    if message is not None:
        assert message in str(r.json)


def test_scheme_validation(wharf):
    server = wharf({"listeners": {}, "routes": []})
    for bad in ("h2c://nope nope", "h3://127.0.0.1:1", "h2c:/127.0.0.1:1"):
        r = server.api().request("PUT", "/config", {
            "listeners": {}, "routes": [{"action": {"proxy": bad}}]})
        assert r.status == 400, bad
        assert "The \"proxy\" address is invalid" in str(r.json)
    for good in ("h2c://127.0.0.1:1", "h2://127.0.0.1:1",
                 "h2c://[::1]:1", "h2c://unix:/tmp/x.sock"):
        r = server.api().request("PUT", "/config", {
            "listeners": {}, "routes": [{"action": {"proxy": good}}]})
        assert r.status == 200, (good, r.json)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from lib.certs import make_cert
    d = str(tmp_path_factory.mktemp("h2certs"))

    class C:
        pass
    c = C()
    c.ca = make_cert(d, "ca", "H2 Proxy Test CA", ca=True, days=365)
    c.ip = make_cert(d, "ip", "127.0.0.1", sans=("IP:127.0.0.1",),
                     issuer=c.ca)
    return c


def tls_backend(certs, alpn=("h2",)):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.ip.crt, certs.ip.key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return H2Backend(tls_context=ctx)


def test_h2_over_tls(wharf, certs):
    b = tls_backend(certs)
    try:
        server = wharf(proxy_conf("h2://" + b.addr,
                                  {"tls": {"ca_file": certs.ca.crt}}))
        status, head, body = curl(server.url("/echo"), "--data", "abc")
        assert status == 200 and body == b"abc"
        assert head["x-scheme"] == "https"
        n = 5 * 1024 * 1024
        status, _, body = curl(server.url("/big?n=%d" % n), h2=True)
        assert status == 200 and len(body) == n
        assert b.connections == 1
    finally:
        b.stop()


def test_h2_over_tls_without_alpn_h2_is_502(wharf, certs):
    b = tls_backend(certs, alpn=("http/1.1",))
    try:
        server = wharf(proxy_conf("h2://" + b.addr,
                                  {"tls": {"ca_file": certs.ca.crt}}))
        assert curl(server.url("/echo"))[0] == 502
        server.wait_log("did not select h2")
    finally:
        b.stop()


def test_upstream_h2_tls_via_protocol_key(wharf, certs):
    b = tls_backend(certs)
    try:
        server = wharf({
            "listeners": {"127.0.0.1:{port}": {"pass": "upstreams/app"}},
            "upstreams": {"app": {
                "servers": {b.addr: {}},
                "settings": {"protocol": "h2",
                             "tls": {"ca_file": certs.ca.crt}}}}})
        status, head, _ = curl(server.url("/echo"))
        assert status == 200 and head["x-scheme"] == "https"
    finally:
        b.stop()
