"""Start-up configuration: lenient JSON, rejected configs, listeners,
routes (matching and pass), return actions, logs and the pid file."""

import re
import socket

import pytest
import requests

from lib.configs import routes_config
from lib.rawhttp import exchange, request
from lib.wharf import process_tree, refuse_config

LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+ ")


def get(server, path, **kw):
    return requests.get(server.url(path), timeout=10, allow_redirects=False,
                        **kw)


def reject(tmp_path, config):
    """Run wharf on a config that must be refused; return its log."""
    log = refuse_config(tmp_path, config)
    assert "[error]" in log or "[alert]" in log or "[crit]" in log or \
        "error" in log.lower(), log
    return log


# -- lenient JSON ------------------------------------------------------------------

LENIENT = """\ufeff{
    // a line comment
    "listeners": {
        "127.0.0.1:{port}": { "pass": "routes", },  /* block comment */
    },
    "routes": [
        { "action": { "return": 204 }, },
    ],
}
"""


def test_lenient_json_comments_trailing_commas_bom(wharf):
    server = wharf(LENIENT)
    assert get(server, "/").status_code == 204


def test_duplicate_keys_rejected(tmp_path):
    text = ('{"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},'
            ' "routes": [{"action": {"return": 200, "return": 204}}]}')
    log = reject(tmp_path, text)
    assert "return" in log or "duplicate" in log.lower()


def test_json_syntax_error_reports_line_and_column(tmp_path):
    text = '{\n  "listeners": {\n    "127.0.0.1:{port}" { "pass": "routes" }\n  }\n}\n'
    log = reject(tmp_path, text)
    low = log.lower()
    assert "line" in low and "column" in low, log
    assert re.search(r"line\D{0,5}3\b", low), log


def test_truncated_json_rejected(tmp_path):
    reject(tmp_path, '{"listeners": {"127.0.0.1:{port}": {"pass": "rou')


def test_empty_config_file_rejected(tmp_path):
    reject(tmp_path, "")


# -- semantic validation ------------------------------------------------------------

