"""Reverse HTTP, the private side (issue 13): an "rhttp@NAME" listener dials
out to a public endpoint, reverses on the peer's first SETTINGS and serves
its routes there.  The public side here is rhttp_peer.PublicPeer, a
scripted peer on Python's h2 speaking HAProxy's wire behaviour."""

import os
import time

import pytest

from lib.wharf import WHARF_BIN, scaled
from rhttp_peer import PublicPeer

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
MODULES = os.path.join(os.path.dirname(WHARF_BIN), "modules") if WHARF_BIN \
    else ""


def private_config(peer_port, connections=1, routes=None, extra=None):
    reverse = {"connect": "127.0.0.1:%d" % peer_port,
               "connections": connections, "h2c": True}
    conf = {"listeners": {
                "127.0.0.1:{port}": {"pass": "routes"},
                "rhttp@edge": {"pass": "routes", "reverse": reverse}},
            "routes": routes or [
                {"match": {"uri": "/scheme"},
                 "action": {"return": 200, "location": "$scheme"}},
                {"action": {"return": 200}}]}
    conf.update(extra or {})
    return conf


def status_of(server):
    r = server.api().get("/status")
    assert r.status == 200, r
    return r.json["rhttp"]


def wait_status(server, pred, timeout=20.0, what="status"):
    deadline = time.monotonic() + scaled(timeout)
    st = None
    while time.monotonic() < deadline:
        st = status_of(server)
        if pred(st):
            return st
        time.sleep(0.05)
    raise AssertionError("%s never held: %r" % (what, st))


@pytest.fixture
def peer():
    p = PublicPeer()
    yield p
    p.close()


def test_tunnel_serves_routes(wharf, peer):
    server = wharf(private_config(peer.port))
    t = peer.wait_live(1)[0]
    assert t.preface_ok              # the dialer sent the client preface
    r = t.request("/anything")
    assert r["status"] == 200
    r = t.request("/scheme")
    # $scheme follows the tunnel's transport (h2c here), as on a listener.
    assert dict(r["headers"]).get("location") == "http"
    assert r["id"] % 2 == 1          # the public side opened the stream
    st = wait_status(server, lambda s: s["listeners"]["edge"]["established"]
                     == 1)
    assert st["listeners"]["edge"]["state"] == "full"
    assert "rhttp@edge: full" in server.log_text()


def test_balance_across_threads_and_replacement(wharf, peer):
    """4 threads, 8 connections: 2 each; a dropped one is replaced on the
    thread that lost it (the least loaded), never elsewhere."""
    server = wharf(private_config(peer.port, connections=8), threads=4)
    peer.wait_live(8)
    st = wait_status(server, lambda s: s["listeners"]["edge"]["established"]
                     == 8)
    assert st["listeners"]["edge"]["threads"] == [2, 2, 2, 2]
    for round_ in range(3):
        peer.live()[round_].close()
        wait_status(server, lambda s: s["listeners"]["edge"]["established"]
                    == 8 and len(peer.live()) == 8, what="8 again")
        st = status_of(server)
        assert st["listeners"]["edge"]["threads"] == [2, 2, 2, 2], st
        assert st["threads"] == [2, 2, 2, 2], st
    assert peer.accepts == 8 + 3


def test_idle_fin_redials_at_once(wharf, peer):
    server = wharf(private_config(peer.port))
    t = peer.wait_live(1)[0]
    time.sleep(1.2)                  # the tunnel lived: no back-off
    start = time.monotonic()
    t.close()
    peer.wait_live(1, timeout=scaled(10))
    assert time.monotonic() - start < scaled(2.0)
    r = peer.live()[0].request("/")
    assert r["status"] == 200
    assert server.alive()


def test_backoff_when_the_public_side_closes_at_once(wharf):
    """A public side that closes every connection before SETTINGS: the
    dials back off (never a connect loop), and the error is logged once."""
    p = PublicPeer(refuse=True)
    try:
        server = wharf(private_config(p.port, connections=2))
        time.sleep(4.0)
        n = p.accepts
        # 250, 500, 1000, 2000 ms: at most ~5 dials per connection in 4 s.
        assert 2 <= n <= 2 * 6, n
        log = server.log_text()
        assert log.count("rhttp@edge: error") == 1, log
    finally:
        p.close()


