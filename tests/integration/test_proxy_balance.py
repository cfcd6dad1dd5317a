"""Balancing algorithms of an upstream ("settings": {"balance": ...}) against
real backends: least connections and two random choices steer around a
backend that holds a request, hashing on a template keeps a key on its
server (and only the keys of a server that leaves move), round robin stays
Unit's default."""

import socket
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


def ask(server, path="/", headers=()):
    with server.connect() as s:
        return exchange(s, request(path=path, host="localhost",
                                   headers=list(headers)
                                   + [("Connection", "close")]))


def upstream_conf(servers, server=None, **settings):
    """A listener passing to upstream u; server: the running one whose
    listener the config keeps (for a PUT)."""
    listener = server.listeners()[0] if server is not None else LISTEN
    conf = routes_config([{"action": {"pass": "upstreams/u"}}],
                         listener=listener)
    conf["upstreams"] = {"u": {"servers": servers, "settings": settings}}
    return conf


def holding(name, release):
    """A backend that answers its name, and holds /slow until release."""
    def handler(req, sock):
        if req.target == "/slow":
            release.wait(30)
        return response(200, name.encode())
    return handler


@pytest.mark.parametrize("balance", ["least_conn", "random_two"])
def test_busy_backend_is_avoided(wharf, backends, balance):
    release = threading.Event()
    a = backends(holding("a", release))
    b = backends(holding("b", release))
    server = wharf(upstream_conf({a.address: {}, b.address: {}},
                                 balance=balance))
    slow = {}
    t = threading.Thread(target=lambda: slow.update(r=ask(server, "/slow")))
    t.start()
    try:
        assert wait_for(lambda: len(a.requests) + len(b.requests) == 1)
        busy = "a" if a.requests else "b"
        # The held request keeps one connection active: every other
        # request goes to the other backend (round robin would alternate).
        seen = {ask(server, "/fast").body.decode() for _ in range(8)}
        assert seen == {"b" if busy == "a" else "a"}
    finally:
        release.set()
        t.join(30)
    assert slow["r"].body.decode() == busy
    # Both idle again: both get requests.
    seen = {ask(server, "/fast").body.decode() for _ in range(8)}
    assert seen == {"a", "b"}


def test_round_robin_alternates_by_default(wharf, backends):
    release = threading.Event()
    a = backends(holding("a", release))
    b = backends(holding("b", release))
    release.set()
    server = wharf(upstream_conf({a.address: {}, b.address: {}}), threads=1)
    assert "".join(ask(server).body.decode() for _ in range(4)) == "abab"


def test_least_conn_respects_weights(wharf, backends):
    a = backends(lambda req, sock: response(200, b"a"))
    b = backends(lambda req, sock: response(200, b"b"))
    server = wharf(upstream_conf({a.address: {"weight": 3},
                                  b.address: {"weight": 1}},
                                 balance="least_conn"), threads=1)
    seq = "".join(ask(server).body.decode() for _ in range(8))
    assert seq.count("a") == 6 and seq.count("b") == 2, seq


def by_user(server, user):
    return ask(server, headers=[("X-User", user)]).body.decode()


def test_hash_keeps_a_key_on_its_server(wharf, backends):
    names = "abcd"
    bs = [backends(lambda req, sock, n=n: response(200, n.encode()))
          for n in names]
    servers = {b.address: {} for b in bs}
    server = wharf(upstream_conf(servers, balance="hash",
                                 hash_key="$header_x_user"))
    users = ["user%d" % i for i in range(40)]
    first = {u: by_user(server, u) for u in users}
    for u in users[:10]:
        assert by_user(server, u) == first[u]
    assert len(set(first.values())) >= 3   # keys spread over the servers
    # Server "c" leaves: only its keys move.
    gone = bs[2].address
    del servers[gone]
    api = server.api()
    r = api.put("/config", upstream_conf(servers, server, balance="hash",
                                         hash_key="$header_x_user"))
    assert r.status == 200, r.json
    for u in users:
        now = by_user(server, u)
        if first[u] == "c":
            assert now != "c"
        else:
            assert now == first[u], (u, first[u], now)


def test_hash_default_key_is_remote_addr(wharf, backends):
    bs = [backends(lambda req, sock, n=n: response(200, n.encode()))
          for n in "abc"]
    server = wharf(upstream_conf({b.address: {} for b in bs},
                                 balance="hash"))
    # Every request comes from 127.0.0.1: one server gets them all.
    assert len({ask(server).body for _ in range(9)}) == 1


