"""A real Starlette application (python3-starlette,
tests/integration/apps/starlette_app) under Unit's `applications` config:
ASGI HTTP with streamed bodies, WebSocket (python3-websockets as the
client) and lifespan.

Run against Wharf; with WHARF_REF_UNITD=/path/to/unitd the same tests run
against NGINX Unit too (lib/apps.py).
"""

import asyncio
import hashlib
import json
import os
import socket

import pytest
import requests

from lib import apps
from lib.wharf import scaled

app_server = apps.server_fixture()

TIMEOUT = scaled(30)


@pytest.fixture(autouse=True)
def _starlette_installed():
    apps.require_modules("starlette", "websockets")


@pytest.fixture
def marks():
    """Where the app's lifespan writes startup-PID and shutdown-PID."""
    path = apps.shared_dir("starlette-marks-", writable=True)
    yield path
    apps.remove_tree(path)


def starlette_config(marks, **options):
    app = apps.python_app("starlette_app", module="app", callable="app",
                          environment={"WHARF_LIFESPAN_DIR": marks})
    app.update(options)
    return {
        "listeners": {"127.0.0.1:{port}": {"pass": "applications/star"}},
        "applications": {"star": app},
    }


@pytest.fixture
def star(app_server, marks):
    return app_server.start(starlette_config(marks))


def get(srv, path, **kw):
    kw.setdefault("timeout", TIMEOUT)
    return requests.get(srv.url(path), **kw)


def ws_url(srv, path):
    return "ws://127.0.0.1:%d%s" % (srv.port, path)


def run(coro):
    """Runs a websockets coroutine with a bound on the whole exchange."""
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def connect(srv, path, **kw):
    import websockets
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("close_timeout", TIMEOUT)
    kw.setdefault("max_size", 16 * 1024 * 1024)
    return websockets.connect(ws_url(srv, path), **kw)


# ---------------------------------------------------------------- HTTP


def test_hello(star):
    r = get(star, "/")
    assert r.status_code == 200
    assert r.text == "Hello from Starlette\n"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_path_and_query(star):
    r = get(star, "/items/42?q=caf%C3%A9")
    assert r.status_code == 200
    assert r.json() == {"id": 42, "q": "caf\u00e9"}
    assert get(star, "/items/x").status_code == 404


def test_scope(star):
    r = requests.post(star.url("/scope?a=1&b=%20"), data=b"x",
                      headers={"X-Test": "yes"}, timeout=TIMEOUT)
    assert r.status_code == 200
    s = r.json()
    assert s["type"] == "http"
    assert s["asgi"]["version"] == "3.0"
    assert s["http_version"] == "1.1"
    assert s["method"] == "POST"
    assert s["scheme"] == "http"
    assert s["path"] == "/scope"
    assert s["raw_path"] == "/scope"
    assert s["root_path"] in ("", None)    # optional, default "" (ASGI)
    assert s["query_string"] == "a=1&b=%20"
    headers = dict(s["headers"])
    assert headers["x-test"] == "yes"
    assert headers["host"] == "127.0.0.1:%d" % star.port
    assert headers["content-length"] == "1"
    assert s["client"][0] == "127.0.0.1"
    assert s["server"] == ["127.0.0.1", star.port]


