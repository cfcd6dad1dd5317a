"""WebSocket through the proxy (issue 10): a valid handshake is forwarded
with "Upgrade: websocket" and "Connection: upgrade", the backend's 101 is
relayed, then bytes flow both ways with back-pressure until either side
closes, the tunnel is idle for "tunnel_timeout", or the backend dies.

The backend is a real WebSocket server on python3-websockets
(apps/proxy/ws_echo.py, in its own process so that it can be killed), the
client is python3-websockets' client; raw sockets only where the bytes
themselves matter (a broken 101, a client that never reads)."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import websockets

from lib.configs import routes_config
from lib.proxy_backends import RawBackend, wait_for
from lib.wharf import scaled

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps",
                   "proxy", "ws_echo.py")
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class WsBackend:
    """apps/proxy/ws_echo.py in a process of its own."""

    def __init__(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", APP],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def opened(self):
        return [json.loads(line.split(" ", 2)[2]) for line in self.lines
                if line.startswith("open ")]

    def closed(self):
        return [line for line in self.lines if line.startswith("closed ")]

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(scaled(10))

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.stdout.close()


@pytest.fixture
def ws_backend():
    started = []

    def start():
        b = WsBackend()
        started.append(b)
        return b
    yield start
    for b in started:
        b.stop()


def proxy_conf(port, **settings):
    action = {"proxy": "http://127.0.0.1:%d" % port}
    if settings:
        action["proxy_settings"] = settings
    return routes_config([{"action": action}])


def run(coro, seconds=30):
    return asyncio.run(asyncio.wait_for(coro, scaled(seconds)))


def connect(server, path):
    return websockets.connect("ws://127.0.0.1:%d%s" % (server.port, path),
                              max_size=None, ping_interval=None,
                              open_timeout=scaled(10),
                              close_timeout=scaled(10))


def test_echo_both_ways_text_binary_large(wharf, ws_backend):
    b = ws_backend()
    server = wharf(proxy_conf(b.port), threads=1)
    big = os.urandom(3 << 20)

    async def go():
        async with connect(server, "/echo") as ws:
            for msg in ("hi", b"\x00\x01\x02", "é" * 70000, big):
                await ws.send(msg)
                assert await ws.recv() == msg
            # Several in flight at once, both directions busy.
            msgs = [os.urandom(200000) for _ in range(8)]
            for m in msgs:
                await ws.send(m)
            for m in msgs:
                assert await ws.recv() == m
            await ws.close()
            return ws.close_code
    assert run(go()) == 1000
    assert wait_for(lambda: b.closed() == ["closed /echo 1000"], scaled(10))
    head = dict((k, v) for k, v in b.opened()[0])
    assert head["upgrade"] == "websocket"
    assert head["connection"] == "upgrade"
    assert head["sec-websocket-key"]
    assert head["sec-websocket-version"] == "13"


def test_backend_bytes_right_after_the_101(wharf, ws_backend):
    b = ws_backend()
    server = wharf(proxy_conf(b.port, idle_connections=4), threads=1)

    async def go():
        async with connect(server, "/hello") as ws:
            first = await ws.recv()
            await ws.send("again")
            return first, await ws.recv()
    assert run(go()) == ("hello", "again")


def test_close_from_the_backend(wharf, ws_backend):
    b = ws_backend()
    server = wharf(proxy_conf(b.port), threads=1)

    async def go():
        async with connect(server, "/close") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason
    assert run(go()) == (4000, "bye")


def test_backend_refuses_the_upgrade(wharf, ws_backend):
    b = ws_backend()
    server = wharf(proxy_conf(b.port), threads=1)

    async def go():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            async with connect(server, "/refuse"):
                pass
        return e.value.status_code
    assert run(go()) == 403
    # The proxy still serves after a refused upgrade.
    assert run(go()) == 403


def test_tunnel_idle_timeout(wharf, ws_backend):
    b = ws_backend()
    server = wharf(proxy_conf(b.port, tunnel_timeout=1), threads=1)

    async def go():
        async with connect(server, "/echo") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), scaled(20))
    run(go())
    server.wait_log(r"tunnel idle, closed", timeout=scaled(10))


def test_traffic_keeps_the_tunnel_open(wharf, ws_backend):
    """Bytes either way restart tunnel_timeout."""
    b = ws_backend()
    server = wharf(proxy_conf(b.port, tunnel_timeout=1), threads=1)

    async def go():
        async with connect(server, "/echo") as ws:
            for i in range(8):
                await ws.send(str(i))
                assert await ws.recv() == str(i)
                await asyncio.sleep(0.4)
    run(go())


def test_backend_killed_mid_tunnel(wharf, ws_backend):
    b = ws_backend()
    server = wharf(proxy_conf(b.port), threads=1)

    async def go():
        async with connect(server, "/echo") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            b.kill()
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), scaled(20))
    run(go())
    # The proxy is unharmed: a new backend serves at once.
    b2 = ws_backend()
    server.api().put("/config/routes/0/action/proxy", "http://127.0.0.1:%d"
                     % b2.port)

    async def again():
        async with connect(server, "/echo") as ws:
            await ws.send("y")
            return await ws.recv()
    assert run(again()) == "y"


def test_client_gone_mid_tunnel(wharf, ws_backend):
    """A client that vanishes (no Close) ends the tunnel: the backend sees
    its connection close."""
    b = ws_backend()
    server = wharf(proxy_conf(b.port), threads=1)
    s = server.connect()
    s.sendall(("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % KEY).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk
        data += chunk
    assert data.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nUpgrade: websocket\r\n" in data
    assert b"\r\nConnection: Upgrade\r\n" in data
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" \
        in data
    s.close()
    assert wait_for(lambda: len(b.closed()) == 1, scaled(10)), b.lines


def raw_handshake(server):
    s = server.connect()
    s.sendall(("GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % KEY).encode())
    return s


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_101_without_upgrade_is_502(wharf):
    b = RawBackend(lambda req, sock: (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n"))
    try:
        server = wharf(proxy_conf(b.port), threads=1)
        with raw_handshake(server) as s:
            assert read_head(s).startswith(b"HTTP/1.1 502 ")
        server.wait_log(r'101 without \\"Upgrade: websocket\\"|101 without',
                        timeout=scaled(10))
        assert b.last().header("Upgrade") == "websocket"
        assert b.last().header("Connection") == "upgrade"
    finally:
        b.stop()


def test_plain_request_never_forwards_upgrade(wharf):
    """Only a valid WebSocket handshake is forwarded as an upgrade; an
    Upgrade field on another request is hop-by-hop and dropped, and a 101
    to it is a 502."""
    b = RawBackend(lambda req, sock: (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
        b"Connection: upgrade\r\n\r\n"))
    try:
        server = wharf(proxy_conf(b.port), threads=1)
        with server.connect() as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n"
                      b"Connection: Upgrade\r\n\r\n")
            assert read_head(s).startswith(b"HTTP/1.1 502 ")
        assert b.last().header("Upgrade") is None
        assert b.last().header("Connection") == "close"
    finally:
        b.stop()


def test_client_that_never_reads_holds_the_backend_back(wharf):
    """Back-pressure backend -> client: a backend that writes without end
    to a client that reads nothing is stopped by TCP once the socket
    buffers and the channel (64 KiB) are full; the router does not buffer
    the stream."""
    written = [0]
    stop = threading.Event()

    def flood(req, sock):
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                     b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n")
        sock.settimeout(scaled(3))
        chunk = b"\x82\x7e\xff\xff" + b"z" * 65535
        try:
            while not stop.is_set():
                sock.sendall(chunk)
                written[0] += len(chunk)
        except OSError:
            pass
        return None
    b = RawBackend(flood)
    try:
        server = wharf(proxy_conf(b.port), threads=1)
        with raw_handshake(server) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            assert read_head(s).startswith(b"HTTP/1.1 101 ")
            last = -1
            deadline = time.monotonic() + scaled(30)
            while written[0] != last and time.monotonic() < deadline:
                last = written[0]
                time.sleep(scaled(4))   # the backend's sendall times out
            assert written[0] == last, "the backend was never held back"
            assert written[0] < 64 << 20, written[0]
            stop.set()
    finally:
        stop.set()
        b.stop()


def test_backend_that_never_reads_holds_the_client_back(wharf):
    """Back-pressure client -> backend: a client that writes without end
    into a tunnel whose backend reads nothing is stopped by TCP once the
    buffers on the way are full."""
    stop = threading.Event()

    def sleeper(req, sock):
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                     b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n")
        stop.wait(scaled(60))  # and never reads
        return None
    b = RawBackend(sleeper)
    try:
        server = wharf(proxy_conf(b.port), threads=1)
        with raw_handshake(server) as s:
            assert read_head(s).startswith(b"HTTP/1.1 101 ")
            s.settimeout(scaled(3))
            chunk = b"\x82\xfe\xff\xff\x00\x00\x00\x00" + b"z" * 65535
            sent = 0
            with pytest.raises(socket.timeout):
                while sent < 256 << 20:
                    sent += s.send(chunk)
            assert sent < 64 << 20, sent
    finally:
        stop.set()
        b.stop()


@pytest.mark.parametrize("value", [0, -1, "1"])
def test_tunnel_timeout_validated(wharf, value):
    server = wharf(proxy_conf(9), threads=1)
    r = server.api().put("/config/routes/0/action/proxy_settings",
                         {"tunnel_timeout": value})
    assert r.status == 400, r.body