@pytest.mark.parametrize("settings,detail", [
    ({"balance": "fastest"},
     'The "balance" value must be "round_robin", "least_conn", '
     '"random_two" or "hash".'),
    ({"balance": 1}, 'The "balance" value must be a string, but not an integer number.'),
    ({"hash_key": "$nope"}, None),
])
def test_balance_settings_refused(wharf, settings, detail):
    server = wharf(routes_config([{"action": {"return": 204}}]))
    r = server.api().put("/config", upstream_conf(
        {"127.0.0.1:9": {}}, server, **settings))
    assert r.status == 400, r.json
    if detail is not None:
        assert r.json["detail"] == detail


def test_proxy_action_takes_the_settings(wharf, backends):
    a = backends(lambda req, sock: response(200, b"a"))
    conf = routes_config([{"action": {
        "proxy": a.url, "proxy_settings": {"balance": "least_conn"}}}])
    server = wharf(conf)
    assert ask(server).body == b"a"


# -- limits: max_conns, the queue, per-route timeouts ------------------------

class Gate:
    """A backend that holds every request until opened, and records the
    most connections it served at once."""

    def __init__(self, backends, name="g"):
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

        def handler(req, sock):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                if req.target != "/fast":
                    self.open.wait(30)
            finally:
                with self.lock:
                    self.now -= 1
            return response(200, name.encode())
        self.b = backends(handler)
        self.address = self.b.address


def in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.update(r=fn()))
    t.start()
    return t, out


def test_max_conns_without_queue_is_503(wharf, backends):
    g = Gate(backends)
    server = wharf(upstream_conf({g.address: {"max_conns": 1}}))
    t, held = in_thread(lambda: ask(server))
    try:
        assert wait_for(lambda: g.now == 1)
        t0 = time.monotonic()
        assert ask(server).status == 503
        assert time.monotonic() - t0 < scaled(5)
    finally:
        g.open.set()
        t.join(30)
    assert held["r"].status == 200
    assert ask(server).status == 200


@pytest.mark.parametrize("threads", [1, 2])
def test_queue_waits_for_a_free_connection(wharf, backends, threads):
    g = Gate(backends)
    server = wharf(upstream_conf({g.address: {}}, max_conns=2, queue=10,
                                 queue_timeout=30), threads=threads)
    started = [in_thread(lambda: ask(server)) for _ in range(6)]
    try:
        assert wait_for(lambda: g.now == 2)
        time.sleep(0.3)
        assert g.now == 2          # the other four wait in the queue
    finally:
        g.open.set()
    for t, out in started:
        t.join(30)
        assert out["r"].status == 200
    assert g.most == 2
    assert len(g.b.requests) == 6


def test_queue_timeout_and_full_queue_are_503(wharf, backends):
    g = Gate(backends)
    server = wharf(upstream_conf({g.address: {"max_conns": 1}}, queue=1,
                                 queue_timeout=0.5))
    t1, held = in_thread(lambda: ask(server))
    try:
        assert wait_for(lambda: g.now == 1)
        t2, queued = in_thread(lambda: ask(server))
        time.sleep(0.1)
        # The queue (1) is taken: 503 at once.
        assert ask(server).status == 503
        t2.join(30)
        assert queued["r"].status == 503   # queue_timeout
    finally:
        g.open.set()
        t1.join(30)
    assert held["r"].status == 200
    assert len(g.b.requests) == 1


def test_client_gone_while_queued(wharf, backends):
    g = Gate(backends)
    server = wharf(upstream_conf({g.address: {"max_conns": 1}}, queue=4,
                                 queue_timeout=30), threads=1)
    t1, held = in_thread(lambda: ask(server))
    try:
        assert wait_for(lambda: g.now == 1)
        for _ in range(3):
            s = server.connect()
            s.sendall(request(path="/", host="localhost"))
            time.sleep(0.05)
            s.close()
        time.sleep(0.2)
    finally:
        g.open.set()
        t1.join(30)
    assert held["r"].status == 200
    # The slots of the requests that went away came back: the next ones
    # are served (max_conns 1, so a leaked slot would queue them for ever).
    for _ in range(3):
        assert ask(server, "/fast").status == 200
    # The requests withdrawn from the queue never reached the backend.
    assert [r.target for r in g.b.requests] == ["/", "/fast", "/fast",
                                                "/fast"]


