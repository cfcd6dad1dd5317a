"""Balancing algorithms of an upstream ("settings": {"balance": ...}) against
real backends: least connections and two random choices steer around a
backend that holds a request, hashing on a template keeps a key on its
server (and only the keys of a server that leaves move), round robin stays
Unit's default."""

import threading

import pytest

from lib.configs import LISTEN, routes_config
from lib.proxy_backends import RawBackend, response, wait_for
from lib.rawhttp import exchange, request


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
