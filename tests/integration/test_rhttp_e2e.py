"""Reverse HTTP end to end (issue 13): two Wharf instances on loopback.  The
private one dials out ("rhttp@NAME" listeners) and serves routes and a
Python app; the public one attaches the tunnels ("reverse" on a listener)
and sends its clients' requests down them by name ($host)."""

import concurrent.futures
import os
import signal
import time

import pytest
import requests

from lib.certs import make_cert
from lib.wharf import WHARF_BIN, free_port, scaled

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
MODULES = os.path.join(os.path.dirname(WHARF_BIN), "modules") if WHARF_BIN \
    else ""


def public_config(names=("a.test",), extra_listener=None):
    """Clients on {port}; tunnels of names[i] on {port<i+1>} (plain h2,
    "insecure": the name is a constant)."""
    listeners = {"127.0.0.1:{port}": {"pass": "routes"}}
    for i, name in enumerate(names):
        listeners["127.0.0.1:{port%d}" % (i + 1)] = {
            "pass": "routes",
            "reverse": {"upstream": "edge", "name": name, "insecure": True,
                        "max_per_name": 8}}
    listeners.update(extra_listener or {})
    return {"listeners": listeners,
            "upstreams": {"edge": {"reverse": {"select": "$host"}}},
            "routes": [{"action": {"pass": "upstreams/edge"}}]}


def private_config(port, body, connections=2, extra=None, routes=None):
    conf = {"listeners": {
                "127.0.0.1:{port}": {"pass": "routes"},
                "rhttp@edge": {"pass": "routes", "reverse": {
                    "connect": "127.0.0.1:%d" % port,
                    "connections": connections, "h2c": True}}},
            "routes": routes or [
                {"match": {"uri": "/hdr"},
                 "action": {"return": 200, "location": "$host-$scheme"}},
                {"action": {"return": 200, "location": body}}]}
    conf.update(extra or {})
    return conf


def tunnels(server):
    r = server.api().get("/status")
    assert r.status == 200, r
    return r.json["rhttp"]["tunnels"]


def wait_tunnels(server, label, n, timeout=20.0):
    deadline = time.monotonic() + scaled(timeout)
    t = None
    while time.monotonic() < deadline:
        t = tunnels(server).get(label, {}).get("tunnels", 0)
        if t == n:
            return
        time.sleep(0.05)
    raise AssertionError("%s: %r tunnels, wanted %d" % (label, t, n))


def detach(pub, *privs):
    """Stops the private sides, then waits until the public one holds no
    tunnel (the post-test fd check counts them)."""
    for p in privs:
        p.stop()
        p.stopped_by_test = True
    deadline = time.monotonic() + scaled(10)
    while time.monotonic() < deadline:
        if all(v["tunnels"] == 0 for v in tunnels(pub).values()):
            return
        time.sleep(0.05)
    raise AssertionError("tunnels left: %r" % tunnels(pub))


def get(server, host, path="/", **kw):
    return requests.get(server.url(path), headers={"Host": host},
                        allow_redirects=False, timeout=scaled(20), **kw)


def test_tunnel_end_to_end_and_names(wharf):
    pub = wharf(public_config(names=("a.test", "b.test")))
    a = wharf(private_config(pub.ports[1], "from-a"))
    b = wharf(private_config(pub.ports[2], "from-b"))
    wait_tunnels(pub, "edge/a.test", 2)
    wait_tunnels(pub, "edge/b.test", 2)
    for _ in range(10):
        r = get(pub, "a.test")
        assert r.status_code == 200 and r.headers["location"] == "from-a"
        r = get(pub, "b.test")
        assert r.status_code == 200 and r.headers["location"] == "from-b"
    # The private side sees the client's Host; $scheme there follows the
    # tunnel's own transport (h2c here).
    r = get(pub, "a.test", "/hdr")
    assert r.headers["location"] == "a.test-http"
    # A name no tunnel has: 503 at once.
    start = time.monotonic()
    r = get(pub, "c.test")
    assert r.status_code == 503
    assert time.monotonic() - start < scaled(2)
    st = tunnels(pub)
    assert st["edge/a.test"]["tunnels"] == 2
    assert sum(st["edge/a.test"]["threads"]) == 2
    assert a.alive() and b.alive()
    detach(pub, a, b)


def test_tunnel_bounded_per_name(wharf):
    conf = public_config()
    conf["listeners"]["127.0.0.1:{port1}"]["reverse"]["max_per_name"] = 3
    pub = wharf(conf)
    priv = wharf(private_config(pub.ports[1], "x", connections=5))
    wait_tunnels(pub, "edge/a.test", 3)
    time.sleep(1.0)
    assert tunnels(pub)["edge/a.test"]["tunnels"] == 3
    assert "max_per_name" in pub.log_text()
    assert get(pub, "a.test").status_code == 200
    detach(pub, priv)


