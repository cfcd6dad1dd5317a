"""The proxy engine: Unit's "proxy" action and "upstreams" against real
backends (a raw socket server that sees the bytes as sent, Python's
http.server, Wharf itself): the request as re-serialised, hop-by-hop
fields, bodies both ways, 502/504, errors after the head, weighted round
robin, backends stopped and restarted mid-test."""

import socket
import threading
import time

import pytest

from lib.configs import routes_config
from lib.proxy_backends import (HttpServerBackend, RawBackend, response,
                                wait_for)
from lib.rawhttp import Reader, exchange, request, wait_closed
from lib.wharf import free_port, scaled


@pytest.fixture
def backends():
    started = []

    def start(handler=None, **kw):
        b = RawBackend(handler or (lambda req, sock: response(
            200, b"hello", [("X-B", "1")])), **kw)
        started.append(b)
        return b
    yield start
    for b in started:
        b.stop()


def proxy_config(url, **extra):
    a = {"proxy": url}
    a.update(extra)
    return routes_config([{"action": a}])


def ask(server, path="/", method="GET", headers=(), body=b"",
        host="localhost", timeout=None):
    with server.connect() as s:
        return exchange(s, request(method=method, path=path, host=host,
                                   headers=list(headers)
                                   + [("Connection", "close")], body=body),
                        head_request=(method == "HEAD"), timeout=timeout)


# -- the request the backend gets ---------------------------------------------

def test_request_line_and_fields_forwarded(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url))
    r = ask(server, "/a/b%20c?x=1&y", headers=[
        ("X-Custom", "v1"), ("Accept", "*/*"), ("Accept", "text/html"),
        ("Cookie", "a=1"), ("Cookie", "b=2")], host="example.test")
    assert (r.status, r.body) == (200, b"hello")
    req = b.last()
    assert req.request_line == "GET /a/b%20c?x=1&y HTTP/1.1"
    assert req.header("Host") == "example.test"
    assert req.header("X-Custom") == "v1"
    assert req.header_all("Accept") == ["*/*", "text/html"]
    assert req.header_all("Cookie") == ["a=1", "b=2"]
    # Unit's request to a backend is never kept alive
    assert req.header("Connection") == "close"


def test_hop_by_hop_request_fields_removed(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url))
    r = ask(server, headers=[
        ("Connection", "keep-alive, X-Private"), ("X-Private", "secret"),
        ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
        ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"),
        ("X-Kept", "yes")])
    assert r.status == 200
    names = b.last().names()
    for name in ("x-private", "keep-alive", "te", "upgrade",
                 "proxy-connection"):
        assert name not in names, (name, names)
    assert b.last().header("X-Kept") == "yes"
    assert b.last().header_all("Connection") == ["close"]


def test_rewrite_changes_the_target_sent(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url, rewrite="/new/path"))
    assert ask(server, "/old?q=1").status == 200
    assert b.last().request_line == "GET /new/path?q=1 HTTP/1.1"