def test_request_body_streamed_in(star):
    body = os.urandom(8 * 1024 * 1024)
    r = apps.bounded(lambda: requests.post(star.url("/digest"), data=body,
                                           timeout=TIMEOUT), 60)
    assert r.status_code == 200
    got = r.json()
    assert got["size"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    # The app saw the body as a stream of pieces, not one message (Unit
    # reads the whole body before it calls the app).
    if not apps.is_unit(star):
        assert got["chunks"] > 1


def test_request_body_chunked(app_server, marks):
    """With Unit's chunked_transform, a chunked body reaches the app (Unit
    answers 411 without it)."""
    conf = starlette_config(marks)
    conf["settings"] = {"http": {"chunked_transform": True}}
    if app_server.kind == "unit":
        # Seen with Unit 1.35: a 7000-byte chunk gets 400 and a 100 kB one
        # kills its router (SIGSEGV).
        pytest.skip("Unit 1.35's chunked_transform fails on large chunks")
    star = app_server.start(conf)
    pieces = [os.urandom(100000) for _ in range(20)]
    r = apps.bounded(lambda: requests.post(
        star.url("/digest"), data=iter(pieces),     # a generator: chunked
        timeout=TIMEOUT), 60)
    assert r.status_code == 200
    whole = b"".join(pieces)
    assert r.json()["size"] == len(whole)
    assert r.json()["sha256"] == hashlib.sha256(whole).hexdigest()


def test_echo_body(star):
    body = bytes(range(256)) * 1000
    r = apps.bounded(lambda: requests.post(star.url("/echo"), data=body,
                                           timeout=TIMEOUT), 60)
    assert r.status_code == 200
    assert r.headers["X-Body-Length"] == str(len(body))
    assert r.content == body


def read_until(sock, data, marker):
    """Reads sock until data holds marker; returns data.  (A raw reader:
    urllib3 waits for a chunk's trailing CRLF, which Unit sends only with
    the next chunk.)"""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed before %r: %r" % (marker, data)
        data += chunk
    return data


def open_gated(srv, key):
    """GET /gated/KEY on a raw socket, read up to the first line."""
    s = srv.connect(timeout=TIMEOUT)
    s.sendall(("GET /gated/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Connection: close\r\n\r\n" % key).encode())
    data = read_until(s, b"", b"first\n")
    assert data.startswith(b"HTTP/1.1 200"), data
    return s, data


def test_response_streamed_out(star):
    """The first line reaches the client while the app still waits for
    another request to release the second: only a streamed response
    can do that."""
    key = "k%d" % os.getpid()
    s, data = open_gated(star, key)
    with s:
        assert get(star, "/release/" + key).text == "released\n"
        data = read_until(s, data, b"second\n")


def test_streaming_response(star):
    r = get(star, "/stream/500")
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert len(lines) == 500 and lines[-1] == "chunk 499"


def test_large_response(star):
    size = 16 * 1024 * 1024
    r = get(star, "/big/%d" % size)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(size)
    assert len(r.content) == size and r.content.count(b"y") == size


def test_exception_is_500_and_process_survives(star):
    pid = get(star, "/state").json()["pid"]
    r = get(star, "/boom")
    assert r.status_code == 500
    assert star.wait_log(r"starlette-boom-marker", timeout=10), \
        star.log_text()[-3000:]
    assert get(star, "/state").json()["pid"] == pid


def test_concurrent_requests_one_process(star):
    """ASGI serves requests concurrently in one process: 20 gated
    responses are all open at once, then released."""
    n = 20
    keys = ["c%d-%d" % (os.getpid(), i) for i in range(n)]
    opened = [open_gated(star, key) for key in keys]
    try:
        # Every response has sent its first line; release them in reverse.
        for key, (s, data) in reversed(list(zip(keys, opened))):
            assert get(star, "/release/" + key).status_code == 200
            read_until(s, data, b"second\n")
    finally:
        for s, _ in opened:
            s.close()


# ---------------------------------------------------------------- lifespan


def marks_of(marks, phase):
    return sorted(int(n.split("-")[1]) for n in os.listdir(marks)
                  if n.startswith(phase + "-"))


def test_lifespan_startup_and_shutdown(star, marks):
    st = get(star, "/state").json()
    assert st["started"] is True and st["startups"] == 1
    assert marks_of(marks, "startup") == [st["pid"]]
    assert marks_of(marks, "shutdown") == []
    # Removing the application stops its process, which runs the
    # lifespan shutdown first.
    reply = star.api().put("/config", {
        "listeners": {"127.0.0.1:%d" % star.port: {"pass": "routes"}},
        "routes": [{"action": {"return": 204}}],
        "applications": {},
    })
    assert reply.status == 200, reply
    apps.wait_for(lambda: marks_of(marks, "shutdown") == [st["pid"]],
                  timeout=20, what="the lifespan shutdown mark")
    apps.wait_for(lambda: not os.path.exists("/proc/%d" % st["pid"]),
                  timeout=20, what="the app process to exit")
    assert get(star, "/").status_code == 204


# ---------------------------------------------------------------- WebSocket


def test_ws_echo_text_and_binary(star):
    async def go():
        async with connect(star, "/ws/echo") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send("caf\u00e9 \U0001F600")
            assert await ws.recv() == "caf\u00e9 \U0001F600"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
            await ws.send(b"")
            assert await ws.recv() == b""
    run(go())


def test_ws_large_and_fragmented_messages(star):
    # Below Unit's default websocket max_frame_size (1 MiB).
    big = os.urandom(1000 * 1000)
    parts = ["part%d-" % i * 100 for i in range(50)]

    async def go():
        async with connect(star, "/ws/echo") as ws:
            await ws.send(big)
            assert await ws.recv() == big
            # An iterable is sent as one message in many frames.
            await ws.send(parts)
            assert await ws.recv() == "".join(parts)
            await ws.send([b"ab", b"cd", b"ef"])
            assert await ws.recv() == b"abcdef"
    run(go())


def test_ws_ping_pong(star):
    async def go():
        async with connect(star, "/ws/echo", ping_interval=None) as ws:
            for i in range(5):
                waiter = await ws.ping(b"p%d" % i)
                await asyncio.wait_for(waiter, TIMEOUT)
            await ws.send("after pings")
            assert await ws.recv() == "after pings"
    run(go())


@pytest.mark.parametrize("code,reason", [(1000, ""), (1001, "going"),
                                         (4001, "custom bye")])
def test_ws_server_close_codes(star, code, reason):
    import websockets

    async def go():
        async with connect(star, "/ws/echo") as ws:
            await ws.send("close:%d:%s" % (code, reason))
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason
    got_code, got_reason = run(go())
    assert got_code == code
    # The ASGI close reason (spec 2.3): Unit 1.35 drops it.
    assert got_reason == reason or (apps.is_unit(star) and got_reason == "")


def test_ws_client_close(star):
    async def go():
        async with connect(star, "/ws/echo") as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
            await ws.close(code=1000, reason="client done")
            return ws.close_code
    assert run(go()) == 1000
    # The app process is still there for the next one.
    assert get(star, "/").status_code == 200


def test_ws_handshake_scope_and_subprotocol(star):
    async def go():
        async with connect(star, "/ws/info?x=1",
                           subprotocols=["chat", "superchat"]) as ws:
            info = json.loads(await ws.recv())
            return ws.subprotocol, info
    sub, info = run(go())
    assert sub == "chat"
    assert info["path"] == "/ws/info"
    assert info["query_string"] == "x=1"
    assert info["subprotocols"] == ["chat", "superchat"]
    assert info["scheme"] == "ws"
    assert info["headers"]["host"] == "127.0.0.1:%d" % star.port
    assert info["started"] is True      # lifespan state is shared


def test_ws_many_messages_in_order(star):
    n = 2000

    import websockets

    async def go():
        got = []
        clean = True
        async with connect(star, "/ws/count?n=%d" % n) as ws:
            try:
                while True:
                    got.append(await ws.recv())
            except websockets.ConnectionClosedOK:
                pass
            except websockets.ConnectionClosedError:
                clean = False
            return got, ws.close_code, clean
    got, code, clean = run(go())
    assert got == ["msg %d" % i for i in range(n)]
    assert code == 1000
    # A clean closing handshake (RFC 6455 7.1.1: the server waits for
    # the client's Close); Unit drops the connection after its own.
    assert clean or apps.is_unit(star)


def test_ws_rejected_handshake(star):
    import websockets

    async def go():
        async with connect(star, "/ws/reject"):
            pass
    with pytest.raises(websockets.InvalidStatusCode) as e:
        run(go())
    # ASGI: a close before the accept is a 403; Unit 1.35 answers 503.
    assert e.value.status_code == (503 if apps.is_unit(star) else 403)


def test_ws_concurrent_connections(star):
    async def one(i):
        async with connect(star, "/ws/echo") as ws:
            for j in range(20):
                await ws.send("c%d m%d" % (i, j))
                assert await ws.recv() == "c%d m%d" % (i, j)
        return i

    async def go():
        return await asyncio.gather(*(one(i) for i in range(20)))
    assert run(go()) == list(range(20))


def test_ws_upgrade_by_hand(star):
    """The handshake at the byte level: 101, the accept key of RFC 6455
    section 4.2.2, and an unmasked text frame from the server."""
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    want = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    with star.connect(timeout=TIMEOUT) as s:
        s.sendall(("GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "\r\n" % key).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 101")
        fields = {k.strip().lower(): v.strip() for k, v in
                  (line.split(b":", 1) for line in lines[1:])}
        assert fields[b"upgrade"].lower() == b"websocket"
        assert fields[b"sec-websocket-accept"] == want
        # A masked text frame "hi"; the echo comes back unmasked.
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi"))
        s.sendall(b"\x81\x82" + mask + payload)
        while len(rest) < 4:
            chunk = s.recv(4096)
            assert chunk
            rest += chunk
        assert rest[:4] == b"\x81\x02hi"
        s.shutdown(socket.SHUT_WR)