INVALID = {
    "pass_to_missing_route": {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/nope"}},
        "routes": {"main": [{"action": {"return": 200}}]}},
    "unknown_top_level_key": {
        "listeners": {}, "routes": [], "bogus": 1},
    "unknown_action_key": {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [{"action": {"return": 200, "bogus": 1}}]},
    "return_status_out_of_range": {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [{"action": {"return": 1000}}]},
    "action_without_target": {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [{"action": {}}]},
    "two_action_targets": {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [{"action": {"return": 200, "share": "/tmp$uri"}}]},
    "bad_listener_address": {
        "listeners": {"not-an-address": {"pass": "routes"}},
        "routes": []},
    "timeout_wrong_type": {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [{"action": {"return": 200}}],
        "settings": {"http": {"idle_timeout": "soon"}}},
    "match_not_object": {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [{"match": "x", "action": {"return": 200}}]},
    "top_level_array": [1, 2],
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_rejected(tmp_path, name):
    reject(tmp_path, INVALID[name])


# -- features not in this release ----------------------------------------------------

ROUTE_OK = {"action": {"return": 200}}

UNSUPPORTED = {
    "isolation": {"applications": {"app": {
        "type": "python", "path": "/tmp", "module": "wsgi",
        "isolation": {"namespaces": {"credential": True}}}}},
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_feature_rejected(tmp_path, name):
    conf = {"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
            "routes": [ROUTE_OK]}
    conf.update(UNSUPPORTED[name])
    log = reject(tmp_path, conf)
    assert "not supported yet" in log, log


def test_tls_with_a_certificate_not_in_the_store_rejected(tmp_path):
    """--config is checked against STATEDIR/certs (empty here)."""
    conf = {"listeners": {"127.0.0.1:{port}": {
                "pass": "routes", "tls": {"certificate": "bundle"}}},
            "routes": [ROUTE_OK]}
    log = reject(tmp_path, conf)
    assert 'Certificate "bundle" is not found.' in log, log


# -- logs and pid file -----------------------------------------------------------------

def test_log_format_and_started_line(wharf):
    server = wharf(routes_config([ROUTE_OK]))
    m = server.wait_log(r"(?m)^.*started.*$", timeout=5)
    assert m, server.log_text()
    lines = [l for l in server.log_text().splitlines() if "started" in l]
    assert LOG_LINE.match(lines[0]), lines[0]
    pid_in_line = int(re.search(r"\] (\d+)#", lines[0]).group(1))
    assert pid_in_line in process_tree(server.pid)


def test_pid_file_written(wharf):
    server = wharf(routes_config([ROUTE_OK]))
    with open(server.pid_path) as f:
        assert int(f.read().strip()) == server.pid


def test_sigterm_stops_server(wharf):
    server = wharf(routes_config([ROUTE_OK]))
    server.stopped_by_test = True
    rc = server.stop()
    assert rc == 0 or rc == -15, server.log_text()
    assert not server.bad_log_lines(), server.log_text()


# -- listeners ------------------------------------------------------------------------

def test_two_listeners_two_routes(wharf):
    server = wharf({
        "listeners": {"127.0.0.1:{port0}": {"pass": "routes/a"},
                      "127.0.0.1:{port1}": {"pass": "routes/b"}},
        "routes": {"a": [{"action": {"return": 201}}],
                   "b": [{"action": {"return": 202}}]}})
    assert requests.get(server.url("/", 0), timeout=10).status_code == 201
    assert requests.get(server.url("/", 1), timeout=10).status_code == 202


def test_wildcard_listener(wharf):
    server = wharf({"listeners": {"*:{port}": {"pass": "routes"}},
                    "routes": [{"action": {"return": 204}}]})
    assert requests.get("http://127.0.0.1:%d/" % server.port,
                        timeout=10).status_code == 204


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_listener(wharf):
    server = wharf({"listeners": {"[::1]:{port}": {"pass": "routes"}},
                    "routes": [{"action": {"return": 204}}]})
    r = requests.get("http://[::1]:%d/" % server.port, timeout=10)
    assert r.status_code == 204


def test_unix_listener(wharf, tmp_path):
    path = str(tmp_path / "wharf.sock")
    wharf({"listeners": {"unix:" + path: {"pass": "routes"}},
           "routes": [{"action": {"return": 204}}]})
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        resp = exchange(s, request())
    assert resp.status == 204


# -- routes and matching ---------------------------------------------------------------

@pytest.fixture
def routed(wharf):
    return wharf(routes_config([
        {"match": {"uri": "/exact"}, "action": {"return": 201}},
        {"match": {"uri": "/pre*"}, "action": {"return": 202}},
        {"match": {"uri": "*.jpg"}, "action": {"return": 203}},
        {"match": {"uri": "/mid*dle/*"}, "action": {"return": 205}},
        {"match": {"uri": ["/one", "/two"]}, "action": {"return": 206}},
        {"match": {"uri": ["/neg/*", "!/neg/skip*"]},
         "action": {"return": 207}},
        {"match": {"host": "example.com"}, "action": {"return": 208}},
        {"match": {"host": "*.wild.org"}, "action": {"return": 209}},
        {"match": {"method": "DELETE"}, "action": {"return": 210}},
        {"match": {"method": ["PUT", "PATCH"], "uri": "/both"},
         "action": {"return": 211}},
        {"match": {"uri": "!/fallthrough*"}, "action": {"return": 212}},
    ]))


@pytest.mark.parametrize("method,path,host,status", [
    ("GET", "/exact", None, 201),
    ("GET", "/exactly", None, 212),         # exact means exact
    ("GET", "/prefix/and/more", None, 202),
    ("GET", "/img/cat.jpg", None, 203),
    ("GET", "/middle/x", None, 205),
    ("GET", "/mid-and-dle/x", None, 205),
    ("GET", "/one", None, 206),
    ("GET", "/two", None, 206),
    ("GET", "/neg/ok", None, 207),
    ("GET", "/neg/skipped", None, 212),     # negated pattern excluded
    ("GET", "/fallthrough", "example.com", 208),
    ("GET", "/fallthrough", "EXAMPLE.com", 208),   # hosts are case-insensitive
    ("GET", "/fallthrough", "example.com:8080", 208),  # port is ignored
    ("GET", "/fallthrough", "a.wild.org", 209),
    ("DELETE", "/fallthrough", None, 210),
    ("PUT", "/both", None, 211),
    ("PATCH", "/both", None, 211),
    ("POST", "/both", None, 212),
    ("GET", "/fallthrough-x", None, 404),  # nothing matches
])
def test_route_matching(routed, method, path, host, status):
    with routed.connect() as s:
        resp = exchange(s, request(method=method, path=path,
                                   host=host or "localhost"))
    assert resp.status == status, (method, path, host)


def test_uri_match_uses_decoded_path(routed):
    with routed.connect() as s:
        resp = exchange(s, request(path="/ex%61ct"))
    assert resp.status == 201


def test_match_uri_case_sensitive(routed):
    with routed.connect() as s:
        resp = exchange(s, request(path="/EXACT"))
    assert resp.status == 212


def test_named_routes_and_pass(wharf):
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/main"}},
        "routes": {
            "main": [{"match": {"uri": "/api/*"}, "action": {"pass": "routes/api"}},
                     {"action": {"return": 200}}],
            "api": [{"match": {"method": "POST"}, "action": {"return": 201}},
                    {"action": {"return": 202}}]}})
    assert requests.get(server.url("/x"), timeout=10).status_code == 200
    assert requests.get(server.url("/api/y"), timeout=10).status_code == 202
    assert requests.post(server.url("/api/y"), timeout=10).status_code == 201


def test_return_with_location(wharf):
    server = wharf(routes_config([
        {"match": {"uri": "/old"}, "action": {
            "return": 301, "location": "https://example.com/new"}},
        {"match": {"uri": "/rel"}, "action": {
            "return": 302, "location": "/elsewhere"}}]))
    r = requests.get(server.url("/old"), timeout=10, allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"] == "https://example.com/new"
    r = requests.get(server.url("/rel"), timeout=10, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/elsewhere"


def test_return_error_status_has_error_page(wharf):
    server = wharf(routes_config([{"action": {"return": 403}}]))
    r = requests.get(server.url("/"), timeout=10)
    assert r.status_code == 403
    assert r.content == b"<!DOCTYPE html><title>Error 403</title><p>Error 403.\r\n"


def test_no_routes_404(wharf):
    server = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
                    "routes": []})
    assert requests.get(server.url("/"), timeout=10).status_code == 404
