"""The router's side of WebSocket: the RFC 6455 opening handshake checked
as Unit checks it, the two-way tunnel after a 101 (no HTTP timeout,
settings.http.websocket.read_timeout), and the closing handshake (the
server waits, bounded, for the client's Close).  The frames themselves
are the ASGI module's (apps/asgi/websocket.py; test_asgi.py)."""

import os
import socket
import time

import pytest

from lib.wharf import scaled

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "asgi")
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def ws_config(settings=None, routes=None):
    conf = {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": routes or [
            {"match": {"uri": "/ret"}, "action": {"return": 204}},
            {"action": {"pass": "applications/ws"}},
        ],
        "applications": {"ws": {"type": "python", "path": APPS,
                                "module": "websocket"}},
    }
    if settings is not None:
        conf["settings"] = {"http": settings}
    return conf


def handshake(path, method=b"GET", version=b"1.1", key=KEY, ws_version=b"13",
              extra=b""):
    head = (method + b" " + path + b" HTTP/" + version + b"\r\nHost: x\r\n"
            b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n")
    if key is not None:
        head += b"Sec-WebSocket-Key: " + key + b"\r\n"
    if ws_version is not None:
        head += b"Sec-WebSocket-Version: " + ws_version + b"\r\n"
    return head + extra + b"\r\n"


def frame(opcode, payload, mask=b"\x11\x22\x33\x44"):
    """A masked client frame (payloads under 126 bytes)."""
    body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "connection closed in the head: %r" % data
        data += chunk
    return data.split(b"\r\n\r\n", 1)


def read_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "connection closed after %r" % data
        data += chunk
    return data


def read_to_eof(s):
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


def open_tunnel(server, path=b"/echo", extra_bytes=b""):
    s = server.connect()
    s.settimeout(scaled(20))
    s.sendall(handshake(path) + extra_bytes)
    head, rest = read_head(s)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"\r\nConnection: Upgrade" in head and ACCEPT in head
    return s, rest


def test_echo_and_bytes_sent_with_the_handshake(wharf):
    server = wharf(ws_config())
    # The first frame rides in the handshake's own write: the router passes
    # the bytes it read past the head into the tunnel.
    s, rest = open_tunnel(server, extra_bytes=frame(0x1, b"early"))
    rest += read_exactly(s, 7 - len(rest))
    assert rest == b"\x81\x05early"
    s.sendall(frame(0x2, b"\x00\x01\x02"))
    assert read_exactly(s, 5) == b"\x82\x03\x00\x01\x02"
    s.close()


@pytest.mark.parametrize("req,status", [
    (handshake(b"/echo", key=None), 400),
    (handshake(b"/echo", key=b"short=="), 400),
    (handshake(b"/echo", key=b"!!!!IHNhbXBsZSBub25jZQ=="), 400),
    (handshake(b"/echo", method=b"POST"), 400),
    (handshake(b"/echo", version=b"1.0"), 400),
    (handshake(b"/echo", ws_version=b"8"), 426),
    (handshake(b"/echo", ws_version=None), 426),
])
def test_bad_handshakes_are_refused(wharf, req, status):
    server = wharf(ws_config())
    s = server.connect()
    s.settimeout(scaled(20))
    s.sendall(req)
    head, _ = read_head(s)
    assert head.split(b" ")[1] == str(status).encode(), head
    if status == 426:
        # RFC 6455 4.2.2: the version this server speaks.
        assert b"\r\nSec-WebSocket-Version: 13" in head
    s.close()


def test_handshake_to_a_non_app_action_is_a_plain_request(wharf):
    server = wharf(ws_config())
    s = server.connect()
    s.settimeout(scaled(20))
    s.sendall(handshake(b"/ret") + b"GET /ret HTTP/1.1\r\nHost: x\r\n\r\n")
    head, rest = read_head(s)
    assert head.startswith(b"HTTP/1.1 204 ")
    assert b"Upgrade" not in head
    if b"\r\n\r\n" not in rest:
        rest += s.recv(4096)
    # Not a tunnel: the next request on the connection is answered.
    assert rest.startswith(b"HTTP/1.1 204 ")
    s.close()


def test_http_timeouts_do_not_bound_a_tunnel(wharf):
    server = wharf(ws_config(settings={"idle_timeout": 1,
                                       "send_timeout": 1,
                                       "body_read_timeout": 1}))
    s, _ = open_tunnel(server)
    time.sleep(2.5)
    s.sendall(frame(0x1, b"still here"))
    assert read_exactly(s, 12) == b"\x81\x0astill here"
    s.close()


def test_read_timeout_closes_an_idle_tunnel(wharf):
    server = wharf(ws_config(settings={"websocket": {"read_timeout": 1}}))
    s, _ = open_tunnel(server)
    s.sendall(frame(0x1, b"a"))
    assert read_exactly(s, 3) == b"\x81\x01a"
    t = time.monotonic()
    assert read_to_eof(s) == b""
    assert time.monotonic() - t >= 0.9
    s.close()


def test_server_waits_for_the_clients_close(wharf):
    server = wharf(ws_config())
    s, rest = open_tunnel(server, b"/close?code=4001")
    rest += read_exactly(s, 7 - len(rest))
    assert rest == b"\x88\x05\x0f\xa1bye"   # 4001, "bye"
    # RFC 6455 7.1.1: the connection stays until the client's Close.
    s.settimeout(1.0)
    with pytest.raises(socket.timeout):
        s.recv(1)
    s.settimeout(scaled(20))
    s.sendall(frame(0x8, b"\x0f\xa1"))
    assert read_to_eof(s) == b""
    s.close()


def test_a_client_that_never_closes_is_closed_after_a_bound(wharf):
    server = wharf(ws_config())
    s, rest = open_tunnel(server, b"/close?code=1000")
    t = time.monotonic()
    s.settimeout(scaled(30))
    read_to_eof(s)
    assert time.monotonic() - t >= 4.0   # H1_WS_CLOSE_MS
    s.close()


def test_client_close_is_echoed_and_the_connection_ends(wharf):
    server = wharf(ws_config())
    s, _ = open_tunnel(server)
    s.sendall(frame(0x8, b"\x03\xe8"))
    assert read_to_eof(s) == b"\x88\x02\x03\xe8"
    s.close()


def test_keepalive_ping_then_read_timeout(wharf):
    server = wharf(ws_config(settings={"websocket": {
        "keepalive_interval": 1, "read_timeout": 3}}))
    s, _ = open_tunnel(server)
    # Silent for keepalive_interval: a Ping, as Unit sends one.
    assert read_exactly(s, 2) == b"\x89\x00"
    s.sendall(frame(0xA, b""))          # the Pong counts as client bytes
    assert read_exactly(s, 2) == b"\x89\x00"
    # No Pong this time: read_timeout closes the tunnel.
    t = time.monotonic()
    assert read_to_eof(s) == b""
    assert time.monotonic() - t >= 1.5
    s.close()
