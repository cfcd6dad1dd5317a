"""Real backends for the proxy tests, run in threads of the test process.

- RawBackend: a raw socket HTTP/1.1 server whose answer is a Python
  function of the parsed request; it sees the bytes exactly as the proxy
  sent them (for header checks, broken and slow responses, keep-alive).
- HttpServerBackend: Python's http.server (ThreadingHTTPServer) with an
  echo handler, a backend the tests did not write the HTTP side of; with
  cert= it speaks TLS (Python's ssl), for the https:// proxy tests.

Every backend listens on 127.0.0.1 on a free port and is stopped by its
stop() (the fixtures do it); stop() closes every connection it accepted.
"""

import http.server
import socket
import ssl
import threading
import time


class Request:
    def __init__(self, head, body):
        self.head = head                       # raw bytes, final CRLF CRLF
        lines = head.decode("latin-1").split("\r\n")
        self.request_line = lines[0]
        self.method, self.target, self.version = lines[0].split(" ", 2)
        self.headers = []                      # (name, value) in order
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers.append((name, value.strip()))
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def names(self):
        return [k.lower() for k, _ in self.headers]


def response(status=200, body=b"", headers=(), reason="OK"):
    head = "HTTP/1.1 %d %s\r\n" % (status, reason)
    for k, v in headers:
        head += "%s: %s\r\n" % (k, v)
    if not any(k.lower() in ("content-length", "transfer-encoding")
               for k, _ in headers):
        head += "Content-Length: %d\r\n" % len(body)
    return head.encode("latin-1") + b"\r\n" + body


class _Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError
        self.buf += data

    def until(self, marker):
        while marker not in self.buf:
            self.fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class RawBackend:
    """handler(req, sock) returns the response bytes to send (then the
    connection stays open for the next request when keep_alive), or None
    when it wrote (or refused to write) on sock itself; it may raise to
    drop the connection.  read_body=False leaves the body unread."""

    def __init__(self, handler, keep_alive=False, read_body=True,
                 family=socket.AF_INET, path=None, port=0):
        self.handler = handler
        self.keep_alive = keep_alive
        self.read_body = read_body
        self.requests = []
        self.accepted = 0
        self.open = 0          # connections not closed yet
        self.lock = threading.Lock()
        self.conns = []
        if family == socket.AF_UNIX:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(path)
            self.address = "unix:" + path
        else:
            self.lsock = socket.socket(family, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
            self.lsock.bind((host, port))
            self.port = self.lsock.getsockname()[1]
            self.address = ("[::1]:%d" if family == socket.AF_INET6
                            else "127.0.0.1:%d") % self.port
        self.lsock.listen(128)
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://" + self.address

    def _accept(self):
        while not self.stopped:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open += 1
                self.conns.append(sock)
            threading.Thread(target=self._serve, args=(sock,),
                             daemon=True).start()

    def _read_body(self, conn, req_head):
        req = Request(req_head, b"")
        te = (req.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size = int(conn.until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while conn.until(b"\r\n") != b"\r\n":
                        pass
                    return body, True
                body += conn.exact(size)
                conn.exact(2)
        n = int(req.header("Content-Length") or 0)
        return conn.exact(n), False

    def _serve(self, sock):
        conn = _Conn(sock)
        nth = 0
        try:
            while True:
                head = conn.until(b"\r\n\r\n")
                body, chunked = (self._read_body(conn, head)
                                 if self.read_body else (b"", False))
                req = Request(head, body)
                req.chunked = chunked
                req.nth = nth          # requests before it on its connection
                nth += 1
                with self.lock:
                    self.requests.append(req)
                out = self.handler(req, sock)
                if out is not None:
                    sock.sendall(out)
                if not self.keep_alive or out is None:
                    break
        except (EOFError, OSError, ValueError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with self.lock:
                self.open -= 1

    def last(self):
        with self.lock:
            return self.requests[-1]

    def stop(self):
        self.stopped = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.thread.join(5)


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = ("%s %s\n" % (self.command, self.path)).encode() + body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


class HttpServerBackend:
    """Python's http.server with handler (default _EchoHandler) on
    127.0.0.1, a free port unless port is given.  With cert (a
    lib.certs.Cert) it serves TLS: snis lists the server name each
    handshake sent (None: none), and with client_ca (a Cert) it requires a
    client certificate that CA issued."""

    def __init__(self, port=0, handler=_EchoHandler, cert=None,
                 client_ca=None):
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                                   handler)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.address = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.address
        self.snis = []
        if cert is not None:
            self._start_tls(cert, client_ca)
        self.thread = threading.Thread(target=self.srv.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def _start_tls(self, cert, client_ca):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert.crt, cert.key)
        if client_ca is not None:  # mTLS: a client certificate or no deal
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca.crt)
        ctx.sni_callback = lambda s, name, c: self.snis.append(name)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.url = "https://" + self.address

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(5)


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()
