"""Unit's behaviour where an RFC allows it (issue 7, section 1): bare LF line
endings, fragments, Host values, HTTP/1.2+, Location encoding, variables,
rewrite to "" and chunked_transform.  Each expectation below was checked
against Unit 1.35 on the same request; where Wharf stays stricter on purpose,
docs/compatibility.md says why."""

import pytest

from lib.configs import routes_config
from lib.rawhttp import Reader, exchange, request, wait_closed


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