def test_backoff_when_nothing_listens(wharf):
    """Refused dials back off; the error is logged once; a public side
    that comes up is found by the next dial (at most 5 s later)."""
    p = PublicPeer()
    port = p.port
    p.close()                        # nothing listens there now
    server = wharf(private_config(port))
    time.sleep(2.0)
    assert server.log_text().count("rhttp@edge: error") == 1
    p2 = _peer_on(port)
    try:
        p2.wait_live(1, timeout=scaled(15))
        st = wait_status(server,
                         lambda s: s["listeners"]["edge"]["state"] == "full")
        assert st["listeners"]["edge"]["established"] == 1
    finally:
        p2.close()


def _peer_on(port):
    import socket
    import threading
    p = PublicPeer.__new__(PublicPeer)
    p.lsock = socket.socket()
    p.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    p.lsock.bind(("127.0.0.1", port))
    p.lsock.listen(128)
    p.port = port
    p.refuse = False
    p.accepts = 0
    p.tunnels = []
    p.lock = threading.Lock()
    p.cond = threading.Condition(p.lock)
    p.stopping = False
    p.thread = threading.Thread(target=p._accept, daemon=True)
    p.thread.start()
    return p


def test_removed_listener_stops_dialing(wharf, peer):
    server = wharf(private_config(peer.port, connections=2))
    peer.wait_live(2)
    api = server.api()
    r = api.request("DELETE", "/config/listeners/rhttp@edge")
    assert r.status == 200, r
    deadline = time.monotonic() + scaled(10)
    while peer.live() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert peer.live() == []
    n = peer.accepts
    time.sleep(1.0)
    assert peer.accepts == n         # no redial
    assert status_of(server)["listeners"] == {}
    assert "rhttp@edge: stopped" in server.log_text()


def test_unchanged_reverse_keeps_its_tunnels(wharf, peer):
    server = wharf(private_config(peer.port))
    t = peer.wait_live(1)[0]
    api = server.api()
    r = api.put("/config/routes", [{"action": {"return": 203}}])
    assert r.status == 200, r
    r = t.request("/")
    assert r["status"] == 203        # the new site, the same tunnel
    assert peer.accepts == 1


@pytest.mark.parametrize("reverse,msg", [
    ({"connect": "127.0.0.1:1"}, "needs \\\"tls\\\""),
    ({"connect": "127.0.0.1:1", "h2c": True, "connections": 0},
     "between 1 and"),
    ({"connect": "nowhere", "h2c": True}, "is invalid"),
    ({"h2c": True}, "Required parameter"),
    ({"connect": "127.0.0.1:1", "h2c": True, "bogus": 1}, "Unknown"),
])
def test_reverse_config_errors(wharf, reverse, msg):
    server = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                    "routes": [{"action": {"return": 204}}]})
    r = server.api().put("/config/listeners/rhttp@x",
                         {"pass": "routes", "reverse": reverse})
    assert r.status == 400, r
    assert msg.replace("\\", "") in r.json["detail"], r.json


def test_reverse_on_a_socket_listener_is_refused(wharf):
    server = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                    "routes": [{"action": {"return": 204}}]})
    r = server.api().put("/config/listeners/rhttp@", {"pass": "routes"})
    assert r.status == 400, r


@pytest.fixture
def py_private(wharf, peer):
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    conf = private_config(peer.port, connections=2, routes=[
        {"match": {"uri": "/asgi/*"},
         "action": {"pass": "applications/asgi"}},
        {"action": {"pass": "applications/wsgi"}}], extra={
        "applications": {
            "wsgi": {"type": "python 3", "path": APPS + "/wsgi",
                     "module": "body"},
            "asgi": {"type": "python 3", "path": APPS + "/asgi",
                     "module": "stream", "protocol": "asgi"}}})
    server = wharf(conf, extra_args=["--modulesdir", MODULES])
    return server


def test_python_app_and_streamed_bodies(py_private, peer):
    t = peer.wait_live(2)[0]
    body = os.urandom(1024 * 1024 + 7)
    r = t.request("/size", method="POST", body=body, timeout=scaled(60))
    assert r["status"] == 200, r
    assert r["body"] == b'["%d"]' % len(body)
    r = t.request("/asgi/x?n=50&size=10000", timeout=scaled(60))
    assert r["status"] == 200
    assert len(r["body"]) == 500000
