"""The app process runtime (src/apps/app_rt.c, app_main.c) seen through the
whole server: the real python module, main's spawning, the router.

QUIT to an app process lets its in-flight request finish, then it exits
with 0; TERM ends it at once, even while it waits for request body; a
large upload and download stream through the windows with the app
process's memory bounded; targets reach the module in config order.
The finer protocol cases (fragments, acks, garbage, dispatch mode) are
the unit tests' (tests/unit/apps/test_app_rt.c)."""

import hashlib
import os
import signal
import socket
import threading
import time

import pytest
import requests

from lib.wharf import require_python_module, scaled

TIMEOUT = scaled(60)

APP = r'''
import hashlib, time

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        time.sleep(float(environ["QUERY_STRING"] or "1"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow done"]
    if path == "/sum":
        inp = environ["wsgi.input"]
        h, n = hashlib.sha1(), 0
        while True:
            b = inp.read(100000)
            if not b:
                break
            h.update(b)
            n += len(b)
        out = ("%d %s" % (n, h.hexdigest())).encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    if path == "/down":
        size = int(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Length", str(size))])
        chunk = b"z" * 65536
        def gen():
            left = size
            while left > 0:
                k = min(left, len(chunk))
                left -= k
                yield chunk[:k]
        return gen()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello " + path.encode()]

def one(environ, start_response):
    start_response("200 OK", [])
    return [b"target one"]

def two(environ, start_response):
    start_response("200 OK", [])
    return [b"target two"]
'''


@pytest.fixture
def app_dir(tmp_path):
    d = tmp_path / "rtapp"
    d.mkdir(mode=0o755)
    (d / "rtapp.py").write_text(APP)
    (d / "rtapp.py").chmod(0o644)
    tmp_path.chmod(0o755)
    return str(d)


def start(wharf, app_dir, **extra):
    app = {"type": "python", "path": app_dir, "module": "rtapp",
           "processes": 1}
    app.update(extra)
    conf = {
        "settings": {"http": {"max_body_size": 1 << 30}},
        "listeners": {"127.0.0.1:{port}": {"pass": "applications/rt"}},
        "applications": {"rt": app},
    }
    server = wharf(conf)
    require_python_module(server)
    return server


def url(server, path):
    return "http://127.0.0.1:%d%s" % (server.port, path)


def app_pid(server):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        pids = server.app_pids("rt")
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError("no app process")


def wait_gone(pid, timeout):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if not os.path.exists("/proc/%d" % pid):
            return True
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    time.sleep(0.05)
                    continue
        except OSError:
            return True
        time.sleep(0.05)
    return False


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_quit_finishes_the_request_in_flight(wharf, app_dir):
    server = start(wharf, app_dir)
    assert requests.get(url(server, "/"), timeout=TIMEOUT).text == "hello /"
    pid = app_pid(server)
    result = {}

    def slow():
        r = requests.get(url(server, "/slow?1"), timeout=TIMEOUT)
        result["status"], result["text"] = r.status_code, r.text

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(scaled(0.3))  # the app is inside the request now
    os.kill(pid, signal.SIGQUIT)
    t.join(TIMEOUT)
    assert result == {"status": 200, "text": "slow done"}
    assert wait_gone(pid, 10), "the app process did not exit on QUIT"
    assert server.wait_log(r"process %d exited with code 0" % pid,
                           timeout=5.0)


def test_term_ends_a_worker_waiting_for_body(wharf, app_dir):
    server = start(wharf, app_dir)
    assert requests.get(url(server, "/"), timeout=TIMEOUT).status_code == 200
    pid = app_pid(server)
    # A body announced and never sent: the worker waits in read().
    s = socket.create_connection(("127.0.0.1", server.port),
                                 timeout=TIMEOUT)
    try:
        s.sendall(b"POST /sum HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 1000\r\n\r\n" + b"a" * 10)
        time.sleep(scaled(0.3))
        os.kill(pid, signal.SIGTERM)
        assert wait_gone(pid, 10), "the app process did not exit on TERM"
    finally:
        s.close()
    assert server.wait_log(r"process %d exited with code 0" % pid,
                           timeout=5.0)


def test_large_bodies_keep_the_app_small(wharf, app_dir):
    server = start(wharf, app_dir)
    size = 64 << 20
    data = os.urandom(1 << 20) * 64
    r = requests.post(url(server, "/sum"), data=data, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.text == "%d %s" % (size, hashlib.sha1(data).hexdigest())
    r = requests.get(url(server, "/down?%d" % (256 << 20)), stream=True,
                     timeout=TIMEOUT)
    got = sum(len(c) for c in r.iter_content(1 << 20))
    assert got == 256 << 20
    # The interpreter and the app take ~15 MB; a body held whole would
    # take 64 or 256 more.  (ASan's quarantine keeps freed memory, so a
    # sanitizer build is not measured.)
    if not os.environ.get("WHARF_SAN"):
        assert vm_hwm_kb(app_pid(server)) < 48 * 1024


def test_targets_reach_the_module_in_config_order(wharf, app_dir):
    conf = {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [{"match": {"uri": "/two"},
                    "action": {"pass": "applications/rt/two"}},
                   {"action": {"pass": "applications/rt/one"}}],
        "applications": {"rt": {
            "type": "python", "path": app_dir, "processes": 1,
            "targets": {"one": {"module": "rtapp", "callable": "one"},
                        "two": {"module": "rtapp", "callable": "two"}}}},
    }
    server = wharf(conf)
    require_python_module(server)
    assert requests.get(url(server, "/two"), timeout=TIMEOUT).text == \
        "target two"
    assert requests.get(url(server, "/x"), timeout=TIMEOUT).text == \
        "target one"