def test_timeouts_are_per_route(wharf, backends):
    def slow(req, sock):
        time.sleep(1.0)
        return response(200, b"late")
    b = backends(slow)
    conf = routes_config([
        {"match": {"uri": "/short"},
         "action": {"proxy": b.url,
                    "proxy_settings": {"header_read_timeout": 0.3}}},
        {"action": {"proxy": b.url,
                    "proxy_settings": {"header_read_timeout": 10}}}])
    server = wharf(conf)
    assert ask(server, "/short").status == 504
    r = ask(server, "/long")
    assert (r.status, r.body) == (200, b"late")


def free_port():
    """A port nothing listens on (bound, then closed) for a backend that
    starts later."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_health(server, address):
    st = server.api().get("/status/upstreams").json
    return st.get("u", {}).get("servers", {}).get(address, {}).get("health")


def test_queued_request_takes_a_server_that_comes_up(wharf, backends):
    """The only up server is full (max_conns 1, held by a slow request)
    and the other is down: a queued request waits.  The second server
    comes up (its health check passes): no slot was given back, yet the
    queued request is served there well before queue_timeout, because a
    waiter looks again every 100 ms (b3f73d3)."""
    a = Gate(backends, "a")
    port = free_port()
    address = "127.0.0.1:%d" % port
    hc = {"path": "/fast", "interval": 0.1, "timeout": 1, "rise": 1,
          "fall": 1, "status": 200}
    server = wharf(upstream_conf({a.address: {}, address: {}}, max_conns=1,
                                 queue=4, queue_timeout=scaled(8),
                                 health_check=hc))
    assert wait_for(lambda: server_health(server, address) == "down",
                    scaled(10))
    t1, held = in_thread(lambda: ask(server, "/slow"))
    try:
        assert wait_for(lambda: a.now == 1)
        t0 = time.monotonic()
        t2, queued = in_thread(lambda: ask(server, "/q"))
        assert wait_for(lambda: ups_queue(server) == 1)
        time.sleep(0.3)
        assert not queued               # still waiting: nothing is free
        b = backends(lambda req, sock: response(200, b"b"), port=port)
        t2.join(scaled(8) + 10)
        took = time.monotonic() - t0
        assert (queued["r"].status, queued["r"].body) == (200, b"b")
        assert took < scaled(8) - 1, took   # before queue_timeout
        assert [r.target for r in b.requests if r.target != "/fast"] \
            == ["/q"]
        assert a.now == 1               # the slow one still holds a
    finally:
        a.open.set()
        t1.join(30)
    assert held["r"].status == 200


def ups_queue(server):
    st = server.api().get("/status/upstreams").json
    return st.get("u", {}).get("queue")


def test_hand_over_serves_the_queue_in_order(wharf, backends):
    """Each slot given back goes to the oldest waiter a server can take,
    one waiter per slot, so with max_conns 1 the queued requests reach
    the backend one at a time and in the order they came.  (Which server
    a waiter can take does not depend on the waiter, "hash" moving a full
    server's keys too, so walking past the head only matters when it
    races; that is not observable from outside.)"""
    order = []
    lock = threading.Lock()
    gates = {}

    def handler(req, sock):
        with lock:
            order.append(req.target)
            ev = gates.setdefault(req.target, threading.Event())
        ev.wait(30)
        return response(200, req.target.encode())
    b = backends(handler)
    server = wharf(upstream_conf({b.address: {"max_conns": 1}}, queue=8,
                                 queue_timeout=scaled(30), balance="hash",
                                 hash_key="$uri"), threads=2)
    names = ["/w%d" % i for i in range(5)]
    started = []
    for i, n in enumerate(names):
        started.append(in_thread(lambda n=n: ask(server, n)))
        # The first holds the slot; each next one is queued behind.
        assert wait_for(lambda i=i: (len(order) == 1
                                     and ups_queue(server) == i))
    for n in names:
        assert wait_for(lambda n=n: order and order[-1] == n)
        time.sleep(0.2)
        assert order[-1] == n           # one at a time: max_conns 1
        with lock:
            gates[n].set()
    for (t, out), n in zip(started, names):
        t.join(30)
        assert (out["r"].status, out["r"].body) == (200, n.encode())
    assert order == names
