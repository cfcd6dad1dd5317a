"""HTTP/1.x protocol handling: keep-alive, pipelining, versions, bodies,
Expect: 100-continue, error responses and rejection of malformed input."""

import email.utils
import http.client
import socket

import pytest
import requests

from lib import rawhttp
from lib.configs import routes_config
from lib.rawhttp import Reader, exchange, request, wait_closed

ERROR_404_BODY = b"<!DOCTYPE html><title>Error 404</title><p>Error 404.\r\n"


@pytest.fixture
def server(wharf, docroot):
    """/ret/* -> return 200, /r204 -> return 204, everything else -> share."""
    return wharf(routes_config([
        {"match": {"uri": "/ret/*"}, "action": {"return": 200}},
        {"match": {"uri": "/r204"}, "action": {"return": 204}},
        {"action": {"share": str(docroot) + "$uri"}},
    ], http={"max_body_size": 1000}))


def expect_rejected(server, data, status, timeout=10):
    """Send raw bytes; expect `status` and then the connection closed."""
    with server.connect() as s:
        s.sendall(data)
        reader = Reader(s, timeout=timeout)
        resp = reader.read_response()
        expected = status if isinstance(status, tuple) else (status,)
        assert resp.status in expected, (data[:200], resp)
        assert reader.buf == b"", "unexpected bytes after the error response"
        assert wait_closed(s, timeout), "connection not closed after %d" % status
    return resp


# -- basic responses ---------------------------------------------------------

def test_date_and_server_headers(server):
    r = requests.get(server.url("/a.txt"), timeout=10)
    assert r.status_code == 200
    assert r.content == b"alpha file\n"
    assert r.headers["Server"] == "Wharf/0.1.0"
    assert email.utils.parsedate_to_datetime(r.headers["Date"]) is not None


def test_server_version_false(wharf, docroot):
    server = wharf(routes_config(
        [{"action": {"share": str(docroot) + "$uri"}}],
        http={"server_version": False}))
    r = requests.get(server.url("/a.txt"), timeout=10)
    assert r.status_code == 200
    assert r.headers["Server"] == "Wharf"


def test_error_page_body(server):
    with server.connect() as s:
        resp = exchange(s, request(path="/missing.txt"))
    assert resp.status == 404
    assert resp.body == ERROR_404_BODY
    assert resp.header("Content-Type").startswith("text/html")
    assert resp.header("Server") == "Wharf/0.1.0"
    assert resp.header("Date")


# -- connection management -----------------------------------------------------

def test_keep_alive_reuses_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/a.txt")
        r1 = conn.getresponse()
        assert r1.read() == b"alpha file\n"
        sock1 = conn.sock
        conn.request("GET", "/b.txt")
        r2 = conn.getresponse()
        assert r2.read() == b"bravo file, a bit longer\n"
        assert conn.sock is sock1, "server closed a keep-alive connection"
        assert r2.status == 200
    finally:
        conn.close()


def test_pipelined_requests_answered_in_order(server):
    data = (request(path="/a.txt") + request(path="/b.txt")
            + request(path="/missing") + request(path="/hello.txt"))
    with server.connect() as s:
        s.sendall(data)
        reader = Reader(s)
        bodies = [reader.read_response() for _ in range(4)]
    assert [r.status for r in bodies] == [200, 200, 404, 200]
    assert bodies[0].body == b"alpha file\n"
    assert bodies[1].body == b"bravo file, a bit longer\n"
    assert bodies[3].body == b"0123456789abcdefghij"


def test_pipelined_requests_sent_byte_by_byte(server):
    data = request(path="/a.txt") + request(path="/b.txt")
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            s.send(data[i:i + 1])
        reader = Reader(s)
        assert reader.read_response().body == b"alpha file\n"
        assert reader.read_response().body == b"bravo file, a bit longer\n"


def test_http10_closes_by_default(server):
    with server.connect() as s:
        s.sendall(request(path="/a.txt", version="HTTP/1.0", host=None))
        reader = Reader(s)
        resp = reader.read_response()
        assert resp.status == 200
        assert resp.body == b"alpha file\n"
        assert wait_closed(s), "HTTP/1.0 connection left open"


def test_http10_keep_alive(server):
    with server.connect() as s:
        reader = Reader(s)
        for name in ("/a.txt", "/b.txt"):
            s.sendall(request(path=name, version="HTTP/1.0", host=None,
                              headers=["Connection: keep-alive"]))
            resp = reader.read_response()
            assert resp.status == 200
            assert resp.version == "HTTP/1.1" or resp.version == "HTTP/1.0"


