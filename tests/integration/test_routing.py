"""Routing through the real server: every match key (host, uri, method,
headers, arguments, cookies, query, scheme, source, destination, if), the
pattern forms (exact, wildcards, negation, arrays, objects, regex), the
examples of Unit's "Routes" docs, variables in share paths and return
locations, and Unit's refusal of an unknown variable.

Each route step returns a distinct status, so the status of a response says
which step matched."""

import os
import shutil
import socket
import tempfile

import pytest

from lib.configs import routes_config
from lib.rawhttp import exchange, request
from lib.wharf import WHARF_BIN, refuse_config


def ask(server, path="/", method="GET", host="localhost", headers=(),
        port_index=0):
    """One request over a fresh connection; returns the raw Response."""
    with server.connect(port_index=port_index) as s:
        return exchange(s, request(method=method, path=path, host=host,
                                   headers=list(headers)
                                   + [("Connection", "close")]))


def ask_unix(path, target="/", headers=()):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        return exchange(s, request(path=target, headers=list(headers)
                                   + [("Connection", "close")]))


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def sockdir():
    """A short directory for unix sockets (sun_path is 108 bytes)."""
    d = tempfile.mkdtemp(prefix="wfr", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def step(match, status):
    return {"match": match, "action": {"return": status}}


# -- one server, many conditions ----------------------------------------------

MATCH_ROUTES = [
    # host: exact, wildcard, negation in an array, case-insensitive
    step({"uri": "/h", "host": "exact.test"}, 201),
    step({"uri": "/h", "host": ["*.example.com", "!www.example.com"]}, 202),
    step({"uri": "/h", "host": "~^r[0-9]+\\.regex\\.test$"}, 203),
    # uri: exact, prefix, suffix, infix, several wildcards, regex
    step({"uri": "/u/exact"}, 210),
    step({"uri": "/u/pre*"}, 211),
    step({"uri": "*.suffix"}, 212),
    step({"uri": "/u/in*fix"}, 213),
    step({"uri": "/u/data/*/*.jpg"}, 214),
    step({"uri": "~^/u/re/[0-9]{3}$"}, 215),
    step({"uri": ["/u/arr/*", "!/u/arr/no*"]}, 216),
    step({"uri": ["!/u/*", "!/h", "!/m", "!/hd*", "!/a*", "!/c*",
                  "!/q*", "!/s*", "!/if*", "!/all*"]}, 217),
    # method
    step({"uri": "/m", "method": "DELETE"}, 220),
    step({"uri": "/m", "method": ["PUT", "PATCH"]}, 221),
    step({"uri": "/m", "method": "!GET"}, 222),
    # headers: object (AND), array of objects (OR), value arrays, wildcards
    step({"uri": "/hd", "headers": {"X-A": "b*"}}, 230),
    step({"uri": "/hd", "headers": [
        {"Accept-Encoding": "*gzip*", "User-Agent": "Mozilla/5.0*"},
        {"User-Agent": "curl*"}]}, 231),
    step({"uri": "/hd", "headers": {"X-List": ["one", "two"]}}, 232),
    step({"uri": "/hd", "headers": {"X-Neg": "!bad*"}}, 233),
    step({"uri": "/hd2", "headers": {"x-lower": "*MiD*"}}, 234),
    # arguments (decoded, case-sensitive), the docs' examples
    step({"uri": "/a", "arguments": {"mode": "strict", "access": "!full"}},
         240),
    step({"uri": "/a", "arguments": [{"sharing": "true", "access": "public"},
                                     {"sharing": "false"}]}, 241),
    step({"uri": "/a", "arguments": {"sp": "a b"}}, 242),
    step({"uri": "/a", "arguments": {"w": "x*z"}}, 243),
    # cookies
    step({"uri": "/c", "cookies": {"user_role": "admin"}}, 250),
    step({"uri": "/c", "cookies": [{"session": "active", "r": "u*"},
                                   {"lang": "!en"}]}, 251),
    # query: the whole query string
    step({"uri": "/q", "query": "a=1&b=2"}, 260),
    step({"uri": "/q", "query": "*utm_source=*"}, 261),
    step({"uri": "/q", "query": ""}, 262),
    # scheme: a plain listener is http
    step({"uri": "/s", "scheme": "https"}, 270),
    step({"uri": "/s", "scheme": "http"}, 271),
    # if
    step({"uri": "/if", "if": "$arg_on"}, 280),
    step({"uri": "/if", "if": "!$cookie_off"}, 281),
    # several keys: all must match (the docs' compound example)
    step({"uri": "/all/*", "host": ["*.example.org", "!emea.*"],
          "method": ["POST", "PUT"], "headers": {"X-K": "v"}}, 290),
]


@pytest.fixture(scope="module")
def matched_server(tmp_path_factory):
    """Module-scoped server (the `wharf` fixture is per-test), stopped here."""
    from lib.wharf import Wharf
    if not WHARF_BIN or not os.access(WHARF_BIN, os.X_OK):
        pytest.skip("WHARF_BIN is not an executable")
    server = Wharf(tmp_path_factory.mktemp("routing"),
                   routes_config(MATCH_ROUTES))
    server.start()
    yield server
    server.stop()


CASES = [
    # host
    ("host exact", dict(path="/h", host="exact.test"), 201),
    ("host exact, case-insensitive", dict(path="/h", host="EXACT.Test"), 201),
    ("host exact, port ignored", dict(path="/h", host="exact.test:81"), 201),
    ("host exact, trailing dot", dict(path="/h", host="exact.test."), 201),
    ("host wildcard", dict(path="/h", host="api.example.com"), 202),
    ("host wildcard, negated one", dict(path="/h", host="www.example.com"),
     404),
    ("host bare domain not *.", dict(path="/h", host="example.com"), 404),
    ("host regex", dict(path="/h", host="r42.regex.test"), 203),
    ("host regex no match", dict(path="/h", host="rx.regex.test"), 404),
    # uri
    ("uri exact", dict(path="/u/exact"), 210),
    ("uri exact is exact", dict(path="/u/exactly"), 404),
    ("uri prefix", dict(path="/u/prefix/deep"), 211),
    ("uri suffix", dict(path="/u/x.suffix"), 212),
    ("uri infix", dict(path="/u/in-the-middle-fix"), 213),
    ("uri infix empty middle", dict(path="/u/infix"), 213),
    ("uri two wildcards", dict(path="/u/data/2024/cat.jpg"), 214),
    ("uri two wildcards, wrong end", dict(path="/u/data/2024/cat.png"), 404),
    ("uri regex", dict(path="/u/re/123"), 215),
    ("uri regex no match", dict(path="/u/re/1234"), 404),
    ("uri regex on decoded path", dict(path="/u/re/%31%32%33"), 215),
    ("uri array", dict(path="/u/arr/yes"), 216),
    ("uri array, negated", dict(path="/u/arr/nope"), 404),
    ("uri only negations, none matches", dict(path="/zzz"), 217),
    ("uri only negations, one matches", dict(path="/u/unmatched"), 404),
    # method
    ("method exact", dict(path="/m", method="DELETE"), 220),
    ("method array", dict(path="/m", method="PATCH"), 221),
    ("method negated", dict(path="/m", method="POST"), 222),
    ("method negated, excluded", dict(path="/m", method="GET"), 404),
    # headers
    ("header wildcard", dict(path="/hd", headers=[("X-A", "bee")]), 230),
    ("header name case", dict(path="/hd", headers=[("x-a", "bee")]), 230),
    ("header value case", dict(path="/hd", headers=[("X-A", "BEE")]), 230),
    ("header no match", dict(path="/hd", headers=[("X-A", "abee")]), 404),
    ("headers object: all", dict(path="/hd", headers=[
        ("Accept-Encoding", "deflate, gzip"),
        ("User-Agent", "Mozilla/5.0 (X11)")]), 231),
    ("headers object: one missing", dict(path="/hd", headers=[
        ("User-Agent", "Mozilla/5.0 (X11)")]), 404),
    ("headers array: second object", dict(path="/hd", headers=[
        ("User-Agent", "curl/8.0")]), 231),
    ("header value array", dict(path="/hd", headers=[("X-List", "two")]),
     232),
    ("header value array, none", dict(path="/hd", headers=[
        ("X-List", "three")]), 404),
    ("header negated", dict(path="/hd", headers=[("X-Neg", "good")]), 233),
    ("header negated, excluded", dict(path="/hd", headers=[
        ("X-Neg", "badly")]), 404),
    ("header negated, absent header", dict(path="/hd"), 404),
    ("header lower-case name, substring", dict(path="/hd2", headers=[
        ("X-Lower", "a-mid-b")]), 234),
    # arguments
    ("args docs example", dict(path="/a?mode=strict&access=partial"), 240),
    ("args docs example, negated", dict(path="/a?mode=strict&access=full"),
     404),
    ("args docs example, missing", dict(path="/a?access=partial"), 404),
    ("args negated, argument absent", dict(path="/a?mode=strict"), 404),
    ("args decoded name and value", dict(path="/a?m%6Fde=str%69ct&access=x"),
     240),
    ("args array, first", dict(path="/a?sharing=true&access=public"), 241),
    ("args array, second", dict(path="/a?sharing=false"), 241),
    ("args array, none", dict(path="/a?sharing=true&access=private"), 404),
    ("args plus is space", dict(path="/a?sp=a+b"), 242),
    ("args %20 is space", dict(path="/a?sp=a%20b"), 242),
    ("args wildcard", dict(path="/a?w=xyyz"), 243),
    ("args case-sensitive", dict(path="/a?W=xyz"), 404),
    # cookies
    ("cookie", dict(path="/c", headers=[("Cookie", "a=1; user_role=admin")]),
     250),
    ("cookie value mismatch", dict(path="/c", headers=[
        ("Cookie", "user_role=user")]), 404),
    ("cookie array, first", dict(path="/c", headers=[
        ("Cookie", "session=active; r=user")]), 251),
    ("cookie array, second", dict(path="/c", headers=[
        ("Cookie", "lang=de")]), 251),
    ("cookie array, negated", dict(path="/c", headers=[
        ("Cookie", "lang=en")]), 404),
    ("cookies in two fields", dict(path="/c", headers=[
        ("Cookie", "x=1"), ("Cookie", "user_role=admin")]), 250),
    # query
    ("query exact", dict(path="/q?a=1&b=2"), 260),
    ("query wildcard", dict(path="/q?x=1&utm_source=news"), 261),
    ("query empty", dict(path="/q"), 262),
    ("query other", dict(path="/q?z=9"), 404),
    # scheme
    ("scheme http", dict(path="/s"), 271),
    # if
    ("if true", dict(path="/if?on=1"), 280),
    ("if false: empty -> next step", dict(path="/if?on="), 281),
    ("if false: 0", dict(path="/if?on=0"), 281),
    ("if negated, cookie set", dict(path="/if", headers=[
        ("Cookie", "off=yes")]), 404),
    # compound
    ("compound all", dict(path="/all/x", method="POST",
                          host="api.example.org", headers=[("X-K", "v")]),
     290),
    ("compound negated host", dict(path="/all/x", method="POST",
                                   host="emea.example.org",
                                   headers=[("X-K", "v")]), 404),
    ("compound wrong method", dict(path="/all/x", host="api.example.org",
                                   headers=[("X-K", "v")]), 404),
    ("compound missing header", dict(path="/all/x", method="PUT",
                                     host="api.example.org"), 404),
]


@pytest.mark.parametrize("name,req,status", CASES, ids=[c[0] for c in CASES])
def test_match(matched_server, name, req, status):
    resp = ask(matched_server, **req)
    assert resp.status == status, (name, req, resp)


def test_match_server_healthy_after_all_cases(matched_server):
    assert matched_server.alive()
    assert matched_server.bad_log_lines() == []


# -- steps are tried in order; the first match wins ---------------------------

def test_first_matching_step_wins(wharf):
    server = wharf(routes_config([
        step({"uri": "/x*"}, 201),
        step({"uri": "/xy"}, 202),
        {"action": {"return": 203}},
    ]))
    assert ask(server, "/xy").status == 201
    assert ask(server, "/other").status == 203


def test_empty_match_object_matches_everything(wharf):
    server = wharf(routes_config([{"match": {}, "action": {"return": 208}}]))
    assert ask(server, "/anything", method="PUT").status == 208


# -- source and destination ---------------------------------------------------

def test_source_and_destination_tcp(wharf):
    server = wharf({
        "listeners": {"127.0.0.1:{port0}": {"pass": "routes"},
                      "127.0.0.1:{port1}": {"pass": "routes"}},
        "routes": [
            step({"uri": "/src", "source": "127.0.0.0/8"}, 201),
            step({"uri": "/src2", "source": "!127.0.0.1"}, 202),
            step({"uri": "/src2", "source": "127.0.0.1-127.0.0.3"}, 203),
            step({"uri": "/src3", "source": "127.0.0.1:1-2"}, 204),
            step({"uri": "/src3", "source": "127.0.0.1:1024-65535"}, 205),
            step({"uri": "/src4", "source": ["10.0.0.0/8", "192.168.0.0/16"]},
                 206),
            step({"uri": "/src5", "source": "unix"}, 207),
            step({"uri": "/dst", "destination": "127.0.0.1:{port1}"}, 210),
            step({"uri": "/dst", "destination": "*:{port0}"}, 211),
            step({"uri": "/dst2", "destination": ["!127.0.0.1:{port0}"]}, 212),
            {"action": {"return": 299}},
        ]})
    assert ask(server, "/src").status == 201
    assert ask(server, "/src2").status == 203
    assert ask(server, "/src3").status == 205
    assert ask(server, "/src4").status == 299
    assert ask(server, "/src5").status == 299
    assert ask(server, "/dst", port_index=1).status == 210
    assert ask(server, "/dst", port_index=0).status == 211
    assert ask(server, "/dst2", port_index=0).status == 299
    assert ask(server, "/dst2", port_index=1).status == 212


def test_source_from_second_loopback_address(wharf):
    """The client binds 127.0.0.2: CIDR and range patterns see it."""
    server = wharf(routes_config([
        step({"source": "127.0.0.2"}, 201),
        step({"source": "127.0.0.0/31"}, 202),
        {"action": {"return": 299}},
    ], listener="*:{port}"))
    for addr, status in (("127.0.0.2", 201), ("127.0.0.1", 202),
                         ("127.0.0.3", 299)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                      source_address=(addr, 0)) as s:
            resp = exchange(s, request(headers=[("Connection", "close")]))
        assert resp.status == status, addr


def test_source_and_destination_unix(wharf, sockdir):
    path = os.path.join(sockdir, "r.sock")
    server = wharf({
        "listeners": {"unix:" + path: {"pass": "routes"},
                      "127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [
            step({"uri": "/src", "source": "unix"}, 201),
            step({"uri": "/src", "source": "127.0.0.0/8"}, 202),
            step({"uri": "/dst", "destination": "unix"}, 203),
            step({"uri": "/dst", "destination": "127.0.0.1"}, 204),
            step({"uri": "/neg", "source": "!127.0.0.0/8"}, 205),
            {"action": {"return": 299}},
        ]})
    assert ask_unix(path, "/src").status == 201
    assert ask(server, "/src").status == 202
    assert ask_unix(path, "/dst").status == 203
    assert ask(server, "/dst").status == 204
    assert ask(server, "/neg").status == 299


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_source_and_destination_ipv6(wharf):
    server = wharf({
        "listeners": {"[::1]:{port}": {"pass": "routes"}},
        "routes": [
            step({"uri": "/src", "source": "127.0.0.0/8"}, 201),
            step({"uri": "/src", "source": "::1"}, 202),
            step({"uri": "/cidr", "source": "::/0"}, 203),
            step({"uri": "/neg", "source": "!::1"}, 204),
            step({"uri": "/dst", "destination": "[::1]:{port}"}, 205),
            {"action": {"return": 299}},
        ]})

    def ask6(path):
        with socket.create_connection(("::1", server.port), timeout=10) as s:
            return exchange(s, request(path=path,
                                       headers=[("Connection", "close")]))

    assert ask6("/src").status == 202
    assert ask6("/cidr").status == 203
    assert ask6("/neg").status == 299
    assert ask6("/dst").status == 205


def test_scheme_is_http_on_plain_listener(wharf):
    server = wharf(routes_config([step({"scheme": "https"}, 201),
                                  step({"scheme": "http"}, 202)]))
    assert ask(server).status == 202


# -- variables in share paths and return locations ----------------------------

def test_share_path_with_variables(wharf, docroot):
    server = wharf(routes_config([
        {"match": {"uri": "/by-arg"},
         "action": {"share": str(docroot) + "/${arg_d}/inner.txt"}},
        {"match": {"uri": "/by-header"},
         "action": {"share": str(docroot) + "/$header_x_site/page.txt"}},
        {"match": {"uri": "/by-cookie"},
         "action": {"share": str(docroot) + "/$cookie_site/page.txt"}},
        {"action": {"share": str(docroot) + "${uri}"}},
    ]))
    r = ask(server, "/by-arg?d=dir")
    assert (r.status, r.body) == (200, b"inner file\n")
    r = ask(server, "/by-header", headers=[("X-Site", "site2")])
    assert (r.status, r.body) == (200, b"site two page\n")
    r = ask(server, "/by-cookie", headers=[("Cookie", "site=site1")])
    assert (r.status, r.body) == (200, b"site one page\n")
    r = ask(server, "/a.txt")
    assert (r.status, r.body) == (200, b"alpha file\n")
    assert ask(server, "/by-arg?d=nodir").status == 404


def test_return_location_with_variables(wharf):
    server = wharf(routes_config([
        {"match": {"uri": "/old/*"}, "action": {
            "return": 301,
            "location": "https://${host}${uri}?m=$method&a=$arg_a$dollar"}},
        {"action": {"return": 302, "location": "$request_uri"}},
    ]))
    r = ask(server, "/old/p%61th?a=1", host="site.test:8080")
    assert r.status == 301
    assert r.header("Location") == "https://site.test/old/path?m=GET&a=1$"
    r = ask(server, "/x/y?q=1")
    assert r.status == 302
    assert r.header("Location") == "/x/y?q=1"


# -- unknown variables are refused at start ----------------------------------

def refuse(tmp_path, conf):
    return refuse_config(tmp_path, conf)


@pytest.mark.parametrize("where", ["location", "share", "if", "pass"])
def test_unknown_variable_refused(tmp_path, where):
    action = {"location": {"return": 301, "location": "/$nosuchvar"},
              "share": {"share": "/tmp/$nosuchvar"},
              "pass": {"pass": "routes/$nosuchvar"}}.get(
                  where, {"return": 200})
    route = {"action": action}
    if where == "if":
        route["match"] = {"if": "$nosuchvar"}
    log = refuse(tmp_path, routes_config([route]))
    assert 'Unknown variable "nosuchvar"' in log, log


def test_malformed_variable_refused(tmp_path):
    log = refuse(tmp_path, routes_config([
        {"action": {"return": 301, "location": "/${uri"}}]))
    assert "variable" in log.lower(), log
