"""Health of upstream servers against real backends: passive (max_fails
failures within fail_window take a server out for fail_timeout), active
(an HTTP check at an interval with rise/fall), a down server gets no
traffic, all down is a 503 at once (no connect attempt), and the state
survives a reconfiguration that keeps the server."""

import threading
import time

import pytest

from lib.configs import LISTEN, routes_config
from lib.proxy_backends import RawBackend, response, wait_for
from lib.rawhttp import exchange, request
from lib.wharf import scaled


@pytest.fixture
def backends():
    started = []

    def start(handler, **kw):
        b = RawBackend(handler, **kw)
        started.append(b)
        return b
    yield start
    for b in started:
        b.stop()


def ask(server, path="/"):
    with server.connect() as s:
        return exchange(s, request(path=path, host="localhost",
                                   headers=[("Connection", "close")]))


def upstream_conf(servers, server=None, **settings):
    listener = server.listeners()[0] if server is not None else LISTEN
    conf = routes_config([{"action": {"pass": "upstreams/u"}}],
                         listener=listener)
    conf["upstreams"] = {"u": {"servers": servers, "settings": settings}}
    return conf


def named(name):
    return lambda req, sock: response(200, name.encode())


def broken(req, sock):
    return b"NOT HTTP\r\n\r\n"


def served(b, path="/"):
    with b.lock:
        return sum(1 for r in b.requests if r.target == path)


def test_passive_failures_take_a_server_out(wharf, backends):
    a = backends(named("a"))
    b = backends(broken)
    server = wharf(upstream_conf({a.address: {}, b.address: {}},
                                 max_fails=2, fail_window=30,
                                 fail_timeout=2), threads=1)
    statuses = [ask(server).status for _ in range(4)]
    assert statuses == [200, 502, 200, 502]
    # b failed twice within the window: it gets nothing for fail_timeout.
    before = served(b)
    assert [ask(server).body for _ in range(6)] == [b"a"] * 6
    assert served(b) == before
    # Once fail_timeout is over it is tried again.
    time.sleep(2.2)
    bodies = [ask(server).status for _ in range(4)]
    assert 502 in bodies
    assert served(b) > before


def test_failures_outside_the_window_do_not_count(wharf, backends):
    b = backends(broken)
    server = wharf(upstream_conf({b.address: {}}, max_fails=2,
                                 fail_window=0.3, fail_timeout=30))
    assert ask(server).status == 502
    time.sleep(0.6)
    assert ask(server).status == 502
    time.sleep(0.6)
    # Two failures, but never two within 0.3 s: still up (502, not 503).
    assert ask(server).status == 502
    assert served(b) == 3


def test_all_down_is_503_without_a_connect(wharf, backends):
    b = backends(broken)
    server = wharf(upstream_conf({b.address: {}}, max_fails=1,
                                 fail_timeout=30))
    assert ask(server).status == 502
    accepted = b.accepted
    for _ in range(3):
        assert ask(server).status == 503
    assert b.accepted == accepted


def test_per_server_keys_override_the_upstream(wharf, backends):
    a = backends(broken)
    b = backends(broken)
    server = wharf(upstream_conf({a.address: {"max_fails": 1},
                                  b.address: {}},
                                 max_fails=0, fail_timeout=30), threads=1)
    assert [ask(server).status for _ in range(2)] == [502, 502]
    # a is down (its own max_fails 1), b never goes down (the default 0).
    assert [ask(server).status for _ in range(3)] == [502] * 3
    assert served(a) == 1 and served(b) == 4


def test_passive_state_survives_a_reconfiguration(wharf, backends):
    a = backends(named("a"))
    b = backends(broken)
    servers = {a.address: {}, b.address: {}}
    server = wharf(upstream_conf(servers, max_fails=1, fail_timeout=30),
                   threads=1)
    assert sorted(ask(server).status for _ in range(2)) == [200, 502]
    # A new config that keeps b (and changes the other settings).
    r = server.api().put("/config", upstream_conf(
        servers, server, max_fails=1, fail_timeout=30, idle_connections=2))
    assert r.status == 200, r.json
    before = served(b)
    assert [ask(server).body for _ in range(4)] == [b"a"] * 4
    assert served(b) == before


class Health:
    """A backend whose /health answers 200 or 500 as told."""

    def __init__(self, backends, name):
        self.ok = True
        self.checks = []

        def handler(req, sock):
            if req.target == "/health":
                self.checks.append(req)
                return response(200 if self.ok else 500, b"")
            return response(200, name.encode())
        self.b = backends(handler)
        self.address = self.b.address

    def checked(self):
        return len(self.checks)


def check_conf(servers, server=None, **extra):
    hc = {"path": "/health", "interval": 0.1, "timeout": 1, "rise": 2,
          "fall": 2, "status": 200}
    hc.update(extra)
    return upstream_conf(servers, server, health_check=hc)


def test_active_check_takes_a_server_out_and_back(wharf, backends):
    a = Health(backends, "a")
    b = Health(backends, "b")
    server = wharf(check_conf({a.address: {}, b.address: {}}))
    assert wait_for(lambda: a.checked() >= 2 and b.checked() >= 2,
                    scaled(10))
    req = b.checks[0]
    assert req.request_line == "GET /health HTTP/1.1"
    assert req.header("Host") == b.address
    assert {ask(server).body for _ in range(6)} == {b"a", b"b"}
    b.ok = False
    n = b.checked()
    assert wait_for(lambda: b.checked() >= n + 3, scaled(10))
    assert {ask(server).body for _ in range(6)} == {b"a"}
    # Back up after rise successes; the requests go to it again.
    b.ok = True
    n = b.checked()
    assert wait_for(lambda: b.checked() >= n + 3, scaled(10))
    assert {ask(server).body for _ in range(6)} == {b"a", b"b"}


def test_active_check_unreachable_server(wharf, backends):
    a = Health(backends, "a")
    b = Health(backends, "b")
    server = wharf(check_conf({a.address: {}, b.address: {}}))
    b.b.stop()   # refused from now on
    time.sleep(1.0)   # fall (2) probes at 0.1 s, with room to spare
    assert {ask(server).status for _ in range(6)} == {200}
    a.ok = False
    n = a.checked()
    assert wait_for(lambda: a.checked() >= n + 3, scaled(10))
    # Every server is down: 503 at once.
    t0 = time.monotonic()
    assert ask(server).status == 503
    assert time.monotonic() - t0 < scaled(5)


def test_active_check_stops_when_the_config_drops_it(wharf, backends):
    a = Health(backends, "a")
    servers = {a.address: {}}
    server = wharf(check_conf(servers))
    assert wait_for(lambda: a.checked() >= 2, scaled(10))
    a.ok = False
    n = a.checked()
    assert wait_for(lambda: a.checked() >= n + 3, scaled(10))
    assert ask(server).status == 503
    # The same server without a check: up at once, checks stop.
    r = server.api().put("/config", upstream_conf(servers, server))
    assert r.status == 200, r.json
    assert ask(server).body == b"a"
    time.sleep(0.3)
    n = a.checked()
    time.sleep(0.5)
    assert a.checked() == n


def test_health_check_settings_refused(wharf):
    server = wharf(routes_config([{"action": {"return": 204}}]))
    for hc in ({"path": "health"}, {"status": 99}, {"status": [300, 200]},
               {"rise": 0}, {"interval": 0}, {"nope": 1}):
        r = server.api().put("/config", upstream_conf(
            {"127.0.0.1:9": {}}, server, health_check=hc))
        assert r.status == 400, (hc, r.json)
