"""Host names of upstream servers ("http://HOSTNAME:PORT" and "NAME:PORT"
server keys): every address of a name becomes a server, names from
/etc/hosts ("localhost") and from a DNS server ("resolver") resolve, and a
name is resolved again after its TTL ("resolve_interval" bounds it), so a
changed answer moves the traffic.  The DNS server is a tiny one in this
file, on 127.0.0.1."""

import socket
import struct
import threading
import time

import pytest

from lib.configs import LISTEN, routes_config
from lib.proxy_backends import RawBackend, response, wait_for
from lib.rawhttp import exchange, request
from lib.wharf import free_port, scaled


class TinyDNS:
    """Answers A and AAAA queries for the names in self.zone (name ->
    list of IPv4/IPv6 texts) with self.ttl; NXDOMAIN for the others."""

    def __init__(self):
        self.zone = {}
        self.ttl = 1
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _answer(self, q):
        qid, _, qd = struct.unpack("!HHH", q[:6])
        i, labels = 12, []
        while q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        qtype, _ = struct.unpack("!HH", q[i + 1:i + 5])
        question = q[12:i + 5]
        name = ".".join(labels)
        if name not in self.zone:
            return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
        answers = b""
        count = 0
        for ip in self.zone[name]:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            rtype = 28 if family == socket.AF_INET6 else 1
            if rtype != qtype:
                continue
            rdata = socket.inet_pton(family, ip)
            answers += struct.pack("!HHHIH", 0xc00c, rtype, 1, self.ttl,
                                   len(rdata)) + rdata
            count += 1
        return (struct.pack("!HHHHHH", qid, 0x8180, 1, count, 0, 0)
                + question + answers)

    def _serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(512)
            except OSError:
                return
            self.queries += 1
            try:
                self.sock.sendto(self._answer(q), peer)
            except (IndexError, struct.error, OSError):
                pass

    def stop(self):
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def dns():
    d = TinyDNS()
    yield d
    d.stop()


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


def named(name):
    return lambda req, sock: response(200, name.encode())


def ask(server):
    with server.connect() as s:
        return exchange(s, request(path="/", host="localhost",
                                   headers=[("Connection", "close")]))


def upstream_conf(servers, server=None, **settings):
    listener = server.listeners()[0] if server is not None else LISTEN
    conf = routes_config([{"action": {"pass": "upstreams/u"}}],
                         listener=listener)
    conf["upstreams"] = {"u": {"servers": servers, "settings": settings}}
    return conf


def has_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def dual_backends(backends):
    """a on 127.0.0.1:P and b on [::1]:P, the same port P."""
    for _ in range(20):
        port = free_port()
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.bind(("::1", port))
            s.close()
        except OSError:
            continue
        try:
            a = backends(named("a"), family=socket.AF_INET, port=port)
            b = backends(named("b"), family=socket.AF_INET6, port=port)
        except OSError:
            continue
        return port, a, b
    pytest.skip("no port free on both 127.0.0.1 and ::1")


def localhost_addrs():
    return {ai[4][0] for ai in socket.getaddrinfo("localhost", 80,
                                                  type=socket.SOCK_STREAM)}


def test_proxy_to_localhost(wharf, backends):
    a = backends(named("a"))
    conf = routes_config([{"action": {
        "proxy": "http://localhost:%d" % a.port}}])
    server = wharf(conf)
    # localhost may also be ::1 (nothing listens there): some answer 502.
    statuses = {ask(server).status for _ in range(6)}
    assert 200 in statuses


def test_every_address_of_a_name_is_a_server(wharf, backends):
    if not has_ipv6() or localhost_addrs() != {"127.0.0.1", "::1"}:
        pytest.skip("localhost is not both 127.0.0.1 and ::1 here")
    port, a, b = dual_backends(backends)
    server = wharf(upstream_conf({"localhost:%d" % port: {}}), threads=1)
    assert "".join(sorted(ask(server).body.decode() for _ in range(4))) \
        == "aabb"


def test_every_address_from_the_resolver_is_a_server(wharf, backends, dns):
    if not has_ipv6():
        pytest.skip("no ::1")
    port, a, b = dual_backends(backends)
    dns.zone["both.test"] = ["127.0.0.1", "::1"]
    server = wharf(upstream_conf({"both.test:%d" % port: {"weight": 2}},
                                 resolver=dns.address), threads=1)
    assert "".join(sorted(ask(server).body.decode() for _ in range(4))) \
        == "aabb"


def test_resolver_answer_change_moves_traffic(wharf, backends, dns):
    if not has_ipv6():
        pytest.skip("no ::1")
    port, a, b = dual_backends(backends)
    dns.zone["backend.test"] = ["127.0.0.1"]
    server = wharf(upstream_conf({"backend.test:%d" % port: {}},
                                 resolver=dns.address, resolve_interval=1))
    assert {ask(server).body for _ in range(4)} == {b"a"}
    dns.zone["backend.test"] = ["::1"]
    assert wait_for(lambda: ask(server).body == b"b", scaled(15))
    assert {ask(server).body for _ in range(4)} == {b"b"}


def test_name_that_resolves_later(wharf, backends, dns):
    a = backends(named("a"))
    server = wharf(upstream_conf({"late.test:%d" % a.port: {}},
                                 resolver=dns.address, resolve_interval=1))
    assert ask(server).status == 502       # no address: no server yet
    dns.zone["late.test"] = ["127.0.0.1"]
    assert wait_for(lambda: ask(server).status == 200, scaled(15))
    assert ask(server).body == b"a"


def test_ttl_drives_the_next_lookup(wharf, backends, dns):
    a = backends(named("a"))
    dns.zone["ttl.test"] = ["127.0.0.1"]
    dns.ttl = 1
    server = wharf(upstream_conf({"ttl.test:%d" % a.port: {}},
                                 resolver=dns.address, resolve_interval=300))
    assert ask(server).body == b"a"
    n = dns.queries
    # A 1 s TTL brings the next lookup well before resolve_interval.
    assert wait_for(lambda: dns.queries > n, scaled(10))


@pytest.mark.parametrize("servers,settings", [
    ({"bad_name:80": {}}, {}),
    ({"backend.test": {}}, {}),
    ({"backend.test:0": {}}, {}),
    ({"backend.test:80": {}}, {"resolver": "dns.example:53"}),
    ({"backend.test:80": {}}, {"resolve_interval": 0}),
])
def test_names_refused(wharf, servers, settings):
    server = wharf(routes_config([{"action": {"return": 204}}]))
    r = server.api().put("/config", upstream_conf(servers, server, **settings))
    assert r.status == 400, r.json


def test_proxy_action_name_refused_like_unit(wharf):
    server = wharf(routes_config([{"action": {"return": 204}}]))
    conf = routes_config([{"action": {"proxy": "http://bad_name:80"}}],
                         listener=server.listeners()[0])
    r = server.api().put("/config", conf)
    assert r.status == 400
    assert r.json["detail"] == 'The "proxy" address is invalid "bad_name:80"'
