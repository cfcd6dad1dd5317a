"""A client for Wharf's (Unit's) control API, over a unix socket or TCP.

`Control(address)` takes the --control value ("unix:PATH" or "IP:PORT").
Every call opens a new connection (the controller closes each one after its
reply) and returns a `Reply` with the status, the headers, the raw body and
the decoded JSON (None when the body is not JSON).
"""

import http.client
import json
import socket
import time

from .wharf import scaled


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers      # list of (name, value)
        self.body = body
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except ValueError:
            self.json = None

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def __repr__(self):
        return "<Reply %d %r>" % (self.status, self.body[:300])


def address_of(control):
    """(family, sockaddr) of a --control value."""
    if control.startswith("unix:"):
        return socket.AF_UNIX, control[len("unix:"):]
    host, port = control.rsplit(":", 1)
    return socket.AF_INET, (host.strip("[]"), int(port))


class Control:
    def __init__(self, control, timeout=30.0):
        self.control = control
        self.family, self.addr = address_of(control)
        self.timeout = scaled(timeout)

    def _conn(self):
        if self.family == socket.AF_UNIX:
            return UnixHTTPConnection(self.addr, self.timeout)
        return http.client.HTTPConnection(self.addr[0], self.addr[1],
                                          timeout=self.timeout)

    def request(self, method, path, body=None, headers=None):
        """One request; body: raw bytes, or any other value (a str too)
        sent as its JSON text."""
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
        conn = self._conn()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, resp.getheaders(), data)
        finally:
            conn.close()

    def get(self, path="/config"):
        return self.request("GET", path)

    def put(self, path, value):
        return self.request("PUT", path, value)

    def post(self, path, value):
        return self.request("POST", path, value)

    def delete(self, path):
        return self.request("DELETE", path)

    def config(self, path="/config"):
        """The decoded JSON of GET path; asserts a 200."""
        r = self.get(path)
        assert r.status == 200, r
        return r.json

    def raw(self, data, timeout=30.0):
        """Send raw bytes on a new connection; return everything read until
        the server closes (the controller closes after every reply)."""
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.settimeout(scaled(timeout))
        try:
            s.connect(self.addr)
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    def ready(self):
        """True when GET / answers 200."""
        try:
            return self.get("/").status == 200
        except (OSError, http.client.HTTPException):
            return False

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if self.ready():
                return True
            time.sleep(0.05)
        return False


def parse_raw_reply(data):
    """(status, {lower-case header name: value}, body) of a raw reply."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
