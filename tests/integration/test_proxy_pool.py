"""Keep-alive pools to backend servers (Wharf's "idle_connections" and
"idle_timeout" in "proxy_settings"): reuse, the idle limit and timeout, a
server closing idle connections, and the transparent retry of idempotent
requests only."""

import threading

import pytest

from lib.configs import routes_config
from lib.proxy_backends import RawBackend, response, wait_for
from lib.rawhttp import exchange, request
from lib.wharf import scaled


@pytest.fixture
def backends():
    started = []

    def start(handler=None, **kw):
        kw.setdefault("keep_alive", True)
        b = RawBackend(handler or (lambda req, sock: response(200, b"hi")),
                       **kw)
        started.append(b)
        return b
    yield start
    for b in started:
        b.stop()


def pooled(url, idle=4, timeout=1):
    return routes_config([{"action": {"proxy": url, "proxy_settings": {
        "idle_connections": idle, "idle_timeout": timeout}}}])


def ask(server, method="GET", body=b""):
    headers = [("Connection", "close")]
    if body:
        headers.append(("Content-Length", str(len(body))))
    with server.connect() as s:
        return exchange(s, request(method=method, headers=headers,
                                   body=body),
                        head_request=(method == "HEAD"))


def test_connection_reused(wharf, backends):
    b = backends()
    server = wharf(pooled(b.url), threads=1)
    for _ in range(5):
        assert ask(server).body == b"hi"
    assert b.accepted == 1
    assert [r.nth for r in b.requests] == [0, 1, 2, 3, 4]
    assert b.last().header("Connection") is None


def test_no_pool_by_default_is_units_close(wharf, backends):
    b = backends()
    server = wharf(routes_config([{"action": {"proxy": b.url}}]), threads=1)
    for _ in range(3):
        assert ask(server).body == b"hi"
    assert b.accepted == 3
    assert b.last().header("Connection") == "close"


def test_idle_timeout_closes(wharf, backends):
    b = backends()
    server = wharf(pooled(b.url, timeout=0.5), threads=1)
    assert ask(server).status == 200
    assert b.open == 1
    assert wait_for(lambda: b.open == 0, scaled(10))
    assert ask(server).status == 200
    assert b.accepted == 2


def test_idle_limit(wharf, backends):
    gate = threading.Barrier(3, timeout=scaled(10))

    def handler(req, sock):
        if req.nth == 0:
            gate.wait()  # three connections at once
        return response(200, b"hi")
    b = backends(handler)
    server = wharf(pooled(b.url, idle=1, timeout=30), threads=1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(ask(server)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(20))
    assert [r.status for r in results] == [200, 200, 200]
    assert b.accepted == 3
    assert wait_for(lambda: b.open == 1, scaled(10)), b.open
    server.api().put("/config/routes/0/action/proxy_settings/idle_timeout",
                     0.2)


def test_backend_close_not_reused(wharf, backends):
    """A response with "Connection: close" (or HTTP/1.0) is not pooled."""
    b = backends(lambda req, sock: response(200, b"hi",
                                            [("Connection", "close")]),
                 keep_alive=False)
    server = wharf(pooled(b.url), threads=1)
    for _ in range(3):
        assert ask(server).body == b"hi"
    assert b.accepted == 3


def test_server_closing_idle_connection(wharf, backends):
    """The server closes a connection after answering: the pool sees it
    close and the next request opens a new one."""
    b = backends(keep_alive=False)
    server = wharf(pooled(b.url), threads=1)
    assert ask(server).body == b"hi"
    assert wait_for(lambda: b.open == 0, scaled(10))
    assert ask(server).body == b"hi"
    assert b.accepted == 2


def closes_on_reuse(req, sock):
    """Answers the first request of a connection; closes the connection
    without an answer on the next, as a server does that closed an idle
    connection just as the proxy reused it."""
    if req.nth > 0:
        return None
    return response(200, b"fresh")


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_idempotent_request_retried(wharf, backends, method):
    b = backends(closes_on_reuse)
    server = wharf(pooled(b.url, timeout=30), threads=1)
    assert ask(server).status == 200
    r = ask(server, method=method)
    assert r.status == 200
    assert b.accepted == 2
    assert [(q.method, q.nth) for q in b.requests][-2:] == [
        (method, 1), (method, 0)]
    server.api().put("/config/routes/0/action/proxy_settings/idle_timeout",
                     0.2)


@pytest.mark.parametrize("method,body", [("POST", b""), ("PATCH", b"x"),
                                         ("PUT", b"body")])
def test_other_requests_not_retried(wharf, backends, method, body):
    """POST and PATCH are not idempotent; a PUT whose body was already
    taken from the client cannot be sent again either."""
    b = backends(closes_on_reuse)
    server = wharf(pooled(b.url, timeout=30), threads=1)
    assert ask(server).status == 200
    assert ask(server, method=method, body=body).status == 502
    assert b.accepted == 1


def test_bytes_past_a_streamed_body_never_reach_the_client(wharf, backends):
    """A Content-Length body too big for the first read is read straight
    into the response channel, never past its length: bytes the backend
    sent after it (here a whole second response) are not relayed, and the
    connection is not reused for the next request."""
    body = bytes(range(256)) * 800  # 200 KiB
    smuggled = response(200, b"SMUGGLED")

    seen = []

    def handler(req, sock):
        seen.append(req)
        if len(seen) > 1:
            return response(200, b"second")
        return response(200, body) + smuggled
    b = backends(handler)
    server = wharf(pooled(b.url, timeout=30), threads=1)
    first = ask(server)
    assert first.status == 200
    assert first.body == body
    second = ask(server)
    assert second.body == b"second"
    assert seen[1].nth == 0  # on a new connection
    assert b.accepted == 2
