"""Minimal HTTP/1.x client over raw sockets, for malformed input, pipelining
and byte-level checks that http.client and requests would normalize away."""

import select
import socket
import time

from .wharf import scaled


class Response:
    def __init__(self, status, reason, version, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers          # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        return "<Response %d %r %r body=%d bytes>" % (
            self.status, self.reason, self.headers, len(self.body))


class Reader:
    """Buffered reader on a socket; every read is bounded by a deadline."""

    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.buf = b""
        self.timeout = scaled(timeout)
        self.eof = False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no data before the deadline")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker, deadline):
        while marker not in self.buf:
            if not self._fill(deadline):
                raise EOFError("connection closed before %r; got %r"
                               % (marker, self.buf[:200]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError("connection closed after %d of %d bytes"
                               % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self, deadline):
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def read_response(self, head_request=False, timeout=None):
        deadline = time.monotonic() + (scaled(timeout) if timeout
                                       else self.timeout)
        head = self.read_until(b"\r\n\r\n", deadline)
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.decode("latin-1"),
                            value.strip().decode("latin-1")))
        resp = Response(int(code), reason.decode("latin-1"),
                        version.decode("latin-1"), headers, b"", head)
        if head_request or resp.status in (204, 304) or resp.status < 200:
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if "chunked" in te:
            resp.body = self._read_chunked(deadline)
        elif cl is not None:
            resp.body = self.read_exact(int(cl), deadline)
        else:
            resp.body = self.read_to_eof(deadline)
        return resp

    def _read_chunked(self, deadline):
        body = b""
        for _ in range(1000000):
            size_line = self.read_until(b"\r\n", deadline)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while self.read_until(b"\r\n", deadline) != b"\r\n":
                    pass
                return body
            body += self.read_exact(size, deadline)
            self.read_exact(2, deadline)
        raise AssertionError("too many chunks")


def request(host="localhost", method="GET", path="/", version="HTTP/1.1",
            headers=(), body=b""):
    """Build request bytes. headers: iterable of (name, value) or raw lines."""
    lines = ["%s %s %s" % (method, path, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    for h in headers:
        lines.append(h if isinstance(h, str) else "%s: %s" % h)
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + body


def exchange(sock, data, head_request=False, timeout=None):
    """Send raw bytes, read one response."""
    sock.sendall(data)
    return Reader(sock).read_response(head_request=head_request,
                                      timeout=timeout)


def wait_closed(sock, timeout=10.0):
    """True if the peer closes (EOF or reset) within timeout; data read on
    the way is discarded."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True


def readable(sock, timeout):
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)
