"""ASGI applications through the whole server: a listener passes to an
application of "type": "python", main spawns its process, the router
exchanges with it.  The same small apps as test_asgi_module.py
(apps/asgi/), checked with real clients: requests over HTTP/1.1 and
python3-websockets for WebSocket."""

import asyncio
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time

import pytest
import requests

from lib.wharf import scaled

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "asgi")


def app_config(module, **extra):
    app = {"type": "python", "path": APPS, "module": module}
    app.update(extra)
    return {
        "listeners": {"127.0.0.1:{port}": {"pass": "applications/app"}},
        "applications": {"app": app},
    }


@pytest.fixture
def asgi(wharf):
    """Starts a server with one ASGI application "app" on its port."""
    def start(module, **extra):
        return wharf(app_config(module, **extra))
    return start


def get(server, path, **kw):
    kw.setdefault("timeout", scaled(30))
    return requests.get(server.url(path), **kw)


def test_scope_through_the_server(asgi):
    server = asgi("scope")
    r = get(server, "/a%20b?x=1", headers={"X-Test": "yes"})
    assert r.status_code == 200
    s = r.json()
    assert s["type"] == "http" and s["method"] == "GET"
    assert s["path"] == "/a b" and s["raw_path"] == "/a%20b"
    assert s["query_string"] == "x=1" and s["http_version"] == "1.1"
    assert ["x-test", "yes"] in s["headers"]
    assert s["client"][0] == "127.0.0.1" and s["client"][1] > 0
    assert s["server"] == ["127.0.0.1", server.port]


@pytest.mark.parametrize("head,host", [
    (b"GET / HTTP/1.0\r\n\r\n", None),
    (b"GET / HTTP/1.1\r\nHost: ExAmple.COM\r\nConnection: close\r\n\r\n",
     "ExAmple.COM"),
    (b"GET / HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: close"
     b"\r\n\r\n", "Example.com:8080"),
], ids=["no-host", "mixed-case", "port"])
def test_host_header_and_server(asgi, head, host):
    """As Unit 1.35: the host header as the client sent it (none without
    one), and scope["server"] the listener's address and port."""
    import socket
    server = asgi("scope")
    with socket.create_connection(("127.0.0.1", server.port),
                                  timeout=scaled(30)) as s:
        s.sendall(head)
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            out += data
    head_out, _, body = out.partition(b"\r\n\r\n")
    assert b" 200 " in head_out.split(b"\r\n")[0], out
    if b"chunked" in head_out.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[:int(size, 16)]
    s = json.loads(body)
    hosts = [v for n, v in s["headers"] if n == "host"]
    assert hosts == ([host] if host is not None else []), s["headers"]
    assert s["server"] == ["127.0.0.1", server.port]


def test_chunked_transform_headers(wharf):
    """With chunked_transform, as Unit 1.35: no transfer-encoding header,
    a content-length one last, and the whole body."""
    import socket
    conf = app_config("scope")
    conf["settings"] = {"http": {"chunked_transform": True}}
    server = wharf(conf)
    with socket.create_connection(("127.0.0.1", server.port),
                                  timeout=scaled(30)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                  b"chunked\r\nConnection: close\r\n\r\n"
                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            out += data
    head, _, body = out.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], out
    if b"chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[:int(size, 16)]
    scope = json.loads(body)
    assert scope["headers"] == [["host", "x"], ["connection", "close"],
                                ["content-length", "11"]]
    assert scope["body_size"] == 11


def test_upload_and_download_stream(asgi):
    server = asgi("scope")
    data = os.urandom(8 * 1024 * 1024)

    def chunks():
        for i in range(0, len(data), 100000):
            yield data[i:i + 100000]

    r = requests.post(server.url("/up"), data=chunks(), timeout=scaled(60))
    s = r.json()
    assert s["body_size"] == len(data) and s["body_pieces"] > 1
    assert s["body_sha256"] == hashlib.sha256(data).hexdigest()

    server2 = asgi("stream")
    r = requests.get(server2.url("/?n=300&size=10000"), stream=True,
                     timeout=scaled(60))
    got = b"".join(r.iter_content(65536))
    assert len(got) == 3000000
    assert r.headers.get("transfer-encoding") == "chunked"


