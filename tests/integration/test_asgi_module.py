"""The Python module's ASGI side in a real app process (the runtime of
src/apps/app_rt.c and build/modules/python3.11.wharf.so, run by
build/app-host) against a scripted router speaking app_proto.h
(lib/app_router.py): scopes, streamed bodies both ways with the windows,
disconnects, concurrency, lifespan and state, errors, and WebSocket
framing with the checks of RFC 6455.  test_asgi.py runs the same apps
through the whole server."""

import asyncio
import hashlib
import json
import os
import select
import socket
import struct
import threading

import pytest

from lib.app_router import (TIMEOUT, AppProcess, LEN_NONE, REQ_ABORT,
                            REQ_ACK, REQ_END, REQ_UPGRADE, RESP_ACK,
                            RESP_BODY, RESP_END, Response)
from lib.wharf import SAN, WHARF_BIN

APPS = os.path.join(os.path.dirname(__file__), "apps", "asgi")
BUILD = os.path.dirname(WHARF_BIN) if WHARF_BIN else ""
HOST = os.path.join(BUILD, "app-host")
MODULE = os.path.join(BUILD, "modules", "python3.11.wharf.so")


@pytest.fixture
def app(tmp_path):
    if not (os.access(HOST, os.X_OK) and os.path.exists(MODULE)):
        pytest.skip("needs build/app-host (the runtime) and the module")
    started = []

    def start(module, **conf):
        c = {"type": "python", "path": APPS, "module": module,
             "protocol": conf.pop("protocol", "asgi")}
        c.update(conf)
        env = dict(os.environ)
        env.update(conf.get("environment", {}))
        if SAN:
            # libpython is not instrumented and keeps its memory at exit.
            env["ASAN_OPTIONS"] = "detect_leaks=0"
        p = AppProcess(HOST, MODULE, c, str(tmp_path / ("app%d.log"
                                                        % len(started))),
                       env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            p.close()


def test_scope_and_state_free_app(app):
    a = app("scope")
    concurrency, pid = a.ready()
    assert concurrency == 128 and pid == a.proc.pid
    st = a.request("GET", "/a%20b?x=1&y", headers=[("Host", "localhost"),
                                                  ("X-Mixed-Case", "V")])
    r = a.response(st)
    assert r.status == 200 and r.end == 0
    assert r.header(b"content-length") == str(len(r.body)).encode()
    s = json.loads(r.body)
    assert s["type"] == "http"
    assert s["asgi"] == {"version": "3.0", "spec_version": "2.1"}
    assert s["http_version"] == "1.1" and s["method"] == "GET"
    assert s["scheme"] == "http"
    assert s["raw_path"] == "/a%20b" and s["query_string"] == "x=1&y"
    assert s["root_path"] == ""
    assert s["headers"] == [["host", "localhost"], ["x-mixed-case", "V"]]
    assert s["client"] == ["127.0.0.1", 40000]
    assert s["server"] == ["127.0.0.1", 8080]
    assert s["extensions"] == {"http.response.pathsend": {}}
    assert s["body_size"] == 0 and s["body_pieces"] == 1
    st = a.request("GET", "/", tls=True)
    assert json.loads(a.response(st).body)["scheme"] == "https"
    rc, log = a.close()
    assert rc == 0
    # The app raised for the lifespan scope: tolerated, logged at info.
    assert "[info]" in log and "ASGI Lifespan processing exception" in log


def test_request_body_streams_with_acks(app):
    a = app("scope")
    a.ready()
    data = os.urandom(3 * 1024 * 1024 + 17)  # over ten windows
    st = a.request("PUT", "/up", flags=0, content_length=LEN_NONE)
    assert a.body(st, data)
    a.send(REQ_END, st)
    s = json.loads(a.response(st).body)
    assert s["body_size"] == len(data)
    assert s["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert s["body_pieces"] > 3  # it came in pieces, not as one buffer
    # Known length: the end is known without REQ_END.
    st = a.request("POST", "/p", body=b"x" * 1000, flags=0,
                   content_length=3000)
    assert a.body(st, b"y" * 2000)
    s = json.loads(a.response(st).body)
    assert s["body_size"] == 3000
    assert a.close()[0] == 0


def test_response_streams_within_the_window(app):
    a = app("stream")
    a.ready()
    st = a.request("GET", "/?n=200&size=10000")  # 2 MB, 200 sends
    # Without acknowledgements the app may send one window, no more.
    head = a.head(st)
    assert head.status == 200 and head.header(b"content-length") is None
    got = len(head.body)
    while True:
        try:
            type_, s, payload, _ = a.recv(timeout=1.5)
        except TimeoutError:
            break
        assert type_ == RESP_BODY, type_
        got += len(payload)
    assert 0 < got <= 256 * 1024
    a.send(RESP_ACK, st, struct.pack("<Q", got))  # it goes on
    r = a.response(st, r=Response())
    assert got + len(r.body) == 2000000 and r.end == 0
    st = a.request("GET", "/?n=3&size=10&length=1")
    r = a.response(st)
    assert r.body == b"\0" * 10 + b"\1" * 10 + b"\2" * 10
    assert r.header(b"content-length") == b"30"
    assert a.close()[0] == 0


def test_disconnect_reaches_the_app(app, tmp_path):
    a = app("disconnect")
    a.ready()
    mark = tmp_path / "mark"
    st = a.request("GET", "/?file=%s" % mark)
    assert a.head(st).status == 200
    a.send(REQ_ABORT, st)
    r = a.response(st)
    assert r.end == 1
    for _ in range(100):
        if mark.exists() and mark.read_text():
            break
        import time
        time.sleep(0.05)
    assert mark.read_text() == "http.disconnect"
    assert a.close()[0] == 0


def test_many_requests_at_once_in_one_worker(app):
    a = app("together")
    a.ready()
    streams = [a.request("GET", "/?k=50") for _ in range(50)]
    for st in streams:  # each waits until all 50 are in the app at once
        assert a.response(st).body == b"together"
    assert a.close()[0] == 0


def test_errors_get_500_and_tracebacks(app):
    a = app("errors")
    a.ready()
    want = {"/raise": (500, b"", 0), "/nothing": (500, b"", 0),
            "/bad-message": (500, b"", 0), "/too-long": (500, b"", 0),
            "/raise-after-head": (200, b"12345", 1), "/ok": (201, b"ok", 0)}
    for path, (status, body, end) in want.items():
        r = a.response(a.request("GET", path))
        assert (r.status, r.body, r.end) == (status, body, end), path
    rc, log = a.close()
    assert rc == 0  # the process survived every one of them
    assert "ValueError: boom before the head" in log
    assert "ValueError: boom in the body" in log
    assert "Expected ASGI message 'http.response.start'" in log
    assert "Response content longer than Content-Length" in log
    assert "ASGI callable returned without starting response" in log


def test_lifespan_state_and_shutdown(app, tmp_path):
    mark = tmp_path / "shutdown"
    a = app("lifespan", environment={"ASGI_SHUTDOWN_FILE": str(mark)})
    _, pid = a.ready()
    for _ in range(2):  # each request gets its own copy of the state
        assert a.response(a.request()).body == b"42 %d" % pid
    assert not mark.exists()
    rc, log = a.close()
    assert rc == 0 and mark.read_text() == "shutdown"


def test_lifespan_startup_failed_fails_the_start(app):
    a = app("lifespan", environment={"ASGI_STARTUP_FAIL": "1"})
    with pytest.raises(EOFError):
        a.ready()
    rc, log = a.close()
    assert rc == 1
    assert "Application startup failed" in log
    assert "startup refused by the test" in log


def test_asgi2_and_detection(app):
    a = app("legacy", protocol=None)
    a.ready()
    assert a.response(a.request()).body == b"asgi2"
    rc, log = a.close()
    assert rc == 0 and "ASGI Lifespan processing exception" in log


def test_pathsend_is_a_file(app, tmp_path):
    f = tmp_path / "big.bin"
    data = os.urandom(700000)
    f.write_bytes(data)
    a = app("pathsend")
    a.ready()
    r = a.response(a.request("GET", "/?file=%s" % f))
    assert r.status == 200 and r.body == data
    assert r.header(b"content-length") == b"700000"
    assert a.close()[0] == 0


# ---- WebSocket --------------------------------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3


def frame(op, payload, fin=True, mask=b"\x11\x22\x33\x44", rsv=0):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | op])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    if mask is None:
        return bytes([head[0], head[1] & 0x7f]) + head[2:] + payload
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big")
              ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


