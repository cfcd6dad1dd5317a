"""Unit's behaviour where an RFC allows it (issue 7, section 1): bare LF line
endings, fragments, Host values, HTTP/1.2+, Location encoding, variables,
rewrite to "" and chunked_transform.  Each expectation below was checked
against Unit 1.35 on the same request; where Wharf stays stricter on purpose,
docs/compatibility.md says why."""

import time

import pytest

from lib.configs import routes_config
from lib.rawhttp import Reader, exchange, request, wait_closed
from lib.wharf import scaled


def raw(server, data, timeout=10):
    """Sends raw bytes on a new connection; returns the first response."""
    with server.connect() as s:
        s.sendall(data)
        return Reader(s, timeout=timeout).read_response()


def ask(server, path="/", host="localhost", headers=(), version="HTTP/1.1"):
    with server.connect() as s:
        return exchange(s, request(path=path, host=host, version=version,
                                   headers=list(headers)
                                   + [("Connection", "close")]))


def expect_rejected(server, data, status=400):
    with server.connect() as s:
        s.sendall(data)
        reader = Reader(s, timeout=10)
        resp = reader.read_response()
        assert resp.status == status, (data, resp)
        assert wait_closed(s, 10)


ECHO = {"X-Uri": "$uri", "X-Request-Uri": "$request_uri", "X-Host": "$host"}


@pytest.fixture
def echo(wharf, docroot):
    """/ret/* answers 200 with $uri, $request_uri and $host in fields;
    everything else is served from docroot."""
    return wharf(routes_config([
        {"match": {"uri": "/ret/*"},
         "action": {"return": 200, "response_headers": ECHO}},
        {"match": {"uri": "/9"},
         "action": {"return": 200, "response_headers": ECHO}},
        {"action": {"share": str(docroot) + "$uri"}},
    ]))


# -- bare LF line endings (RFC 9112 2.2) ---------------------------------------

def test_bare_lf_request_is_served(echo):
    resp = raw(echo, b"GET /a.txt HTTP/1.1\nHost: localhost\n"
                     b"Connection: close\n\n")
    assert resp.status == 200
    assert resp.body == b"alpha file\n"


def test_bare_lf_mixed_with_crlf(echo):
    resp = raw(echo, b"GET /ret/x HTTP/1.1\r\nHost: localhost\nX-A: 1\r\n\n")
    assert resp.status == 200
    assert resp.header("X-Uri") == "/ret/x"


def test_ten_bare_lf_requests_pipelined_get_ten_responses(echo):
    data = b"".join(b"GET /ret/%d HTTP/1.1\nHost: localhost\n\n" % i
                    for i in range(10))
    with echo.connect() as s:
        s.sendall(data)
        reader = Reader(s, timeout=10)
        for i in range(10):
            resp = reader.read_response()
            assert resp.status == 200
            assert resp.header("X-Uri") == "/ret/%d" % i


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\rHost: localhost\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\n\n",
    b"GET / HTTP/1.1\nHost: localhost\n\r\r\n\n",
], ids=["after_version", "in_value", "alone_on_a_line"])
def test_bare_cr_stays_400(echo, data):
    expect_rejected(echo, data)


def test_chunk_lines_keep_crlf(echo):
    """The head may use bare LF; the chunked body may not."""
    expect_rejected(echo, b"POST /ret/x HTTP/1.1\nHost: localhost\n"
                          b"Transfer-Encoding: chunked\n\n5\nhello\n0\n\n")


# -- fragments -------------------------------------------------------------------

def test_fragment_at_root_serves_index(echo):
    resp = ask(echo, "/#x")
    assert resp.status == 200
    assert resp.body == b"<html>root index</html>\n"


def test_fragment_dropped_from_uri_and_request_uri(echo):
    resp = ask(echo, "/9?q#a")
    assert resp.status == 200
    assert resp.header("X-Uri") == "/9"
    assert resp.header("X-Request-Uri") == "/9?q"


def test_fragment_with_hash_and_query_inside(echo):
    resp = ask(echo, "/ret/a#b?c#d")
    assert resp.status == 200
    assert resp.header("X-Request-Uri") == "/ret/a"


# -- Host ------------------------------------------------------------------------

def test_empty_host_is_valid(echo):
    resp = raw(echo, b"GET /ret/e HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n")
    assert resp.status == 200
    assert resp.header("X-Host") == ""