def test_concurrency_in_one_process(asgi):
    server = asgi("together")
    results = []

    def one():
        results.append(get(server, "/?k=20").text)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    assert results == ["together"] * 20


def test_errors_500_and_process_survives(asgi):
    server = asgi("errors")
    assert get(server, "/raise").status_code == 500
    assert get(server, "/nothing").status_code == 500
    assert get(server, "/ok").status_code == 201
    assert "ValueError: boom before the head" in server.log_text()


def test_client_disconnect_reaches_app(asgi):
    server = asgi("disconnect")
    d = tempfile.mkdtemp(prefix="wharf-asgi-")
    os.chmod(d, 0o777)  # the app process may run as nobody
    mark = os.path.join(d, "mark")
    s = server.connect()
    s.sendall(b"GET /?file=%s HTTP/1.1\r\nHost: x\r\n\r\n" % mark.encode())
    s.recv(100)
    s.close()
    deadline = time.time() + scaled(10)
    text = ""
    while time.time() < deadline and not text:
        if os.path.exists(mark):
            with open(mark) as f:
                text = f.read()
        time.sleep(0.05)
    shutil.rmtree(d, ignore_errors=True)
    assert text == "http.disconnect"


def test_lifespan_state_through_the_server(asgi):
    server = asgi("lifespan")
    a = get(server, "/").text.split()
    b = get(server, "/").text.split()
    assert a[0] == b[0] == "42"


def test_lifespan_startup_failure_fails_the_start(asgi):
    server = asgi("scope")
    reply = server.api().put("/config/applications/app",
                             {"type": "python", "path": APPS,
                              "module": "lifespan_fail"})
    server.log_ignore.append(r"Application startup failed")
    if reply.status == 200:
        r = requests.get(server.url("/"), timeout=scaled(30))
        assert r.status_code in (502, 503) or r.text != "never"
    assert server.wait_log(r"Application startup failed",
                           timeout=scaled(10))
    assert "startup refused by the test" in server.log_text()


def ws_run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_websocket_with_a_standard_client(asgi):
    websockets = pytest.importorskip("websockets")
    server = asgi("websocket")
    url = "ws://127.0.0.1:%d" % server.port

    async def session():
        async with websockets.connect(url + "/echo",
                                      max_size=None) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
            big = os.urandom(900000)
            await ws.send(big)
            assert await ws.recv() == big
            # Fragmented by the client: an iterable is sent as fragments.
            await ws.send(["frag", "ment", "ed"])
            assert await ws.recv() == "fragmented"
            pong = await ws.ping(b"p")
            await asyncio.wait_for(pong, scaled(10))
        async with websockets.connect(url + "/close?code=4001") as ws:
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert e.value.code == 4001 and e.value.reason == "bye"
        async with websockets.connect(
                url + "/proto", subprotocols=["chat", "superchat"]) as ws:
            assert ws.subprotocol == "chat"
        with pytest.raises(websockets.InvalidStatusCode) as e:
            async with websockets.connect(url + "/refuse"):
                pass
        assert e.value.status_code == 403
        async with websockets.connect(url + "/echo",
                                      max_size=None) as ws:
            await ws.send(b"x" * (1024 * 1024 + 1))  # over max frame size
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert e.value.code == 1009

    ws_run(session())