def parse_frames(buf):
    out = []
    while len(buf) >= 2:
        assert buf[1] & 0x80 == 0, "server frames are not masked"
        op, n, off = buf[0] & 0x0f, buf[1] & 0x7f, 2
        if n == 126:
            n, off = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127:
            n, off = struct.unpack(">Q", buf[2:10])[0], 10
        if len(buf) < off + n:
            break
        out.append((op, buf[off:off + n]))
        buf = buf[off + n:]
    return out, buf


class WS:
    def __init__(self, a, path, extra=()):
        self.a = a
        headers = [("Host", "localhost"), ("Upgrade", "websocket"),
                   ("Connection", "Upgrade"), ("Sec-WebSocket-Key", KEY),
                   ("Sec-WebSocket-Version", "13")] + list(extra)
        self.st = a.request("GET", path, headers=headers, flags=REQ_UPGRADE,
                            content_length=LEN_NONE)
        self.head = a.head(self.st)
        self.buf = b""
        self.unacked = 0
        self.end = None

    def send(self, data):
        return self.a.body(self.st, data)

    def frames(self, want=1):
        out = []
        while len(out) < want and self.end is None:
            type_, st, payload, _ = self.a.recv_for(self.st)
            if type_ == RESP_BODY:
                self.buf += payload
                self.unacked += len(payload)
                if self.unacked >= 128 * 1024:  # the window reopens
                    self.a.send(RESP_ACK, self.st,
                                struct.pack("<Q", self.unacked))
                    self.unacked = 0
                got, self.buf = parse_frames(self.buf)
                out += got
            elif type_ == RESP_END:
                self.end = struct.unpack("<I", payload)[0]
            else:
                assert type_ == REQ_ACK, type_
        return out