def test_hop_by_hop_response_fields_removed(wharf, backends):
    b = backends(lambda req, sock: response(200, b"ok", [
        ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"), ("Server", "backend/1"),
        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-End", "e")]))
    server = wharf(proxy_config(b.url))
    r = ask(server)
    assert (r.status, r.body) == (200, b"ok")
    assert r.header("X-Hop") is None and r.header("Keep-Alive") is None
    assert r.header_all("Set-Cookie") == ["a=1", "b=2"]
    assert r.header("X-End") == "e"
    assert r.header("Server").startswith("Wharf")
    assert r.header_all("Connection") == ["close"]


def test_response_headers_apply_to_proxied_response(wharf, backends):
    """As in Unit: set fields replace the backend's, null deletes them; on
    2xx and 3xx only."""
    b = backends(lambda req, sock: response(
        404 if req.target == "/404" else 200, b"hello",
        [("X-B", "1"), ("X-Gone", "g"), ("Content-Type", "text/x-b")]))
    server = wharf(proxy_config(b.url, response_headers={
        "X-Added": "1", "X-B": "mine", "X-Gone": None,
        "Content-Type": "text/plain"}))
    r = ask(server)
    assert r.status == 200 and r.header("X-Added") == "1"
    assert r.header_all("X-B") == ["mine"]
    assert r.header_all("X-Gone") == []
    assert r.header_all("Content-Type") == ["text/plain"]
    r = ask(server, "/404")
    assert r.status == 404 and r.header_all("X-B") == ["1"]
    assert r.header("X-Added") is None


# -- addresses ---------------------------------------------------------------

def test_ipv6_backend(wharf, backends):
    b = backends(family=socket.AF_INET6)
    server = wharf(proxy_config(b.url))
    assert ask(server).body == b"hello"


def test_unix_backend(wharf, backends, tmp_path):
    b = backends(family=socket.AF_UNIX, path=str(tmp_path / "b.sock"))
    server = wharf(proxy_config(b.url))
    assert ask(server).body == b"hello"
    assert b.last().request_line == "GET / HTTP/1.1"


def test_python_http_server_backend(wharf):
    b = HttpServerBackend()
    try:
        server = wharf(proxy_config(b.url))
        r = ask(server, "/x?y=1", method="POST", body=b"data",
                headers=[("Content-Length", "4")], host="h.test")
        assert (r.status, r.body) == (200, b"POST /x?y=1\ndata")
        assert r.header("X-Seen-Host") == "h.test"
        r = ask(server, "/h", method="HEAD")
        assert r.status == 200 and r.header("Content-Length") == "8"
    finally:
        b.stop()


def test_wharf_as_backend(wharf, docroot):
    back = wharf(routes_config([{"action": {"share": str(docroot) + "$uri"}}]))
    front = wharf(proxy_config("http://127.0.0.1:%d" % back.port))
    r = ask(front, "/a.txt")
    assert (r.status, r.body) == (200, b"alpha file\n")
    assert r.header("ETag") and r.header("Last-Modified")
    assert ask(front, "/nothing").status == 404


# -- errors ------------------------------------------------------------------

def test_connection_refused_is_502(wharf):
    server = wharf(proxy_config("http://127.0.0.1:%d" % free_port()))
    assert ask(server).status == 502


def test_backend_closes_before_head_is_502(wharf, backends):
    b = backends(lambda req, sock: None)
    server = wharf(proxy_config(b.url))
    assert ask(server).status == 502


INVALID_HEADS = {
    "garbage": b"garbage\r\n\r\n",
    "field_without_colon": b"HTTP/1.1 200 OK\r\nBad Field\r\n"
                           b"Content-Length: 2\r\n\r\nok",
    "space_before_colon": b"HTTP/1.1 200 OK\r\nX-A : 1\r\n"
                          b"Content-Length: 2\r\n\r\nok",
    "two_lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                   b"Content-Length: 3\r\n\r\nok",
    "length_and_chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n"
                          b"2\r\nok\r\n0\r\n\r\n",
    "status_below_100": b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok",
    "http2": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "nul_in_value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n"
                    b"Content-Length: 2\r\n\r\nok",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n"
                b"Content-Length: 2\r\n\r\nok",
    "gzip_coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
    "switching_protocols": b"HTTP/1.1 101 Switching Protocols\r\n"
                           b"Upgrade: x\r\nConnection: upgrade\r\n\r\n",
    "head_too_long": b"HTTP/1.1 200 OK\r\n"
                     + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(INVALID_HEADS))
def test_invalid_response_head_is_502(wharf, backends, name):
    b = backends(lambda req, sock: INVALID_HEADS[name])
    server = wharf(proxy_config(b.url))
    r = ask(server)
    assert r.status == 502, r
    assert b"ok" not in r.body


def test_backend_timeout_is_504(wharf, backends):
    hold = threading.Event()
    b = backends(lambda req, sock: hold.wait(30) and None)
    server = wharf(proxy_config(
        b.url, proxy_settings={"header_read_timeout": 0.5}))
    t = time.monotonic()
    assert ask(server, timeout=20).status == 504
    assert time.monotonic() - t < scaled(15)
    hold.set()


def test_connect_timeout_is_504(wharf):
    # A listener whose backlog is full leaves further connects pending.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(ls.getsockname())
            fillers.append(f)
        server = wharf(proxy_config(
            "http://127.0.0.1:%d" % ls.getsockname()[1],
            proxy_settings={"connect_timeout": 0.5}))
        assert ask(server, timeout=20).status == 504
    finally:
        for f in fillers:
            f.close()
        ls.close()


def test_body_cut_short_ends_the_connection(wharf, backends):
    """After the head went out, an upstream failure never leaks bytes: the
    client sees the connection end, not a complete response."""
    def handler(req, sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
                     + b"x" * 1000)
        time.sleep(0.2)
        return None
    b = backends(handler)
    server = wharf(proxy_config(b.url))
    with server.connect() as s:
        s.sendall(request(headers=[("Connection", "close")]))
        rd = Reader(s)
        head = rd.read_until(b"\r\n\r\n", time.monotonic() + scaled(10))
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Length: 100000" in head
        rest = rd.read_to_eof(time.monotonic() + scaled(10))
        assert rest == b"x" * 1000


def test_bad_chunk_after_head_ends_the_connection(wharf, backends):
    def handler(req, sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n")
        time.sleep(0.3)
        sock.sendall(b"zz\r\nboom\r\n0\r\n\r\n")
        return None
    b = backends(handler)
    server = wharf(proxy_config(b.url))
    with server.connect() as s:
        s.sendall(request(headers=[("Connection", "close")]))
        data = Reader(s).read_to_eof(time.monotonic() + scaled(10))
    assert data.startswith(b"HTTP/1.1 200")
    assert b"boom" not in data and not data.endswith(b"0\r\n\r\n")


def test_no_server_with_weight_is_502(wharf):
    conf = routes_config([{"action": {"pass": "upstreams/u"}}])
    conf["upstreams"] = {"u": {"servers": {}}}
    assert ask(wharf(conf)).status == 502


# -- response framing --------------------------------------------------------

FRAMINGS = {
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nok\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
                b"okabc"),
    "close_delimited": (b"HTTP/1.1 200 OK\r\n\r\nuntil-close", b"until-close"),
    "http10": (b"HTTP/1.0 200 OK\r\n\r\nten", b"ten"),
    "bare_lf": (b"HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 2\n\nok", b"ok"),
    "interim_100": (b"HTTP/1.1 100 Continue\r\n\r\n"
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
}


@pytest.mark.parametrize("name", sorted(FRAMINGS))
def test_response_framings(wharf, backends, name):
    raw, body = FRAMINGS[name]
    b = backends(lambda req, sock: raw)
    server = wharf(proxy_config(b.url))
    r = ask(server)
    assert (r.status, r.body) == (200, body)


@pytest.mark.parametrize("status", [204, 304])
def test_responses_without_body(wharf, backends, status):
    b = backends(lambda req, sock: (
        b"HTTP/1.1 %d X\r\nETag: \"e\"\r\n\r\n" % status))
    server = wharf(proxy_config(b.url))
    r = ask(server)
    assert r.status == status and r.header("ETag") == '"e"'


def test_head_request_keeps_content_length(wharf, backends):
    b = backends(lambda req, sock: (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"))
    server = wharf(proxy_config(b.url))
    r = ask(server, method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == "1234"
    assert b.last().method == "HEAD"


def test_keep_alive_client_after_proxied_response(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url))
    with server.connect() as s:
        rd = Reader(s)
        for _ in range(3):
            s.sendall(request())
            r = rd.read_response()
            assert (r.status, r.body) == (200, b"hello")


# -- request bodies ----------------------------------------------------------

def test_content_length_body(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url))
    body = bytes(range(256)) * 1000
    r = ask(server, method="POST", body=body,
            headers=[("Content-Length", str(len(body)))])
    assert r.status == 200
    req = b.last()
    assert req.body == body and req.header("Content-Length") == str(len(body))
    assert not req.chunked


def test_chunked_body_proxied_chunked(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url))
    raw = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    r = ask(server, method="POST", body=raw,
            headers=[("Transfer-Encoding", "chunked")])
    assert r.status == 200
    req = b.last()
    assert req.chunked and req.body == b"hello world"
    assert req.header("Content-Length") is None


def test_expect_100_continue(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url))
    with server.connect() as s:
        s.sendall(request(method="POST", headers=[
            ("Content-Length", "4"), ("Expect", "100-continue"),
            ("Connection", "close")]))
        rd = Reader(s)
        interim = rd.read_until(b"\r\n\r\n", time.monotonic() + scaled(10))
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"abcd")
        r = rd.read_response()
    assert r.status == 200
    assert b.last().body == b"abcd"
    assert b.last().header("Expect") is None


def test_backend_answers_before_reading_the_body(wharf, backends):
    b = backends(lambda req, sock: response(413, b"too big",
                                            reason="Too Large"),
                 read_body=False)
    server = wharf(proxy_config(b.url))
    r = ask(server, method="POST", body=b"x" * 100000,
            headers=[("Content-Length", "100000")])
    assert r.status in (413, 502)


# -- weighted round robin ----------------------------------------------------

def named(name):
    return lambda req, sock: response(200, name.encode())


@pytest.mark.parametrize("weights,expected", [
    # sequences measured on Unit 1.35 with the same upstreams
    ((3, None, 0), "abaaabaa"),
    ((2, 1, 1), "abzaabza"),
])
def test_weighted_round_robin_smooth(wharf, backends, weights, expected):
    servers = {}
    for name, w in zip("abz", weights):
        b = backends(named(name))
        servers[b.address] = {} if w is None else {"weight": w}
    conf = routes_config([{"action": {"pass": "upstreams/u"}}])
    conf["upstreams"] = {"u": {"servers": servers}}
    server = wharf(conf, threads=1)
    seq = "".join(ask(server).body.decode() for _ in range(8))
    assert seq == expected


def test_pass_with_variable_to_upstream(wharf, backends):
    a = backends(named("a"))
    conf = routes_config([{"action": {"pass": "upstreams/$host"}}])
    conf["upstreams"] = {"up1": {"servers": {a.address: {}}}}
    server = wharf(conf)
    assert ask(server, host="up1").body == b"a"
    assert ask(server, host="up2").status == 404


def test_listener_pass_to_upstream(wharf, backends):
    a = backends(named("a"))
    conf = {"listeners": {"127.0.0.1:{port}": {"pass": "upstreams/u"}},
            "upstreams": {"u": {"servers": {a.address: {}}}}}
    assert ask(wharf(conf)).body == b"a"


# -- backends going away -----------------------------------------------------

def test_backend_stopped_and_restarted(wharf):
    port = free_port()
    server = wharf(proxy_config("http://127.0.0.1:%d" % port))
    b = HttpServerBackend(port)
    try:
        assert ask(server, "/one").body == b"GET /one\n"
    finally:
        b.stop()
    assert ask(server, "/two").status == 502
    b = HttpServerBackend(port)
    try:
        assert ask(server, "/three").body == b"GET /three\n"
    finally:
        b.stop()


def test_client_gone_mid_response(wharf, backends):
    sent = threading.Event()

    def handler(req, sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
        try:
            for _ in range(1000):
                sock.sendall(b"y" * 10000)
        except OSError:
            sent.set()
        return None
    b = backends(handler)
    server = wharf(proxy_config(b.url))
    s = server.connect()
    s.sendall(request())
    s.recv(1000)
    s.close()
    # the proxy closes its backend connection: the backend's writes fail
    assert sent.wait(scaled(20))


def test_client_gone_while_waiting_for_head(wharf, backends):
    hold = threading.Event()
    b = backends(lambda req, sock: hold.wait(10) and None)
    server = wharf(proxy_config(b.url))
    s = server.connect()
    s.sendall(request())
    assert wait_for(lambda: len(b.requests) == 1)
    s.close()
    hold.set()
    assert ask(server).status == 502  # that backend closes without answer


# -- forwarding fields and Host ----------------------------------------------

SPOOF = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"),
         ("X-Forwarded-Host", "evil"), ("Forwarded", "for=6.6.6.6")]


def test_no_forwarding_fields_by_default(wharf, backends):
    """Unit adds none and passes the client's through."""
    b = backends()
    server = wharf(proxy_config(b.url))
    assert ask(server, headers=SPOOF).status == 200
    req = b.last()
    assert req.header_all("X-Forwarded-For") == ["6.6.6.6"]
    assert req.header_all("Forwarded") == ["for=6.6.6.6"]


def test_x_forwarded_from_untrusted_client(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url, proxy_settings={"x_forwarded": True}))
    assert ask(server, headers=SPOOF, host="site.test").status == 200
    req = b.last()
    assert req.header_all("X-Forwarded-For") == ["127.0.0.1"]
    assert req.header_all("X-Forwarded-Proto") == ["http"]
    assert req.header_all("X-Forwarded-Host") == ["site.test"]
    assert req.header_all("Forwarded") == []  # dropped, not added


def test_x_forwarded_from_trusted_source_appends(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url, proxy_settings={
        "x_forwarded": True, "trusted_sources": ["127.0.0.0/8"]}))
    assert ask(server, headers=SPOOF, host="site.test").status == 200
    req = b.last()
    assert req.header_all("X-Forwarded-For") == ["6.6.6.6", "127.0.0.1"]
    assert req.header_all("X-Forwarded-Proto") == ["https"]
    assert req.header_all("X-Forwarded-Host") == ["evil"]


