"""Metrics: /status gains "upstreams" (per upstream and per server:
requests, failures, active and idle connections, queue length, health),
counters stay monotonic across reconfigurations, and all of /status is
Prometheus text on the control socket (GET /status?format=prometheus) and
through the "metrics" route action, which the real Debian prometheus
server scrapes."""

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from lib.configs import LISTEN, routes_config
from lib.proxy_backends import RawBackend, response, wait_for
from lib.rawhttp import exchange, request
from lib.wharf import free_port, scaled


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


def conf_with(servers, server=None, metrics=True, **settings):
    listener = server.listeners()[0] if server is not None else LISTEN
    routes = [{"action": {"pass": "upstreams/u"}}]
    if metrics:
        routes.insert(0, {"match": {"uri": "/metrics"},
                          "action": {"metrics": "prometheus"}})
    conf = routes_config(routes, listener=listener)
    conf["upstreams"] = {"u": {"servers": servers, "settings": settings}}
    return conf


def ups(server):
    return server.api().get("/status/upstreams").json


def broken(req, sock):
    return b"NOT HTTP\r\n\r\n"


def test_status_upstream_counters(wharf, backends):
    a = backends(lambda req, sock: response(200, b"a"))
    b = backends(broken)
    server = wharf(conf_with({a.address: {}, b.address: {}}), threads=1)
    assert [ask(server).status for _ in range(4)] == [200, 502, 200, 502]
    u = ups(server)["u"]
    assert (u["requests"], u["failures"]) == (4, 2)
    assert u["servers"][a.address]["requests"] == 2
    assert u["servers"][a.address]["failures"] == 0
    assert u["servers"][b.address]["failures"] == 2
    assert u["servers"][b.address]["health"] == "up"
    assert u["servers"][a.address]["active"] == 0
    assert u["queue"] == 0