def close_code(payload):
    return struct.unpack(">H", payload[:2])[0]


def test_ws_handshake_echo_fragments_ping(app):
    a = app("websocket")
    a.ready()
    ws = WS(a, "/echo")
    assert ws.head.status == 101
    assert ws.head.header(b"sec-websocket-accept") == ACCEPT
    assert ws.head.header(b"upgrade") == b"websocket"
    assert ws.head.header(b"x-scheme") == b"ws"
    ws.send(frame(1, "héllo".encode()))
    assert ws.frames() == [(1, "héllo".encode())]
    # A fragmented text with a ping between its fragments, and a code
    # point split across two of them.
    ws.send(frame(1, b"fr\xc3", fin=False) + frame(9, b"are you there")
            + frame(0, b"\xa9g", fin=False) + frame(10, b"unsolicited")
            + frame(0, b"ment"))
    assert ws.frames(2) == [(10, b"are you there"), (1, "frégment".encode())]
    big = os.urandom(600000)  # over two windows, in one frame
    ws.send(frame(2, big))
    assert ws.frames() == [(2, big)]
    ws.send(frame(8, struct.pack(">H", 1000) + b"done"))
    f = ws.frames(5)
    assert [(op, close_code(p)) for op, p in f] == [(8, 1000)]
    assert ws.end == 0
    assert a.close()[0] == 0


@pytest.mark.parametrize("data,code", [
    (frame(1, b"\xff\xfe"), 1007),                  # text, not UTF-8
    (frame(1, b"\xce", fin=False) + frame(0, b"x"), 1007),
    (frame(1, b"x", rsv=0x40), 1002),               # RSV1 without extension
    (frame(3, b"x"), 1002),                         # reserved opcode
    (frame(1, b"x", mask=None), 1002),              # unmasked
    (frame(0, b"x"), 1002),                         # lone continuation
    (frame(1, b"a", fin=False) + frame(1, b"b"), 1002),  # interleaved
    (frame(9, b"x" * 126), 1002),                   # control over 125
    (frame(9, b"x", fin=False), 1002),              # fragmented control
    (frame(8, b"\x03"), 1002),                      # 1-byte close
    (frame(8, struct.pack(">H", 1005)), 1002),      # reserved close code
    (frame(8, struct.pack(">H", 999)), 1002),
    (frame(8, struct.pack(">H", 1000) + b"\xff"), 1007),  # bad reason
    (frame(2, b"x" * (1024 * 1024 + 1)), 1009),     # over max frame size
], ids=["bad-utf8", "bad-utf8-fragments", "rsv1", "opcode-3", "unmasked",
        "lone-continuation", "interleaved", "big-ping", "fragmented-ping",
        "close-1-byte", "close-1005", "close-999", "close-bad-reason",
        "frame-too-big"])
def test_ws_protocol_errors_close_with_their_code(app, data, code):
    a = app("websocket")
    a.ready()
    ws = WS(a, "/echo")
    ws.send(data)
    f = ws.frames(5)
    assert [(op, close_code(p)) for op, p in f] == [(8, code)]
    assert ws.end == 0
    assert a.close()[0] == 0