def test_forwarded_rfc7239(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url, proxy_settings={"forwarded": True}))
    assert ask(server, headers=SPOOF, host="site.test:8080").status == 200
    req = b.last()
    assert req.header_all("Forwarded") == [
        'for=127.0.0.1;proto=http;host="site.test:8080"']
    assert req.header("X-Forwarded-For") is None


def test_host_rewritten_with_template(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url, proxy_settings={
        "host": "backend.internal"}))
    assert ask(server, host="site.test").status == 200
    assert b.last().header_all("Host") == ["backend.internal"]
    server.api().put("/config/routes/0/action/proxy_settings/host",
                     "${host}.inner")
    assert ask(server, host="site.test").status == 200
    assert b.last().header_all("Host") == ["site.test.inner"]


def test_http10_client_without_host_gets_one(wharf, backends):
    b = backends()
    server = wharf(proxy_config(b.url))
    with server.connect() as s:
        r = exchange(s, request(version="HTTP/1.0", host=None))
    assert r.status == 200
    assert b.last().request_line == "GET / HTTP/1.1"
    assert b.last().header_all("Host") == [""]


def test_upstream_settings_apply(wharf, backends):
    b = backends()
    conf = routes_config([{"action": {"pass": "upstreams/u"}}])
    conf["upstreams"] = {"u": {"servers": {b.address: {}},
                               "settings": {"x_forwarded": True,
                                            "host": "up.internal"}}}
    server = wharf(conf)
    assert ask(server).status == 200
    assert b.last().header("X-Forwarded-For") == "127.0.0.1"
    assert b.last().header("Host") == "up.internal"