def test_connection_close_honoured(server):
    with server.connect() as s:
        s.sendall(request(path="/a.txt", headers=["Connection: close"]))
        resp = Reader(s).read_response()
        assert resp.status == 200
        assert wait_closed(s)


def test_head_has_headers_but_no_body(server):
    with server.connect() as s:
        reader = Reader(s)
        s.sendall(request(method="HEAD", path="/hello.txt")
                  + request(path="/a.txt"))
        head = reader.read_response(head_request=True)
        assert head.status == 200
        assert head.header("Content-Length") == "20"
        # If a body had been sent it would be parsed as the next response.
        resp = reader.read_response()
        assert resp.status == 200
        assert resp.body == b"alpha file\n"


def test_absolute_form_target(server):
    port = server.port
    with server.connect() as s:
        resp = exchange(s, request(
            path="http://127.0.0.1:%d/a.txt" % port, host="127.0.0.1"))
    assert resp.status == 200
    assert resp.body == b"alpha file\n"


def test_curl_basic_get(server):
    import subprocess
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}",
         server.url("/dir/inner.txt")],
        capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body, _, code = out.stdout.rpartition(b"\n")
    assert code == b"200"
    assert body == b"inner file\n"


# -- request bodies ------------------------------------------------------------

def test_post_body_consumed_before_next_pipelined_request(server):
    body = b"x" * 500
    data = (request(method="POST", path="/ret/post",
                    headers=["Content-Length: %d" % len(body)], body=body)
            + request(path="/a.txt"))
    with server.connect() as s:
        s.sendall(data)
        reader = Reader(s)
        assert reader.read_response().status == 200
        resp = reader.read_response()
        assert resp.status == 200
        assert resp.body == b"alpha file\n"


def test_chunked_body_with_extensions_and_trailers(server):
    body = (b"5;ext=1\r\nhello\r\n"
            b"6 ; name=\"v\"\r\n world\r\n"
            b"0\r\nX-Trailer: yes\r\n\r\n")
    data = (request(method="POST", path="/ret/chunked",
                    headers=["Transfer-Encoding: chunked"], body=body)
            + request(path="/b.txt"))
    with server.connect() as s:
        s.sendall(data)
        reader = Reader(s)
        assert reader.read_response().status == 200
        resp = reader.read_response()
        assert resp.status == 200
        assert resp.body == b"bravo file, a bit longer\n"


def test_chunked_body_sent_in_pieces(server):
    pieces = [b"3\r\nabc", b"\r\n", b"4\r", b"\ndefg\r\n0\r", b"\n\r\n"]
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request(method="POST", path="/ret/x",
                          headers=["Transfer-Encoding: chunked"]))
        for p in pieces:
            s.sendall(p)
        s.sendall(request(path="/a.txt"))
        reader = Reader(s)
        assert reader.read_response().status == 200
        assert reader.read_response().body == b"alpha file\n"


def test_expect_100_continue(server):
    body = b"y" * 100
    with server.connect() as s:
        s.sendall(request(method="POST", path="/ret/expect", headers=[
            "Content-Length: %d" % len(body), "Expect: 100-continue"]))
        reader = Reader(s)
        interim = reader.read_until(b"\r\n\r\n",
                                    deadline=_deadline(10))
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        s.sendall(body + request(path="/a.txt"))
        assert reader.read_response().status == 200
        assert reader.read_response().body == b"alpha file\n"


def _deadline(seconds):
    import time
    from lib.wharf import scaled
    return time.monotonic() + scaled(seconds)


def test_return_204_no_body(server):
    with server.connect() as s:
        reader = Reader(s)
        s.sendall(request(path="/r204") + request(path="/a.txt"))
        assert reader.read_response().status == 204
        assert reader.read_response().body == b"alpha file\n"


# -- rejected input: status and close -------------------------------------------

BIG = "a" * 9000