def test_status_active_idle_queue_and_health(wharf, backends):
    gate = threading.Event()

    def held(req, sock):
        if req.target == "/slow":
            gate.wait(30)
        return response(200, b"g")
    g = backends(held, keep_alive=True)
    server = wharf(conf_with({g.address: {"max_conns": 1}}, queue=4,
                             queue_timeout=30, idle_connections=4))
    done = []
    threads = [threading.Thread(target=lambda: done.append(
        ask(server, "/slow").status)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: ups(server)["u"]["queue"] == 2, scaled(10))
        s = ups(server)["u"]
        assert s["servers"][g.address]["active"] == 1
        assert s["queued"] == 2
    finally:
        gate.set()
    for t in threads:
        t.join(30)
    assert done == [200] * 3
    s = ups(server)["u"]
    assert s["queue"] == 0 and s["servers"][g.address]["active"] == 0
    assert s["servers"][g.address]["idle"] >= 1   # kept alive, pooled


def test_status_health_down(wharf, backends):
    b = backends(broken)
    server = wharf(conf_with({b.address: {}}, max_fails=1, fail_timeout=30))
    assert ask(server).status == 502
    assert ask(server).status == 503
    s = ups(server)["u"]
    assert s["servers"][b.address]["health"] == "down"
    assert s["rejected"] == 1


def test_counters_monotonic_across_reconfigurations(wharf, backends):
    a = backends(lambda req, sock: response(200, b"a"))
    servers = {a.address: {}}
    server = wharf(conf_with(servers))
    for _ in range(3):
        ask(server)
    api = server.api()
    r = api.put("/config", conf_with(servers, server, idle_connections=1))
    assert r.status == 200, r.json
    ask(server)
    assert ups(server)["u"]["requests"] == 4
    assert ups(server)["u"]["servers"][a.address]["requests"] == 4
    # Gone from the config: gone from /status; back: the same counters.
    conf = routes_config([{"action": {"return": 204}}],
                         listener=server.listeners()[0])
    assert api.put("/config", conf).status == 200
    assert ups(server) == {}
    assert api.put("/config", conf_with(servers, server)).status == 200
    ask(server)
    assert ups(server)["u"]["requests"] == 5


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_exposition(text):
    """{name: type}, [(name, labels, value)]; fails on a malformed line."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert name not in types, "two TYPE lines for " + name
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        assert m, "bad line %r" % line
        name = m.group(1)
        assert name in types, "no TYPE for " + name
        float(m.group(3))
        samples.append((name, m.group(2) or "", float(m.group(3))))
    return types, samples


def test_prometheus_text_on_the_control_socket(wharf, backends):
    a = backends(lambda req, sock: response(200, b"a"))
    server = wharf(conf_with({a.address: {}}))
    ask(server)
    r = server.api().get("/status?format=prometheus")
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    types, samples = parse_exposition(r.body.decode())
    for name, typ in types.items():
        assert name.startswith("wharf_")
        assert (typ == "counter") == name.endswith("_total"), name
    values = {(n, l): v for n, l, v in samples}
    label = '{upstream="u",server="%s"}' % a.address
    assert values[("wharf_upstream_server_requests_total", label)] == 1
    assert values[("wharf_upstream_requests_total", '{upstream="u"}')] == 1
    assert values[("wharf_upstream_server_up", label)] == 1
    assert values[("wharf_requests_total", "")] >= 1
    # Without the query: Unit's JSON.
    assert server.api().get("/status").json["upstreams"]["u"]["requests"] == 1


def test_metrics_route_action_behind_match(wharf, backends):
    a = backends(lambda req, sock: response(200, b"a"))
    server = wharf(conf_with({a.address: {}}))
    r = ask(server, "/metrics")
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    types, samples = parse_exposition(r.body.decode())
    assert "wharf_connections_accepted_total" in types
    # Other paths go to the upstream, not to the metrics.
    assert ask(server, "/other").body == b"a"


def test_metrics_action_refused_values(wharf):
    server = wharf(routes_config([{"action": {"return": 204}}]))
    conf = routes_config([{"action": {"metrics": "json"}}],
                         listener=server.listeners()[0])
    r = server.api().put("/config", conf)
    assert r.status == 400
    assert r.json["detail"] == 'The "metrics" value must be "prometheus".'


PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def prom_query(port, q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (
        port, urllib.parse.urlencode({"query": q}))
    with urllib.request.urlopen(url, timeout=5) as f:
        return json.load(f)["data"]["result"]


@pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                    reason="Debian's prometheus is not installed")
def test_real_prometheus_scrapes_the_route(wharf, backends, tmp_path):
    a = backends(lambda req, sock: response(200, b"a"))
    server = wharf(conf_with({a.address: {}}))
    for _ in range(3):
        ask(server)
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: wharf\n    metrics_path: /metrics\n"
        "    static_configs:\n      - targets: ['%s']\n"
        % server.listeners()[0])
    proc = subprocess.Popen(
        [PROMETHEUS, "--config.file=%s" % cfg,
         "--storage.tsdb.path=%s" % (tmp_path / "data"),
         "--web.listen-address=127.0.0.1:%d" % port,
         "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prom.log", "wb"))
    try:
        deadline = time.monotonic() + 35

        def scraped():
            try:
                up = prom_query(port, 'up{job="wharf"}')
                req = prom_query(port, 'wharf_upstream_requests_total'
                                       '{upstream="u"}')
            except OSError:
                return False
            return (up and up[0]["value"][1] == "1" and req
                    and float(req[0]["value"][1]) >= 3)
        while time.monotonic() < deadline and not scraped():
            time.sleep(0.5)
        assert scraped(), (tmp_path / "prom.log").read_text()[-2000:]
        srv = prom_query(port, 'wharf_upstream_server_up')
        assert srv[0]["metric"]["server"] == a.address
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_status_shows_a_proxy_action_by_its_url(wharf, backends):
    """A "proxy": "http://..." action's own upstream is in /status's
    "upstreams" under its "proxy" string, in the same shape as a named
    one; two actions with the same URL are one entry; a named upstream
    of the same name keeps its own figures; the Prometheus text has it
    as an upstream label."""
    a = backends(lambda req, sock: response(200, b"a"))
    b = backends(broken)
    url_a, url_b = a.url, b.url
    routes = [{"match": {"uri": "/b"}, "action": {"proxy": url_b}},
              {"match": {"uri": "/a2"}, "action": {
                  "proxy": url_a, "proxy_settings": {"idle_connections": 2}}},
              {"action": {"proxy": url_a}}]
    server = wharf(routes_config(routes), threads=1)
    assert [ask(server, p).status for p in ("/", "/a2", "/b")] \
        == [200, 200, 502]
    u = ups(server)
    assert set(u) == {url_a, url_b}
    assert (u[url_a]["requests"], u[url_a]["failures"]) == (2, 0)
    assert set(u[url_a]) == {"requests", "failures", "queued", "rejected",
                             "queue", "servers"}
    assert u[url_a]["servers"][a.address]["requests"] == 2
    assert u[url_a]["servers"][a.address]["health"] == "up"
    assert (u[url_b]["requests"], u[url_b]["failures"]) == (1, 1)
    assert u[url_b]["servers"][b.address]["failures"] == 1
    types, samples = parse_exposition(
        server.api().get("/status?format=prometheus").body.decode())
    values = {(n, l): v for n, l, v in samples}
    assert values[("wharf_upstream_requests_total",
                   '{upstream="%s"}' % url_a)] == 2
    assert values[("wharf_upstream_server_failures_total",
                   '{upstream="%s",server="%s"}' % (url_b, b.address))] == 1
    # A named upstream called like the URL (no "pass" can name it, but
    # it may exist): its own figures win the key, the action's are kept
    # apart, not added to it.
    conf = routes_config([{"action": {"proxy": url_a}}],
                         listener=server.listeners()[0])
    conf["upstreams"] = {url_a: {"servers": {a.address: {}}}}
    r = server.api().put("/config", conf)
    assert r.status == 200, r.json
    assert ask(server).status == 200
    assert ups(server)[url_a]["requests"] == 0
    # Counters by URL survive a reconfiguration, as a named one's.
    conf = routes_config([{"action": {"proxy": url_a}}],
                         listener=server.listeners()[0])
    assert server.api().put("/config", conf).status == 200
    ask(server)
    assert ups(server)[url_a]["requests"] == 4   # 2 + 1 beside it + 1