def test_kill_private_side_mid_load_then_restart(wharf):
    pub = wharf(public_config())
    priv = wharf(private_config(pub.ports[1], "p1", connections=2))
    wait_tunnels(pub, "edge/a.test", 2)

    def one(_):
        try:
            return get(pub, "a.test").status_code
        except requests.RequestException:
            return -1

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(one, i) for i in range(200)]
        time.sleep(0.05)
        priv.proc.send_signal(signal.SIGKILL)
        priv.proc.wait(10)
        priv.stopped_by_test = True
        codes = [f.result() for f in futs]
    assert set(codes) <= {200, 502, 503}, codes
    wait_tunnels(pub, "edge/a.test", 0)
    assert get(pub, "a.test").status_code == 503
    # A new private instance attaches again.
    priv2 = wharf(private_config(pub.ports[1], "p2", connections=2))
    wait_tunnels(pub, "edge/a.test", 2)
    r = get(pub, "a.test")
    assert r.status_code == 200 and r.headers["location"] == "p2"
    detach(pub, priv2)


def test_kill_public_side_then_restart(wharf, tmp_path):
    port = free_port()
    conf = public_config()
    conf["listeners"]["127.0.0.1:%d" % port] = \
        conf["listeners"].pop("127.0.0.1:{port1}")
    pub = wharf(conf)
    priv = wharf(private_config(port, "kept", connections=2))
    wait_tunnels(pub, "edge/a.test", 2)
    pub.proc.send_signal(signal.SIGKILL)
    pub.proc.wait(10)
    pub.stopped_by_test = True
    time.sleep(1.5)                  # the private side backs off meanwhile
    pub2 = wharf(conf)
    wait_tunnels(pub2, "edge/a.test", 2, timeout=30)
    r = get(pub2, "a.test")
    assert r.status_code == 200 and r.headers["location"] == "kept"
    log = priv.log_text()
    assert log.count("rhttp@edge: error") <= 1, log
    detach(pub2, priv)


def test_in_flight_request_on_a_dropped_tunnel_gets_502(wharf):
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    pub = wharf(public_config())
    priv = wharf(private_config(
        pub.ports[1], "x", connections=1,
        routes=[{"action": {"pass": "applications/slow"}}],
        extra={"applications": {"slow": {
            "type": "python 3", "path": APPS + "/wsgi", "module": "slow"}}}),
        extra_args=["--modulesdir", MODULES])
    wait_tunnels(pub, "edge/a.test", 1)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(get, pub, "a.test", "/?5")
        time.sleep(1.0)
        priv.proc.send_signal(signal.SIGKILL)
        priv.proc.wait(10)
        priv.stopped_by_test = True
        r = fut.result()
        assert r.status_code == 502, pub.log_text()[-3000:]
    wait_tunnels(pub, "edge/a.test", 0)


def test_python_app_and_streamed_bodies_through_the_tunnel(wharf):
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    pub = wharf(public_config())
    priv = wharf(private_config(
        pub.ports[1], "x", connections=2,
        routes=[{"match": {"uri": "/asgi/*"},
                 "action": {"pass": "applications/asgi"}},
                {"action": {"pass": "applications/wsgi"}}],
        extra={"applications": {
            "wsgi": {"type": "python 3", "path": APPS + "/wsgi",
                     "module": "body"},
            "asgi": {"type": "python 3", "path": APPS + "/asgi",
                     "module": "stream", "protocol": "asgi"}}}),
        extra_args=["--modulesdir", MODULES])
    wait_tunnels(pub, "edge/a.test", 2)
    body = os.urandom(2 * 1024 * 1024 + 3)
    r = requests.post(pub.url("/size"), data=body, headers={"Host": "a.test"},
                      timeout=scaled(60))
    assert r.status_code == 200, r.text
    assert r.content == b'["%d"]' % len(body)
    r = get(pub, "a.test", "/asgi/x?n=50&size=10000")
    assert r.status_code == 200
    assert len(r.content) == 500000
    detach(pub, priv)