# -- Wharf's timeouts --------------------------------------------------------

def test_body_read_timeout_ends_the_connection(wharf, backends):
    hold = threading.Event()

    def handler(req, sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        hold.wait(30)
        return None
    b = backends(handler)
    server = wharf(proxy_config(b.url, proxy_settings={
        "body_read_timeout": 0.5}))
    t = time.monotonic()
    with server.connect() as s:
        s.sendall(request(headers=[("Connection", "close")]))
        data = Reader(s).read_to_eof(time.monotonic() + scaled(20))
    hold.set()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\nabc")
    assert time.monotonic() - t < scaled(15)


def test_send_timeout_is_504(wharf, backends):
    """A backend that reads nothing of a large body: the proxy gives up
    sending after send_timeout (the client is not to blame)."""
    hold = threading.Event()
    b = backends(lambda req, sock: hold.wait(30) and None, read_body=False)
    conf = proxy_config(b.url, proxy_settings={"send_timeout": 0.5})
    conf["settings"] = {"http": {"max_body_size": 64 << 20}}
    server = wharf(conf)
    size = 32 << 20
    with server.connect() as s:
        s.sendall(request(method="POST", headers=[
            ("Content-Length", str(size)), ("Connection", "close")]))
        sender = threading.Thread(target=lambda: _send_quietly(s, size),
                                  daemon=True)
        sender.start()
        r = Reader(s, timeout=30).read_response()
    hold.set()
    assert r.status == 504


def _send_quietly(s, size):
    block = b"z" * 65536
    try:
        while size > 0:
            s.sendall(block)
            size -= len(block)
    except OSError:
        pass


def test_slow_client_body_is_not_a_backend_timeout(wharf, backends):
    """While the proxy waits for the client's body, the backend timeouts
    do not run: a client pausing longer than send_timeout still gets the
    backend's answer."""
    b = backends()
    server = wharf(proxy_config(b.url, proxy_settings={
        "send_timeout": 0.3, "header_read_timeout": 5}))
    with server.connect() as s:
        s.sendall(request(method="POST", headers=[
            ("Content-Length", "6"), ("Connection", "close")]) + b"abc")
        time.sleep(1.0)
        s.sendall(b"def")
        r = Reader(s).read_response()
    assert r.status == 200 and b.last().body == b"abcdef"


def test_expect_100_continue_waits_for_the_backend(wharf):
    """The 100 goes out only once the backend is connected: while the
    connect hangs (a full backlog), the client is not asked for its body."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(ls.getsockname())
            fillers.append(f)
        server = wharf(proxy_config(
            "http://127.0.0.1:%d" % ls.getsockname()[1],
            proxy_settings={"connect_timeout": 30}))
        with server.connect() as s:
            s.sendall(request(method="POST", headers=[
                ("Content-Length", "4"), ("Expect", "100-continue"),
                ("Connection", "close")]))
            s.settimeout(1.0)
            with pytest.raises(socket.timeout):
                s.recv(100)
    finally:
        for f in fillers:
            f.close()
        ls.close()


# -- a backend process killed, and reconfiguration mid-response --------------

def _http_server_process(port, directory):
    import subprocess
    import sys
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind",
         "127.0.0.1", "--directory", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL)
    assert wait_for(lambda: _connects(port), scaled(10))
    return proc


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_backend_process_killed_and_restarted(wharf, tmp_path):
    import signal
    (tmp_path / "f.txt").write_bytes(b"file body\n")
    port = free_port()
    server = wharf(proxy_config("http://127.0.0.1:%d" % port))
    proc = _http_server_process(port, str(tmp_path))
    try:
        assert ask(server, "/f.txt").body == b"file body\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert ask(server, "/f.txt").status == 502
        proc = _http_server_process(port, str(tmp_path))
        assert ask(server, "/f.txt").body == b"file body\n"
    finally:
        proc.kill()
        proc.wait(10)


def test_reconfiguration_keeps_a_response_in_flight(wharf, backends):
    """A request keeps its snapshot (and upstream) while the config
    changes under it."""
    go = threading.Event()

    def handler(req, sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
        go.wait(20)
        sock.sendall(b"def")
        return None
    b = backends(handler)
    other = backends(named("other"))
    conf = routes_config([{"action": {"pass": "upstreams/u"}}])
    conf["upstreams"] = {"u": {"servers": {b.address: {}}}}
    server = wharf(conf)
    with server.connect() as s:
        s.sendall(request(headers=[("Connection", "close")]))
        assert wait_for(lambda: len(b.requests) == 1, scaled(10))
        r = server.api().put("/config/upstreams/u/servers",
                             {other.address: {}})
        assert r.status == 200, r
        go.set()
        resp = Reader(s).read_response()
    assert (resp.status, resp.body) == (200, b"abcdef")
    assert ask(server).body == b"other"


def test_forwarding_fields_for_an_ipv6_client(wharf, backends):
    b = backends()
    conf = routes_config([{"action": {"proxy": b.url, "proxy_settings": {
        "x_forwarded": True, "forwarded": True}}}],
        listener="[::1]:{port}")
    server = wharf(conf)
    with socket.create_connection(("::1", server.port),
                                  timeout=scaled(10)) as s:
        r = exchange(s, request(host="v6.test",
                                headers=[("Connection", "close")]))
    assert r.status == 200
    req = b.last()
    assert req.header_all("X-Forwarded-For") == ["::1"]
    assert req.header_all("Forwarded") == [
        'for="[::1]";proto=http;host=v6.test']