@pytest.mark.parametrize("host,want", [
    (".localhost", ".localhost"),
    ("Example.COM.", "example.com"),
    ("a.b:8080", "a.b"),
    ("[::1]:80", "[::1]"),
    ("x_y~z!$&'()*+,;=%41", "x_y~z!$&'()*+,;=%41"),
])
def test_host_reg_names(echo, host, want):
    resp = ask(echo, "/ret/h", host=host)
    assert resp.status == 200
    assert resp.header("X-Host") == want


@pytest.mark.parametrize("host", ["a#b", "a?b", "a/b", "a..b", "..", "a\\b"])
def test_bad_host_stays_400(echo, host):
    expect_rejected(echo, request(path="/ret/h", host=host))


def test_missing_host_on_http11_stays_400(echo):
    expect_rejected(echo, b"GET /ret/h HTTP/1.1\r\n\r\n")


# -- HTTP/1.2 and higher minor versions (RFC 9110 2.5) ----------------------------

@pytest.mark.parametrize("version", ["HTTP/1.2", "HTTP/1.9"])
def test_higher_minor_version_served_as_11(echo, version):
    with echo.connect() as s:
        s.sendall(request(path="/ret/v", version=version))
        reader = Reader(s, timeout=10)
        resp = reader.read_response()
        assert resp.status == 200
        assert resp.version == "HTTP/1.1"
        # Keep-alive as in HTTP/1.1: a second request on the same connection.
        s.sendall(request(path="/ret/w", version=version))
        assert reader.read_response().header("X-Uri") == "/ret/w"


def test_higher_minor_version_needs_host(echo):
    expect_rejected(echo, b"GET /ret/v HTTP/1.2\r\n\r\n")


# -- Location encoding ---------------------------------------------------------------

# (location as configured, Location that Unit 1.35 sends for /l/N?zz)
LOCATIONS = [
    ("/a?b?c", "/a?b%3Fc"),
    ("/a#b#c", "/a#b%23c"),
    ("/a#b?c", "/a#b%3Fc"),
    ("/a?b#c?d#e", "/a?b#c%3Fd%23e"),
    ("/a|b", "/a%7Cb"),
    ("/a b", "/a%20b"),
    ("/a%20b", "/a%20b"),
    ("/a%2", "/a%252"),
    ("/a%zz", "/a%25zz"),
    ("/a%20b c", "/a%2520b%20c"),
    ('/q"<>\\^`{}', "/q%22%3C%3E%5C%5E%60%7B%7D"),
    ("/\u00fc", "/%C3%BC"),
    ("http://x/p?q=1&r=2#frag", "http://x/p?q=1&r=2#frag"),
    ("/%41?x#y", "/%41?x#y"),
    ("/a?b%", "/a?b%25"),
    ("/a\u007f", "/a%7F"),
    ("/$uri?x", "//l/16?x"),
    # Unit's documented example of a fragment holding '?'.
    ("https://www.example.com/#?a=b", "https://www.example.com/#%3Fa=b"),
    ("/a~!&'()*+,;=:@[]", "/a~!&'()*+,;=:@[]"),
]


def test_location_encoded_as_unit_encodes(wharf):
    server = wharf(routes_config([
        {"match": {"uri": "/l/%d" % i},
         "action": {"return": 302, "location": loc}}
        for i, (loc, _) in enumerate(LOCATIONS)]))
    for i, (loc, want) in enumerate(LOCATIONS):
        resp = ask(server, "/l/%d?zz" % i)
        assert resp.status == 302, loc
        assert resp.header("Location") == want, loc


# -- variables -------------------------------------------------------------------

def read_lines(path, count, timeout=10.0):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        lines = text.splitlines() if text.endswith("\n") else \
            text.splitlines()[:-1]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_request_id_same_everywhere_in_one_request(wharf, tmp_path):
    log = tmp_path / "access.log"
    conf = routes_config([
        {"action": {"return": 200, "response_headers": {
            "X-A": "$request_id", "X-B": "id=${request_id}"}}}])
    conf["access_log"] = {"path": str(log), "format": "$request_id"}
    server = wharf(conf)
    ids = set()
    for _ in range(3):
        resp = ask(server, "/")
        a = resp.header("X-A")
        assert len(a) == 32 and set(a) <= set("0123456789abcdef")
        assert resp.header("X-B") == "id=" + a
        ids.add(a)
    assert len(ids) == 3, "each request gets its own id"
    assert set(read_lines(log, 3)) == ids


def test_request_uri_is_the_original_target_after_rewrite(wharf):
    server = wharf(routes_config([
        {"action": {"rewrite": "/new", "return": 200,
                    "response_headers": ECHO}}]))
    resp = ask(server, "/old?a=1")
    assert resp.header("X-Uri") == "/new"
    assert resp.header("X-Request-Uri") == "/old?a=1"


