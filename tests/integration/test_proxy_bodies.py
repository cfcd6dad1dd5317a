"""Bodies through the proxy with bounded memory: a 1 GiB upload and a
1 GiB download (the router's RSS sampled all along), and a slow client
that must hold the backend back instead of making the proxy buffer the
response."""

import socket
import threading
import time

import pytest

from lib.configs import routes_config
from lib.proxy_backends import RawBackend, response, wait_for
from lib.rawhttp import Reader, exchange, request
from lib.wharf import SAN, fd_targets, process_tree, scaled

GIB = 1 << 30
RSS_GROWTH = 48 << 20  # allowed growth of the router's RSS meanwhile
BLOCK = b"0123456789abcdef" * 4096  # 64 KiB


def rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def router_pid(server):
    for pid in process_tree(server.pid):
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"router" in f.read():
                return pid
    raise AssertionError("no router process")


class RssWatch:
    def __init__(self, pid):
        self.pid, self.base, self.stop = pid, rss(pid), False
        self.max = self.base
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            self.max = max(self.max, rss(self.pid))
            time.sleep(0.05)

    def growth(self):
        self.stop = True
        self.thread.join()
        return self.max - self.base


class StreamBackend:
    """One connection at a time: reads the request head and a body of
    Content-Length bytes or chunked (counting, not keeping it), then
    answers with `size` bytes of BLOCK-repeated body."""

    def __init__(self, size=0, pace=None):
        self.size, self.pace = size, pace
        self.received = 0
        self.sent = 0
        self.done = threading.Event()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.url = "http://127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        with c:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += c.recv(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            self.received = len(buf)
            while self.received < n:
                d = c.recv(1 << 20)
                if not d:
                    return
                self.received += len(d)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
                      % self.size)
            try:
                while self.sent < self.size:
                    k = min(len(BLOCK), self.size - self.sent)
                    c.sendall(BLOCK[:k])
                    self.sent += k
            except OSError:
                pass
            self.done.set()

    def stop(self):
        self.lsock.close()
        self.thread.join(5)


@pytest.fixture
def stream_backend():
    made = []

    def make(**kw):
        b = StreamBackend(**kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def big_config(url):
    conf = routes_config([{"action": {"proxy": url}}],
                         http={"max_body_size": 2 * GIB})
    return conf


SIZE = GIB if not SAN else 64 << 20


def test_upload_1gib_bounded_memory(wharf, stream_backend):
    b = stream_backend(size=2)
    server = wharf(big_config(b.url), threads=1)
    watch = RssWatch(router_pid(server))
    with server.connect(timeout=scaled(120)) as s:
        s.sendall(request(method="POST", headers=[
            ("Content-Length", str(SIZE)), ("Connection", "close")]))
        left = SIZE
        while left > 0:
            k = min(left, len(BLOCK))
            s.sendall(BLOCK[:k])
            left -= k
        r = Reader(s, timeout=120).read_response()
    grown = watch.growth()
    assert (r.status, r.body) == (200, BLOCK[:2])
    assert b.received == SIZE
    if not SAN:
        assert grown < RSS_GROWTH, grown


def test_download_1gib_bounded_memory(wharf, stream_backend):
    b = stream_backend(size=SIZE)
    server = wharf(big_config(b.url), threads=1)
    watch = RssWatch(router_pid(server))
    got = 0
    with server.connect(timeout=scaled(120)) as s:
        s.sendall(request(headers=[("Connection", "close")]))
        rd = Reader(s, timeout=120)
        head = rd.read_until(b"\r\n\r\n", time.monotonic() + scaled(60))
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Length: %d" % SIZE in head
        got = len(rd.buf)
        rd.buf = b""
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
    grown = watch.growth()
    assert got == SIZE
    if not SAN:
        assert grown < RSS_GROWTH, grown


def test_slow_client_holds_the_backend_back(wharf, stream_backend):
    """A client that reads nothing: the proxy takes at most its channel and
    socket buffers from the backend, so the backend is held back by TCP
    instead of the proxy buffering the whole response."""
    total = 256 << 20
    b = stream_backend(size=total)
    server = wharf(big_config(b.url), threads=1)
    pid = router_pid(server)
    base = rss(pid)
    with server.connect(timeout=scaled(60)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        s.sendall(request(headers=[("Connection", "close")]))
        time.sleep(scaled(2))
        sent = b.sent
        time.sleep(scaled(1))
        assert b.sent == sent, "the backend is not held back"
        assert sent < 32 << 20, sent
        if not SAN:
            assert rss(pid) - base < 16 << 20
        # then the client reads it all
        got = 0
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
    assert b.done.wait(scaled(30))
    assert got > total


def router_pipes(pid):
    return sorted(t for t in fd_targets(pid).values()
                  if t.startswith("pipe:"))


def test_body_spliced_through_one_pipe_per_connection(wharf):
    """A Content-Length body between two plain sockets is spliced through
    a pipe (no copy in the router): the client connection's pipe is made
    by its first such response, kept for the next ones, and closed with
    the connection; a client gone mid-body takes its pipe (and the bytes
    in it) away too."""
    body = bytes(range(256)) * 4096           # 1 MiB
    seen = []

    def handler(req, sock):
        seen.append(req.target)
        return response(200, body if req.target != "/small" else b"s")
    b = RawBackend(handler, keep_alive=True)
    try:
        server = wharf(routes_config([{"action": {
            "proxy": b.url, "proxy_settings": {"idle_connections": 4}}}]),
            threads=1)
        pid = router_pid(server)
        before = router_pipes(pid)
        with server.connect(timeout=scaled(30)) as s:
            r = exchange(s, request(path="/small"))
            assert r.body == b"s"
            assert router_pipes(pid) == before    # whole: no pipe
            for _ in range(3):
                r = exchange(s, request(path="/big"))
                assert (r.status, r.body) == (200, body)
                pipes = router_pipes(pid)
                assert len(pipes) == len(before) + 2, pipes
        assert wait_for(lambda: router_pipes(pid) == before, scaled(10))
        # Gone with bytes in flight: the pipe goes with the connection.
        s = server.connect(timeout=scaled(30))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        s.sendall(request(path="/big"))
        s.recv(4096)
        assert wait_for(lambda: len(router_pipes(pid)) == len(before) + 2,
                        scaled(10))
        s.close()
        assert wait_for(lambda: router_pipes(pid) == before, scaled(10))
        with server.connect(timeout=scaled(30)) as s:
            r = exchange(s, request(path="/big",
                                    headers=[("Connection", "close")]))
            assert (r.status, r.body) == (200, body)
    finally:
        b.stop()


def test_body_not_spliced_to_a_head_request(wharf):
    """HEAD: the head alone; no body bytes move, and no pipe."""
    b = RawBackend(lambda req, sock: response(
        200, b"", headers=[("Content-Length", str(1 << 20))]),
        keep_alive=True)
    try:
        server = wharf(routes_config([{"action": {"proxy": b.url}}]))
        pid = router_pid(server)
        before = router_pipes(pid)
        with server.connect(timeout=scaled(30)) as s:
            r = exchange(s, request(method="HEAD"), head_request=True)
            assert r.status == 200
            assert r.header("Content-Length") == str(1 << 20)
            assert router_pipes(pid) == before
    finally:
        b.stop()
