"""WSGI apps for test_app_router.py: the router's side of applications
(bodies both ways, crashes, slow requests, process identity)."""

import os
import time

CHUNK = 64 * 1024


def _pattern(n):
    block = bytes((i * 7) % 251 for i in range(CHUNK))
    while n > 0:
        k = min(n, CHUNK)
        yield block[:k]
        n -= k


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    pid = str(os.getpid())
    if path == "/upload":
        stream = environ["wsgi.input"]
        total = 0
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            total += len(data)
        body = str(total).encode()
        start_response("200 OK", [("Content-Length", str(len(body))),
                                  ("X-Pid", pid)])
        return [body]
    if path == "/download":
        n = int(query)
        start_response("200 OK", [("Content-Length", str(n)),
                                  ("X-Pid", pid)])
        return _pattern(n)
    if path == "/crash":
        os._exit(3)
    if path == "/slow":
        time.sleep(float(query or "1"))
    body = b"hello " + pid.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("X-Pid", pid),
                              ("X-Env", os.environ.get("ROUTER_TEST", ""))])
    return [body]
