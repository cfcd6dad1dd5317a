"""settings.http timeouts: header_read, body_read, idle and send.

Each test sets the timeout under test to 2 s and the others high, so the
connection closes in seconds only if that timeout works (the defaults are
30 s or more)."""

import socket
import time

import pytest

from lib.configs import routes_config
from lib.rawhttp import Reader, readable, request, wait_closed
from lib.wharf import scaled

LONG = 60


def timeouts(header=LONG, body=LONG, idle=LONG, send=LONG):
    return {"header_read_timeout": header, "body_read_timeout": body,
            "idle_timeout": idle, "send_timeout": send}


def server_for(wharf, docroot, **kw):
    return wharf(routes_config([
        {"match": {"uri": "/ret/*"}, "action": {"return": 200}},
        {"action": {"share": str(docroot) + "$uri"}},
    ], http=timeouts(**kw)))


def closed_or_answered(sock):
    """Non-blocking: has the server closed (or answered, e.g. 408)?"""
    if not readable(sock, 0):
        return False
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return True
    if data:
        assert data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 400"), data
    return True


def test_header_read_timeout_with_trickling_client(wharf, docroot):
    server = server_for(wharf, docroot, header=2)
    head = request(path="/a.txt", headers=["X-Pad: " + "p" * 400])[:-2]
    with server.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic()
        deadline = start + scaled(15)
        closed = False
        for i in range(len(head)):
            if time.monotonic() > deadline:
                break
            try:
                s.send(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.3)
            if closed_or_answered(s):
                closed = True
                break
        elapsed = time.monotonic() - start
    assert closed, "trickling client kept the connection for %.1fs" % elapsed
    assert elapsed >= 1.5, "closed after only %.1fs" % elapsed
    assert elapsed < scaled(8), "closed only after %.1fs" % elapsed


def test_silent_connection_closed(wharf, docroot):
    server = server_for(wharf, docroot, header=2, idle=2)
    with server.connect() as s:
        start = time.monotonic()
        assert wait_closed(s, 15), "silent connection never closed"
        elapsed = time.monotonic() - start
    assert 1.5 <= elapsed < scaled(8), elapsed


def test_idle_keepalive_timeout(wharf, docroot):
    server = server_for(wharf, docroot, idle=2)
    with server.connect() as s:
        s.sendall(request(path="/a.txt"))
        reader = Reader(s)
        assert reader.read_response().status == 200
        start = time.monotonic()
        assert wait_closed(s, 15), "idle keep-alive connection never closed"
        elapsed = time.monotonic() - start
    assert 1.5 <= elapsed < scaled(8), elapsed


def test_idle_timeout_does_not_cut_active_connection(wharf, docroot):
    server = server_for(wharf, docroot, idle=2)
    with server.connect() as s:
        reader = Reader(s)
        for _ in range(4):          # 4 x 1 s > idle_timeout in total
            s.sendall(request(path="/a.txt"))
            assert reader.read_response().status == 200
            time.sleep(1.0)
        s.sendall(request(path="/b.txt"))
        assert reader.read_response().status == 200


def test_body_read_timeout_stalled_body(wharf, docroot):
    server = server_for(wharf, docroot, body=2)
    with server.connect() as s:
        s.sendall(request(method="POST", path="/ret/x",
                          headers=["Content-Length: 100"]) + b"0123456789")
        start = time.monotonic()
        deadline = start + scaled(15)
        closed = False
        while time.monotonic() < deadline:
            if closed_or_answered(s):
                closed = True
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - start
    assert closed, "stalled body kept the connection open"
    assert 1.5 <= elapsed < scaled(8), elapsed


def test_send_timeout_client_stops_reading(wharf, docroot):
    big = docroot / "huge.bin"
    with open(big, "wb") as f:
        f.truncate(50 << 20)        # sparse 50 MiB
    server = server_for(wharf, docroot, send=2)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(scaled(10))
        s.connect(("127.0.0.1", server.port))
        s.sendall(request(path="/huge.bin"))
        assert readable(s, scaled(10)), "no response started"
        start = time.monotonic()
        # The connection (and the file) occupy server fds until it gives up.
        count = server.wait_fds_at_most(server.fd_baseline, timeout=20)
        elapsed = time.monotonic() - start
        assert count <= server.fd_baseline, \
            "server still holds the stalled connection after %.1fs" % elapsed
        assert elapsed >= 1.0, "closed after only %.1fs" % elapsed
        # What the client can still read is far less than the file.
        got = 0
        s.settimeout(scaled(10))
        for _ in range(100000):
            try:
                data = s.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            got += len(data)
        assert got < 50 << 20, "the whole file arrived; nothing timed out"
    finally:
        s.close()