REJECTS = [
    ("request_line_no_target", b"GET\r\nHost: x\r\n\r\n", 400),
    ("request_line_bad_method", b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("request_line_bad_protocol", b"GET / FOO/1.1\r\nHost: x\r\n\r\n", 400),
    ("request_line_garbage", b"\x01\x02\x03 junk\r\n\r\n", 400),
    ("header_space_in_name", b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
    ("header_no_colon", b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
    ("header_space_before_colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A : v\r\n\r\n", 400),
    ("cl_and_te", b"POST /ret/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400),
    ("duplicate_cl_different", b"POST /ret/x HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    ("duplicate_cl_same", b"POST /ret/x HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 3\r\nContent-Length: 3\r\n\r\n", 400),
    ("invalid_cl_alpha", b"POST /ret/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ("invalid_cl_negative", b"POST /ret/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("invalid_cl_list", b"POST /ret/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", 400),
    ("invalid_cl_huge", b"POST /ret/x HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 99999999999999999999999999\r\n\r\n", (400, 413)),
    ("unknown_te_gzip", b"POST /ret/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("bare_cr_in_value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    ("nul_in_value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("ctl_in_value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    ("nul_in_name", b"GET / HTTP/1.1\r\nHost: x\r\nX-\x00A: v\r\n\r\n", 400),
    ("missing_host_11", b"GET /a.txt HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    ("two_host_fields", b"GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("uri_too_long", ("GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % BIG).encode(), 414),
    ("single_field_too_large", ("GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n"
                                % BIG).encode(), 431),
    ("headers_too_large", ("GET / HTTP/1.1\r\nHost: x\r\n"
                           + "".join("X-H%d: %s\r\n" % (i, "b" * 7000)
                                     for i in range(6))
                           + "\r\n").encode(), 431),
    ("body_over_max_body_size", b"POST /ret/x HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 2000\r\n\r\n", 413),
    ("http_2_0_version", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
]


@pytest.mark.parametrize("data,status", [r[1:] for r in REJECTS],
                         ids=[r[0] for r in REJECTS])
def test_rejects_malformed(server, data, status):
    expect_rejected(server, data, status)


def test_rejected_request_gets_error_page(server):
    resp = expect_rejected(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400)
    assert resp.body.startswith(b"<!DOCTYPE html><title>Error 400</title>")
    assert resp.header("Content-Type").startswith("text/html")


def test_chunked_body_over_max_body_size(server):
    chunk = b"z" * 600
    body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk,
                                                     len(chunk), chunk)
    expect_rejected(server, request(method="POST", path="/ret/x", headers=[
        "Transfer-Encoding: chunked"]) + body, 413)


def test_bad_chunk_size_rejected(server):
    expect_rejected(server, request(method="POST", path="/ret/x", headers=[
        "Transfer-Encoding: chunked"]) + b"zz\r\nabc\r\n0\r\n\r\n", 400)


def test_uri_just_under_limit_is_not_414(server):
    path = "/" + "c" * 8000
    with server.connect() as s:
        resp = exchange(s, request(path=path))
    assert resp.status == 404


def test_large_headers_within_limit_accepted(server):
    headers = ["X-H%d: %s" % (i, "d" * 6000) for i in range(3)]
    with server.connect() as s:
        resp = exchange(s, request(path="/a.txt", headers=headers))
    assert resp.status == 200
    assert resp.body == b"alpha file\n"


def test_server_survives_garbage_then_serves(server):
    for junk in (b"\xff" * 100 + b"\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\r\n:\r\n\r\n"):
        expect_rejected(server, junk, 400)
    # Empty lines before a request line may be skipped (RFC 9112 2.2), so
    # this client is only left waiting; it must not disturb the server.
    with server.connect() as s:
        s.sendall(b"\r\n\r\n\r\n")
    r = requests.get(server.url("/a.txt"), timeout=10)
    assert r.status_code == 200


def test_leading_empty_lines_before_request_line(server):
    with server.connect() as s:
        resp = exchange(s, b"\r\n" + request(path="/a.txt"))
    assert resp.status in (200, 400)
    if resp.status == 200:
        assert resp.body == b"alpha file\n"


def test_client_abort_mid_request_is_harmless(server):
    for part in (b"GET /a.t", b"POST /ret/x HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 100\r\n\r\nabc"):
        s = server.connect()
        s.sendall(part)
        s.close()
    r = requests.get(server.url("/b.txt"), timeout=10)
    assert r.status_code == 200


def test_large_body_keeps_the_head_intact(wharf):
    """The body of a request is read and dropped through the buffer that
    holds its head: a 64 KiB body must not overwrite the Host that the
    action renders afterwards, nor the next pipelined request."""
    server = wharf(routes_config([{"action": {
        "return": 301, "location": "http://$host/moved$uri"}}]))
    body = b"x" * 65536
    head = (b"POST /big HTTP/1.1\r\nHost: example.test\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    with server.connect() as s:
        s.sendall(head)
        for i in range(0, len(body), 1000):
            s.sendall(body[i:i + 1000])
        s.sendall(request(path="/after", host="second.test"))
        reader = Reader(s)
        first = reader.read_response()
        second = reader.read_response()
    assert first.status == 301
    assert first.header("location") == "http://example.test/moved/big"
    assert second.header("location") == "http://second.test/moved/after"
