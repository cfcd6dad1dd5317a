"""WebSocket over HTTP/2 (RFC 8441): Wharf announces
SETTINGS_ENABLE_CONNECT_PROTOCOL, an extended CONNECT with
":protocol: websocket" becomes the HTTP/1.1 opening handshake the
endpoints know (with a Sec-WebSocket-Key of Wharf's), and the 101 of an
ASGI app or of a proxied h1 WebSocket backend becomes a 200 that opens the
stream as the tunnel: DATA both ways under h2 flow control, END_STREAM and
RST_STREAM end it.  The client is Python's h2 (h2raw.py) with WebSocket
frames made here (RFC 6455 5.2)."""

import os
import struct
import time

import h2.events
import h2.settings
import pytest

from h2raw import H2Client
from lib.certs import CertSet
from lib.wharf import free_port, scaled
from test_proxy_ws import WsBackend, proxy_conf
from test_ws_tunnel import APPS

OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8


def ws_frame(opcode, payload, mask=b"\x5a\x13\xc4\x7e"):
    """A masked client frame of any size."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
    rep = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(rep, "big")
            ).to_bytes(n, "big") if n else b""
    return head + mask + body


def ws_parse(buf):
    """(opcode, payload, rest) of the first whole server frame, or None."""
    if len(buf) < 2:
        return None
    op, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
    assert buf[1] & 0x80 == 0, "a server frame is never masked"
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < off + n:
        return None
    return op, buf[off:off + n], buf[off + n:]


class WsStream:
    """One extended CONNECT on an H2Client."""

    def __init__(self, cli, path, headers=(), protocol="websocket",
                 scheme="http"):
        self.cli = cli
        wait_connect_setting(cli)
        self.sid = cli.conn.get_next_available_stream_id()
        hdrs = [(":method", "CONNECT"), (":protocol", protocol),
                (":scheme", scheme), (":path", path),
                (":authority", "localhost"),
                ("sec-websocket-version", "13")] + list(headers)
        cli.conn.send_headers(self.sid, hdrs, end_stream=False)
        cli.flush()
        cli.responses[self.sid] = {"status": None, "headers": [],
                                   "body": b"", "ended": False}
        self.seen = 0  # bytes of body already parsed

    @property
    def resp(self):
        return self.cli.responses[self.sid]

    def wait_head(self):
        while self.resp["status"] is None and self.sid not in self.cli.resets:
            assert self.cli.read_some(), "connection closed"
        return self.resp["status"]

    def send(self, opcode, payload, end=False):
        self.cli.send_body(self.sid, ws_frame(opcode, payload), end=end)

    def recv(self):
        """The next whole frame: (opcode, payload)."""
        while True:
            got = ws_parse(self.resp["body"][self.seen:])
            if got is not None:
                op, payload, rest = got
                self.seen = len(self.resp["body"]) - len(rest)
                return op, payload
            assert not self.resp["ended"], "stream ended mid-frame"
            assert self.sid not in self.cli.resets, self.cli.resets
            assert self.cli.read_some(), "connection closed"

    def wait_end(self):
        while not self.resp["ended"] and self.sid not in self.cli.resets:
            assert self.cli.read_some(), "connection closed"


def wait_connect_setting(cli):
    deadline = time.monotonic() + scaled(10)
    while not cli.remote_settings_seen:
        assert time.monotonic() < deadline
        assert cli.read_some()
    code = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
    assert cli.conn.remote_settings.get(code) == 1


def asgi_conf(listener, http=None):
    conf = {
        "listeners": {"127.0.0.1:{port}": listener},
        "routes": [
            {"match": {"uri": "/ret"}, "action": {"return": 204}},
            {"match": {"uri": ["/websocket.py", "/missing"]},
             "action": {"share": APPS + "$uri"}},
            {"action": {"pass": "applications/ws"}},
        ],
        "applications": {"ws": {"type": "python", "path": APPS,
                                "module": "websocket"}},
    }
    if http is not None:
        conf["settings"] = {"http": http}
    return conf


@pytest.fixture
def asgi_h2c(wharf):
    return wharf(asgi_conf({"pass": "routes", "h2c": True}), threads=1)


def echo_round(ws, sizes=(5, 300, 70000)):
    for n in sizes:
        msg = os.urandom(n)
        ws.send(OP_BINARY, msg)
        assert ws.recv() == (OP_BINARY, msg)
    ws.send(OP_TEXT, "héllo".encode())
    assert ws.recv() == (OP_TEXT, "héllo".encode())


def client_close(ws, code=1000):
    """Close handshake started by the client, then END_STREAM both ways."""
    ws.send(OP_CLOSE, struct.pack("!H", code) + b"done")
    op, payload = ws.recv()
    assert op == OP_CLOSE and struct.unpack("!H", payload[:2])[0] == code
    ws.cli.conn.end_stream(ws.sid)
    ws.cli.flush()
    ws.wait_end()
    assert ws.resp["ended"] and ws.sid not in ws.cli.resets


def test_asgi_echo_h2c(asgi_h2c):
    cli = H2Client(asgi_h2c.port)
    try:
        ws = WsStream(cli, "/echo")
        assert ws.wait_head() == 200
        names = [k for k, _ in ws.resp["headers"]]
        assert "sec-websocket-accept" not in names
        assert "upgrade" not in names and "connection" not in names
        assert dict(ws.resp["headers"]).get("x-scheme") == "ws"
        echo_round(ws)
        client_close(ws)
    finally:
        cli.close()


def test_normal_request_served_meanwhile(asgi_h2c):
    cli = H2Client(asgi_h2c.port)
    try:
        ws = WsStream(cli, "/echo")
        assert ws.wait_head() == 200
        ws.send(OP_TEXT, b"one")
        assert ws.recv() == (OP_TEXT, b"one")
        sid = cli.request("/ret")
        assert cli.wait(sid)["status"] == 204
        ws2 = WsStream(cli, "/echo")  # a second tunnel beside the first
        assert ws2.wait_head() == 200
        ws2.send(OP_TEXT, b"two")
        ws.send(OP_TEXT, b"three")
        assert ws2.recv() == (OP_TEXT, b"two")
        assert ws.recv() == (OP_TEXT, b"three")
        client_close(ws2)
        client_close(ws)
    finally:
        cli.close()


def test_server_closes_first(asgi_h2c):
    cli = H2Client(asgi_h2c.port)
    try:
        ws = WsStream(cli, "/close?code=4001")
        assert ws.wait_head() == 200
        op, payload = ws.recv()
        assert op == OP_CLOSE
        assert struct.unpack("!H", payload[:2])[0] == 4001
        assert payload[2:] == b"bye"
        ws.wait_end()  # END_STREAM once the app is done
        assert ws.resp["ended"] and ws.sid not in cli.resets
        # The client's answer is taken (dropped) and the stream closes.
        ws.send(OP_CLOSE, struct.pack("!H", 4001), end=True)
        sid = cli.request("/ret")
        assert cli.wait(sid)["status"] == 204
    finally:
        cli.close()


def test_client_end_stream_and_reset_end_the_tunnel(asgi_h2c):
    cli = H2Client(asgi_h2c.port)
    try:
        # END_STREAM without a Close frame: the app hears a disconnect,
        # ends, and the stream ends from Wharf's side too.
        ws = WsStream(cli, "/echo")
        assert ws.wait_head() == 200
        ws.send(OP_TEXT, b"x", end=True)
        assert ws.recv() == (OP_TEXT, b"x")
        ws.wait_end()
        assert ws.resp["ended"] and ws.sid not in cli.resets
        # RST_STREAM: the tunnel is torn down; the connection lives on.
        ws = WsStream(cli, "/echo")
        assert ws.wait_head() == 200
        ws.send(OP_TEXT, b"y")
        assert ws.recv() == (OP_TEXT, b"y")
        cli.conn.reset_stream(ws.sid, error_code=8)  # CANCEL
        cli.flush()
        for _ in range(3):
            sid = cli.request("/ret")
            assert cli.wait(sid)["status"] == 204
        ws = WsStream(cli, "/echo")
        assert ws.wait_head() == 200
        echo_round(ws, sizes=(10,))
        client_close(ws)
    finally:
        cli.close()


def test_large_message_under_small_windows(wharf):
    # Wharf's stream window 1024 bytes (the client's DATA), the client's
    # 1024 too (Wharf's DATA): 1 MiB each way in 1 KiB steps.
    server = wharf(asgi_conf({"pass": "routes", "h2c": True},
                             {"h2": {"initial_window_size": 1024}}),
                   threads=1)
    code = h2.settings.SettingCodes.INITIAL_WINDOW_SIZE
    cli = H2Client(server.port, settings={code: 1024})
    try:
        ws = WsStream(cli, "/echo")
        assert ws.wait_head() == 200
        msg = os.urandom(1 << 20)
        ws.send(OP_BINARY, msg)
        assert ws.recv() == (OP_BINARY, msg)
        client_close(ws)
    finally:
        cli.close()


def test_handshake_answers(asgi_h2c):
    cli = H2Client(asgi_h2c.port)
    try:
        # An app that refuses before accepting: 403, as on h1.
        ws = WsStream(cli, "/refuse")
        assert ws.wait_head() == 403
        # Another protocol: 501.
        ws = WsStream(cli, "/echo", protocol="webtransport")
        assert ws.wait_head() == 501
        # Another WebSocket version: 426, as on h1.
        sid = cli.conn.get_next_available_stream_id()
        cli.conn.send_headers(sid, [
            (":method", "CONNECT"), (":protocol", "websocket"),
            (":scheme", "http"), (":path", "/echo"),
            (":authority", "localhost"), ("sec-websocket-version", "8")])
        cli.flush()
        cli.responses[sid] = {"status": None, "headers": [], "body": b"",
                              "ended": False}
        assert cli.wait(sid)["status"] == 426
        # A plain CONNECT (authority only): Wharf is no forward proxy.
        # (Python's h2 4.1 wants a :path here: its check is turned off.)
        sid = cli.conn.get_next_available_stream_id()
        cli.conn.config.validate_outbound_headers = False
        cli.conn.send_headers(sid, [(":method", "CONNECT"),
                                    (":authority", "example.com:443")],
                              end_stream=True)
        cli.conn.config.validate_outbound_headers = True
        cli.flush()
        cli.responses[sid] = {"status": None, "headers": [], "body": b"",
                              "ended": False}
        assert cli.wait(sid)["status"] == 405
        # A share answers a handshake as a plain GET: its 200 would open
        # the tunnel, so it becomes 501; its 404 stays.
        ws = WsStream(cli, "/websocket.py")
        assert ws.wait_head() == 501
        ws = WsStream(cli, "/missing")
        assert ws.wait_head() == 404
        # The connection still serves.
        sid = cli.request("/ret")
        assert cli.wait(sid)["status"] == 204
    finally:
        cli.close()


# ---- TLS --------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return CertSet(tmp_path_factory.mktemp("certs"))


def test_asgi_echo_tls_h2(wharf, certs):
    server = wharf(asgi_conf({"pass": "routes"}), threads=1)
    api = server.api()
    r = api.request("PUT", "/certificates/rsa", certs.rsa.bundle(certs.ca))
    assert r.status == 200, r
    tls_port = free_port()
    conf = asgi_conf({"pass": "routes"})
    conf["listeners"] = {
        "127.0.0.1:%d" % server.port: {"pass": "routes"},
        "127.0.0.1:%d" % tls_port: {"pass": "routes",
                                    "tls": {"certificate": "rsa"}}}
    r = api.request("PUT", "/config", conf)
    assert r.status == 200, r
    server.fd_baseline = server.settled_fd_count()
    cli = H2Client(tls_port, tls=True)
    try:
        ws = WsStream(cli, "/echo", scheme="https")
        assert ws.wait_head() == 200
        assert dict(ws.resp["headers"]).get("x-scheme") == "wss"
        echo_round(ws, sizes=(5, 100000))
        sid = cli.request("/ret")
        assert cli.wait(sid)["status"] == 204
        client_close(ws)
    finally:
        cli.close()


# ---- proxy ------------------------------------------------------------------

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


def h2c_proxy(wharf, port):
    conf = proxy_conf(port)
    for lconf in conf["listeners"].values():
        lconf["h2c"] = True
    return wharf(conf, threads=1)


def wait_lines(pred, seconds=10):
    deadline = time.monotonic() + scaled(seconds)
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_proxy_ws_backend(wharf, ws_backend):
    b = ws_backend()
    server = h2c_proxy(wharf, b.port)
    cli = H2Client(server.port)
    try:
        ws = WsStream(cli, "/echo", headers=[("x-mark", "h2")])
        assert ws.wait_head() == 200
        names = [k for k, _ in ws.resp["headers"]]
        assert "sec-websocket-accept" not in names
        echo_round(ws, sizes=(5, 300, 200000))
        sid = cli.request("/echo")  # a plain GET beside the tunnel
        assert cli.wait(sid)["status"] == 426  # the backend's answer
        client_close(ws)
        assert wait_lines(lambda: b.closed() == ["closed /echo 1000"])
        head = dict((k, v) for k, v in b.opened()[0])
        # The backend saw an HTTP/1.1 handshake with a key of Wharf's.
        assert head["upgrade"].lower() == "websocket"
        assert "upgrade" in head["connection"].lower()
        assert len(head["sec-websocket-key"]) == 24
        assert head["sec-websocket-version"] == "13"
        assert head["x-mark"] == "h2"
    finally:
        cli.close()


def test_proxy_ws_backend_closes_and_refuses(wharf, ws_backend):
    b = ws_backend()
    server = h2c_proxy(wharf, b.port)
    cli = H2Client(server.port)
    try:
        ws = WsStream(cli, "/close")
        assert ws.wait_head() == 200
        ws.send(OP_TEXT, b"last")
        assert ws.recv() == (OP_TEXT, b"last")
        op, payload = ws.recv()
        assert op == OP_CLOSE and struct.unpack("!H", payload[:2])[0] == 4000
        ws.send(OP_CLOSE, payload[:2])
        ws.wait_end()
        assert ws.resp["ended"] and ws.sid not in cli.resets
        cli.conn.end_stream(ws.sid)
        cli.flush()
        ws = WsStream(cli, "/refuse")
        assert ws.wait_head() == 403
        ws = WsStream(cli, "/echo")
        assert ws.wait_head() == 200
        cli.conn.reset_stream(ws.sid, error_code=8)
        cli.flush()
        assert wait_lines(lambda: len(b.closed()) == 2)
        sid = cli.request("/echo")
        assert cli.wait(sid)["status"] == 426
    finally:
        cli.close()


def test_proxy_bad_accept_is_502(wharf):
    """A backend whose 101 carries a wrong accept: 502, stream over."""
    import socket
    import threading
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    conns = []

    def serve():
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        conns.append(c)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                return
            data += chunk
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                  b"\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
                  b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    server = h2c_proxy(wharf, port)
    cli = H2Client(server.port)
    try:
        ws = WsStream(cli, "/echo")
        assert ws.wait_head() == 502
        ws.wait_end()
    finally:
        cli.close()
        lsock.close()
        t.join(scaled(10))
        for c in conns:
            c.close()
    assert "without the accept of its key" in server.log_text()