def test_websocket_invalid_utf8_from_a_raw_client(asgi):
    server = asgi("websocket")
    s = server.connect()
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    mask = b"\x01\x02\x03\x04"
    payload = bytes(c ^ mask[i % 4] for i, c in enumerate(b"\xff\xfe"))
    s.sendall(b"\x81\x82" + mask + payload)
    rest = head.split(b"\r\n\r\n", 1)[1]
    s.settimeout(scaled(10))
    while len(rest) < 4:
        chunk = s.recv(100)
        if not chunk:
            break
        rest += chunk
    assert rest[:4] == b"\x88\x02\x03\xef"  # close 1007
    s.close()


def test_pathsend_through_the_server(asgi, tmp_path):
    # The app process may run as nobody: a directory it can read.
    d = tempfile.mkdtemp(prefix="wharf-asgi-")
    os.chmod(d, 0o755)
    f = os.path.join(d, "file.bin")
    data = os.urandom(2 * 1024 * 1024 + 3)
    with open(f, "wb") as out:
        out.write(data)
    os.chmod(f, 0o644)
    server = asgi("pathsend")
    r = get(server, "/?file=%s" % f)
    shutil.rmtree(d, ignore_errors=True)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-length"] == str(len(data))


def test_threads_each_with_its_loop_and_lifespan(asgi):
    # Two worker threads, each with its own event loop and lifespan: every
    # request sees its thread's startup state.
    server = asgi("lifespan", threads=2)
    results = []

    def one():
        results.append(get(server, "/").text.split()[0])

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(60))
    assert results == ["42"] * 40


def test_lifespan_shutdown_on_graceful_stop(asgi):
    d = tempfile.mkdtemp(prefix="wharf-asgi-")
    os.chmod(d, 0o777)  # the app process may run as nobody
    mark = os.path.join(d, "shutdown")
    server = asgi("lifespan", environment={"ASGI_SHUTDOWN_FILE": mark})
    assert get(server, "/").text.split()[0] == "42"
    assert not os.path.exists(mark)
    server.stopped_by_test = True
    server.proc.send_signal(signal.SIGQUIT)
    server.proc.wait(scaled(30))
    with open(mark) as f:
        assert f.read() == "shutdown"
    shutil.rmtree(d, ignore_errors=True)


def test_request_task_and_context(asgi):
    # The first step of a request runs at once within the dispatch (as an
    # eager task): asyncio.current_task() is its Task there already, the
    # same after every wait, and a contextvar set before the first wait
    # is still set after it.
    server = asgi("tasks")
    for _ in range(3):
        r = get(server, "/waits")
        assert r.status_code == 200
        assert r.json() == {"task": True, "same": True, "var": "/waits",
                            "done": False, "made": 0}
        r = get(server, "/at-once")
        assert r.json() == {"task": True, "made": 0}


def test_request_task_done_when_answered_in_its_first_step(asgi):
    # A request that answers without waiting ends in its first step: its
    # Task is then done (result None), its done callbacks run through the
    # loop, and it is no longer among the loop's tasks, as if the loop had
    # run its step (the runtime runs that step itself, at once).
    server = asgi("tasks")
    for _ in range(3):
        r = get(server, "/keep")
        assert r.status_code == 200 and r.json() == {"done": False}
        r = get(server, "/kept")
        assert r.json() == {"done": True, "result": None, "calls": [None],
                            "listed": False}


def test_request_task_cancelled_in_its_first_step(asgi):
    # cancel() before the Task's first step ran: the coroutine gets
    # CancelledError where it waits, as in any asyncio task.
    server = asgi("tasks")
    r = get(server, "/cancel")
    assert r.status_code == 200 and r.json() == {"cancelled": True}
    assert get(server, "/at-once").status_code == 200


def test_task_factory_of_the_app_is_used(asgi):
    # An app that sets a task factory gets its requests' tasks from it.
    server = asgi("tasks", environment={"ASGI_TASK_FACTORY": "1"})
    made = [get(server, "/waits").json()["made"] for _ in range(3)]
    assert made[0] >= 1 and made[1] > made[0] and made[2] > made[1]
    assert get(server, "/at-once").json()["task"] is True