def test_ws_message_limit_over_fragments(app):
    a = app("websocket")
    a.ready()
    ws = WS(a, "/echo")
    piece = b"z" * (1024 * 1024)  # each frame within the frame limit
    for i in range(17):  # the 17th fragment goes past 16 MiB
        if not ws.send(frame(0 if i else 2, piece, fin=False)):
            break
    f = ws.frames(5)
    assert [(op, close_code(p)) for op, p in f] == [(8, 1009)]
    assert a.close()[0] == 0


def test_ws_close_refuse_subprotocol_raise_abort(app):
    a = app("websocket")
    a.ready()
    ws = WS(a, "/close?code=4001")
    f = ws.frames(5)
    assert f == [(8, struct.pack(">H", 4001) + b"bye")] and ws.end == 0
    ws = WS(a, "/refuse")
    assert ws.head.status == 403
    ws = WS(a, "/proto", [("Sec-WebSocket-Protocol", "chat, superchat")])
    assert ws.head.header(b"sec-websocket-protocol") == b"chat"
    a.send(REQ_ABORT, ws.st)  # the client is gone
    ws.frames(1)
    assert ws.end == 1
    ws = WS(a, "/raise")
    f = ws.frames(5)
    assert [(op, close_code(p)) for op, p in f] == [(8, 1011)]
    rc, log = a.close()
    assert rc == 0 and "RuntimeError: boom in a websocket" in log
    assert "Sanitizer" not in log and "runtime error" not in log


# ---- a standard client through a minimal router ----------------------------

def ws_bridge(a, listener):
    """Plays the router for one WebSocket connection: the client's
    handshake goes to the app as REQ_HEAD with REQ_UPGRADE, its bytes as
    REQ_BODY, the app's RESP_BODY bytes go out raw."""
    conn, _ = listener.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(4096)
    raw, rest = head.split(b"\r\n\r\n", 1)
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ")
    fields = [tuple(line.split(": ", 1)) for line in lines[1:]]
    st = a.request(method, target, headers=fields, flags=REQ_UPGRADE,
                   content_length=LEN_NONE)
    r = a.head(st)
    conn.sendall(b"HTTP/1.1 %d Switching Protocols\r\n" % r.status
                 + b"".join(n + b": " + v + b"\r\n" for n, v in r.headers)
                 + b"\r\n")
    if rest:
        a.body(st, rest)
    unacked = 0
    while True:
        if not any(m[1] == st for m in a.pending):
            ready, _, _ = select.select([conn, a.sock], [], [], TIMEOUT)
            if conn in ready:
                data = conn.recv(65536)
                if not data:
                    a.send(REQ_ABORT, st)
                    break
                a.body(st, data)
                continue
        type_, _, payload, _ = a.recv_for(st)
        if type_ == REQ_ACK:
            a.inflight[st] -= struct.unpack("<Q", payload)[0]
        elif type_ == RESP_BODY:
            conn.sendall(payload)
            unacked += len(payload)
            if unacked >= 128 * 1024:
                a.send(RESP_ACK, st, struct.pack("<Q", unacked))
                unacked = 0
        elif type_ == RESP_END:
            break
    conn.close()


def test_ws_standard_client(app):
    """python3-websockets against the module, through a minimal router."""
    websockets = pytest.importorskip("websockets")
    a = app("websocket")
    a.ready()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    url = "ws://127.0.0.1:%d" % listener.getsockname()[1]

    async def echo():
        async with websockets.connect(url + "/echo", max_size=None) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(["frag", "ment", "ed"])  # sent as fragments
            assert await ws.recv() == "fragmented"
            big = os.urandom(700000)
            await ws.send(big)
            assert await ws.recv() == big
            await asyncio.wait_for(await ws.ping(b"p"), TIMEOUT)
        assert ws.close_code == 1000

    async def app_close():
        async with websockets.connect(url + "/close?code=4001") as ws:
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert e.value.code == 4001 and e.value.reason == "bye"

    async def too_big():
        async with websockets.connect(url + "/echo", max_size=None) as ws:
            await ws.send(b"x" * (1024 * 1024 + 1))
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert e.value.code == 1009

    for session in (echo, app_close, too_big):
        t = threading.Thread(target=ws_bridge, args=(a, listener))
        t.start()
        asyncio.new_event_loop().run_until_complete(session())
        t.join(TIMEOUT)
        assert not t.is_alive()
    listener.close()
    assert a.close()[0] == 0