def test_tls_tunnel_named_by_client_certificate(wharf, tmp_path):
    """TLS both ways: the private side presents a client certificate
    whose CN names its tunnels; ALPN h2; the public side verifies it."""
    ca = make_cert(tmp_path, "ca", "Test CA", ca=True)
    srv = make_cert(tmp_path, "srv", "127.0.0.1", sans=("IP:127.0.0.1",),
                    issuer=ca)
    cli = make_cert(tmp_path, "cli", "app.test", issuer=ca,
                    ext=("extendedKeyUsage=clientAuth",))
    tport = free_port()
    pub = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                 "routes": [{"action": {"return": 204}}]})
    api = pub.api()
    assert api.request("PUT", "/certificates/srv", srv.bundle(ca)).status == 200
    assert api.request("PUT", "/certificates/ca", ca.crt_pem()).status == 200
    conf = public_config(names=())
    conf["listeners"]["127.0.0.1:%d" % tport] = {
        "pass": "routes",
        "tls": {"certificate": "srv",
                "client_certificate": {"ca": "ca"}},
        "reverse": {"upstream": "edge"}}
    conf["listeners"]["127.0.0.1:%d" % pub.port] = \
        conf["listeners"].pop("127.0.0.1:{port}")
    r = api.put("/config", conf)
    assert r.status == 200, r
    priv = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                  "routes": [{"action": {"return": 204}}]})
    papi = priv.api()
    assert papi.request("PUT", "/certificates/cli", cli.bundle(ca)).status == 200
    assert papi.request("PUT", "/certificates/ca", ca.crt_pem()).status == 200
    pconf = private_config(tport, "tls-ok")
    pconf["listeners"]["127.0.0.1:%d" % priv.port] = \
        pconf["listeners"].pop("127.0.0.1:{port}")
    pconf["listeners"]["rhttp@edge"]["reverse"] = {
        "connect": "127.0.0.1:%d" % tport, "connections": 2,
        "tls": {"certificate": "cli", "ca": "ca"}}
    r = papi.put("/config", pconf)
    assert r.status == 200, r
    wait_tunnels(pub, "edge/app.test", 2)
    r = get(pub, "app.test")
    assert r.status_code == 200 and r.headers["location"] == "tls-ok"
    detach(pub, priv)
    r = api.put("/config", {"listeners": {"127.0.0.1:%d" % pub.port:
                                          {"pass": "routes"}},
                            "routes": [{"action": {"return": 204}}]})
    assert r.status == 200, r


def test_tls_tunnel_without_client_certificate_is_refused(wharf, tmp_path):
    ca = make_cert(tmp_path, "ca", "Test CA", ca=True)
    srv = make_cert(tmp_path, "srv", "127.0.0.1", sans=("IP:127.0.0.1",),
                    issuer=ca)
    tport = free_port()
    pub = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                 "routes": [{"action": {"return": 204}}]})
    api = pub.api()
    assert api.request("PUT", "/certificates/srv", srv.bundle(ca)).status == 200
    assert api.request("PUT", "/certificates/ca", ca.crt_pem()).status == 200
    conf = public_config(names=())
    conf["listeners"] = {
        "127.0.0.1:%d" % pub.port: {"pass": "routes"},
        "127.0.0.1:%d" % tport: {
            "pass": "routes",
            "tls": {"certificate": "srv",
                    "client_certificate": {"ca": "ca",
                                           "mode": "optional_no_verify"}},
            "reverse": {"upstream": "edge"}}}
    r = api.put("/config", conf)
    assert r.status == 200, r
    priv = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                  "routes": [{"action": {"return": 204}}]})
    papi = priv.api()
    assert papi.request("PUT", "/certificates/ca", ca.crt_pem()).status == 200
    pconf = {"listeners": {
        "127.0.0.1:%d" % priv.port: {"pass": "routes"},
        "rhttp@edge": {"pass": "routes", "reverse": {
            "connect": "127.0.0.1:%d" % tport,
            "tls": {"ca": "ca"}}}},
        "routes": [{"action": {"return": 204}}]}
    r = papi.put("/config", pconf)
    assert r.status == 200, r
    time.sleep(2.0)
    assert tunnels(pub) == {}
    assert "no verified client certificate" in pub.log_text()
    detach(pub, priv)
    r = api.put("/config", {"listeners": {"127.0.0.1:%d" % pub.port:
                                          {"pass": "routes"}},
                            "routes": [{"action": {"return": 204}}]})
    assert r.status == 200, r


def test_attach_needs_client_certificates_unless_insecure(wharf):
    pub = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                 "routes": [{"action": {"return": 204}}]})
    conf = public_config()
    conf["listeners"] = {"127.0.0.1:%d" % pub.port: {
        "pass": "routes", "reverse": {"upstream": "edge"}}}
    r = pub.api().put("/config", conf)
    assert r.status == 400, r
    assert "client_certificate" in r.json["detail"]
    conf["listeners"]["127.0.0.1:%d" % pub.port]["reverse"]["upstream"] = "x"
    r = pub.api().put("/config", conf)
    assert r.status == 400, r