def test_empty_header_is_empty_absent_is_dash_in_log(wharf, tmp_path):
    log = tmp_path / "access.log"
    conf = routes_config([
        {"action": {"return": 200, "response_headers": {
            "X-E": "[$header_x_e]", "X-M": "[$header_x_missing]"}}}])
    conf["access_log"] = {
        "path": str(log),
        "format": "[$header_x_e] [$header_x_missing] [$arg_a] [$arg_b] "
                  "[$cookie_c] [$cookie_d]"}
    server = wharf(conf)
    resp = ask(server, "/?a=", headers=[("X-E", ""), ("Cookie", "c=")])
    assert resp.header("X-E") == "[]"
    assert resp.header("X-M") == "[]"
    assert read_lines(log, 1) == ["[] [-] [] [-] [] [-]"]


def test_default_log_format_empty_referer(wharf, tmp_path):
    log = tmp_path / "access.log"
    conf = routes_config([{"action": {"return": 204}}])
    conf["access_log"] = str(log)
    server = wharf(conf)
    ask(server, "/", headers=[("Referer", ""), ("User-Agent", "ua")])
    ask(server, "/")
    # Each I/O thread writes its own batch of lines: two connections'
    # lines may come in either order.
    lines = sorted(read_lines(log, 2), key=lambda l: l.endswith('"-" "-"'))
    assert lines[0].endswith('204 0 "" "ua"'), lines
    assert lines[1].endswith('204 0 "-" "-"'), lines


# -- rewrite to "" ------------------------------------------------------------------

def test_rewrite_to_empty_string(wharf, docroot):
    """Unit makes $uri empty: a return still answers, and a share of
    root$uri names the root directory, which redirects to "/"."""
    server = wharf(routes_config([
        {"match": {"uri": "/r"},
         "action": {"rewrite": "", "return": 200,
                    "response_headers": ECHO}},
        {"match": {"uri": "/s"},
         "action": {"rewrite": "", "share": str(docroot) + "$uri"}},
    ]))
    resp = ask(server, "/r?x")
    assert resp.status == 200
    assert resp.header("X-Uri") == ""
    assert resp.header("X-Request-Uri") == "/r?x"
    resp = ask(server, "/s")
    assert resp.status == 301
    assert resp.header("Location") == "/"


def test_response_header_variables(wharf, tmp_path, docroot):
    """$response_header_NAME is accepted wherever Unit accepts a variable;
    the access log sees the response as sent, a template rendered before
    the response exists (response_headers) sees none of it."""
    log = tmp_path / "access.log"
    conf = routes_config([
        {"match": {"uri": "/ret"},
         "action": {"return": 200, "response_headers": {
             "X-A": "a", "X-B": "[$response_header_x_a]"}}},
        {"action": {"share": str(docroot) + "$uri"}}])
    conf["access_log"] = {
        "path": str(log),
        "format": "[$response_header_x_a] [$response_header_content_type] "
                  "[$response_header_content_length] "
                  "[$response_header_Server] [$response_header_x_none]"}
    server = wharf(conf)
    resp = ask(server, "/ret")
    assert resp.status == 200
    assert resp.header("X-B") == "[]"
    resp = ask(server, "/a.txt")
    assert resp.status == 200
    # Two connections, maybe two I/O threads: either order.
    assert sorted(read_lines(log, 2)) == sorted([
        "[a] [-] [0] [Wharf/0.1.0] [-]",
        "[-] [%s] [11] [Wharf/0.1.0] [-]" % resp.header("Content-Type")])


# -- chunked_transform ---------------------------------------------------------------

def test_chunked_transform_accepted(wharf):
    """Unit's chunked_transform converts chunked bodies for applications
    (the router hands them over with a Content-Length); both values are
    accepted, and other actions read chunked bodies either way."""
    server = wharf(routes_config([{"action": {"return": 204}}]))
    api = server.api()
    r = api.put("/config/settings", {"http": {"chunked_transform": True}})
    assert r.status == 200, r
    assert api.get("/config/settings/http/chunked_transform").json is True
    r = api.put("/config/settings", {"http": {"chunked_transform": False}})
    assert r.status == 200, r
    # Chunked bodies are read for every action whatever the setting.
    with server.connect() as s:
        resp = exchange(s, b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n"
                           b"5\r\nhello\r\n0\r\n\r\n")
    assert resp.status == 204
