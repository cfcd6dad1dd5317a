"""The router's side of applications (DESIGN §5, issue 8): requests to
real app processes (the Python module on tests/integration/apps/router),
bodies streamed both ways with bounded router memory, crashes, limits,
the queue, Unit's scaling, restarts and /status.

Every process is observed through /status and /proc; every test stops
what it started (the wharf fixture stops the server by PID, and main
stops its app processes)."""

import os
import socket
import threading
import time

import pytest
import requests

from lib import apps
from lib.wharf import SAN, process_tree, scaled

APP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps",
                       "router")
TIMEOUT = scaled(60)
GIB = 1 << 30
RSS_BOUND = 64 << 20  # the router's RSS while 1 GiB flows through it
# Under SAN=1, ASan keeps freed memory resident in its quarantine (256 MiB
# by default): a small one keeps the RSS bound meaningful.
RSS_ENV = ({"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "")
                             + ":quarantine_size_mb=8").lstrip(":")}
           if SAN else None)


def config(**options):
    app = {"type": "python", "path": APP_DIR, "module": "app"}
    app.update(options)
    return {"listeners": {"127.0.0.1:{port}": {"pass": "applications/t"}},
            "applications": {"t": app},
            "settings": {"http": {"max_body_size": 2 * GIB}}}


def get(srv, path, **kw):
    kw.setdefault("timeout", TIMEOUT)
    return requests.get(srv.url(path), **kw)


def status(srv):
    reply = srv.api().get("/status/applications/t")
    assert reply.status == 200, reply
    return reply.json


def router_pid(srv):
    for pid in process_tree(srv.pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                title = f.read().split(b"\0")[0]
        except OSError:
            continue
        if title.endswith(b": router"):
            return pid
    raise AssertionError("no router process")


def rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssWatch:
    """Samples a process's RSS in a thread; max is the highest seen."""

    def __init__(self, pid):
        self.pid, self.max, self.stop = pid, rss(pid), False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            self.max = max(self.max, rss(self.pid))
            time.sleep(0.05)

    def done(self):
        self.stop = True
        self.thread.join()
        return self.max


def wait_status(srv, pred, what, timeout=20.0):
    return apps.wait_for(lambda: pred(status(srv)), timeout, what)


def test_hello_and_status(wharf):
    srv = wharf(config(processes=1))
    r = get(srv, "/")
    assert r.status_code == 200
    assert r.text.startswith("hello ")
    assert r.headers["Content-Length"] == str(len(r.content))
    assert "Transfer-Encoding" not in r.headers
    st = status(srv)
    assert st["processes"] == {"running": 1, "starting": 0, "idle": 1}
    assert st["requests"] == {"active": 0}
    full = srv.api().get("/status").json
    assert list(full)[0] == "modules"
    assert "python" in full["modules"]


def test_upload_1gib_streams_with_bounded_rss(wharf):
    srv = wharf(config(), env=RSS_ENV)
    get(srv, "/")  # the process is up
    watch = RssWatch(router_pid(srv))
    sock = srv.connect(timeout=TIMEOUT)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
                 b"\r\n\r\n" % GIB)
    block = b"x" * (1 << 20)
    for _ in range(GIB // len(block)):
        sock.sendall(block)
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.endswith(b"%d" % GIB):
        data = sock.recv(65536)
        if not data:
            break
        reply += data
    sock.close()
    peak = watch.done()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert reply.endswith(b"\r\n\r\n%d" % GIB), reply[-200:]
    assert peak < RSS_BOUND, "router RSS reached %d bytes" % peak


def test_download_1gib_streams_with_bounded_rss(wharf):
    srv = wharf(config(), env=RSS_ENV)
    get(srv, "/")
    watch = RssWatch(router_pid(srv))
    r = get(srv, "/download?%d" % GIB, stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(GIB)
    assert "Transfer-Encoding" not in r.headers
    total = 0
    first = None
    for chunk in r.iter_content(1 << 20):
        if first is None:
            first = chunk[:16]
        total += len(chunk)
    peak = watch.done()
    assert total == GIB
    assert first == bytes((i * 7) % 251 for i in range(16))
    assert peak < RSS_BOUND, "router RSS reached %d bytes" % peak


def test_crash_gives_502_and_is_replaced(wharf):
    srv = wharf(config(processes=1))
    before = int(get(srv, "/").headers["X-Pid"])
    r = get(srv, "/crash")
    assert r.status_code == 502
    r = get(srv, "/")
    assert r.status_code == 200
    assert int(r.headers["X-Pid"]) != before
    assert srv.wait_log(r"process %d exited" % before, timeout=10)


def test_timeout_503_leaves_other_requests(wharf):
    srv = wharf(config(processes=2, limits={"timeout": 1}))
    result = {}

    def slow():
        result["slow"] = get(srv, "/slow?4").status_code

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    assert get(srv, "/").status_code == 200  # the other process
    t.join()
    assert result["slow"] == 503
    assert get(srv, "/").status_code == 200


def test_queue_bounds_answer_503(wharf):
    srv = wharf(config(processes=1, queue={"length": 1, "timeout": 1}))
    codes = {}

    def ask(name, path):
        codes[name] = get(srv, path).status_code

    slow = threading.Thread(target=ask, args=("slow", "/slow?3"))
    slow.start()
    time.sleep(0.5)
    queued = threading.Thread(target=ask, args=("queued", "/"))
    queued.start()
    time.sleep(0.3)
    ask("over", "/")  # the queue holds one already
    queued.join()
    slow.join()
    assert codes == {"slow": 200, "queued": 503, "over": 503}, codes


def test_queued_request_gets_the_free_slot(wharf):
    srv = wharf(config(processes=1, queue={"length": 10, "timeout": 30}))
    codes = []

    def ask():
        codes.append(get(srv, "/slow?0.5").status_code)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 4


def test_scaling_spare_max_idle_timeout(wharf):
    srv = wharf(config(processes={"max": 3, "spare": 1, "idle_timeout": 1}))
    wait_status(srv, lambda s: s["processes"]["running"] == 1, "the spare")
    threads = [threading.Thread(target=get, args=(srv, "/slow?3"))
               for _ in range(3)]
    for t in threads:
        t.start()
    wait_status(srv, lambda s: s["processes"]["running"] == 3
                and s["requests"]["active"] == 3, "3 busy processes")
    for t in threads:
        t.join()
    # Idle ones above spare go after idle_timeout; spare stays.
    wait_status(srv, lambda s: s["processes"] == {"running": 1,
                                                  "starting": 0, "idle": 1},
                "back to the spare")
    apps.wait_for(lambda: len(apps.app_pids(srv, "t")) == 1, 15,
                  "the stopped processes to exit")


def test_limits_requests_recycles_gracefully(wharf):
    srv = wharf(config(processes=1, limits={"requests": 3}))
    pids = []
    for _ in range(7):
        r = get(srv, "/")
        assert r.status_code == 200
        pids.append(r.headers["X-Pid"])
    assert len(set(pids[:3])) == 1
    assert pids[3] != pids[0] and len(set(pids[3:6])) == 1
    assert pids[6] not in (pids[0], pids[3])


def test_restart_no_request_fails(wharf):
    srv = wharf(config(processes=1))
    old = get(srv, "/").headers["X-Pid"]
    failures = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            r = get(srv, "/slow?0.05")
            if r.status_code != 200:
                failures.append(r.status_code)

    t = threading.Thread(target=load)
    t.start()
    reply = srv.api().get("/control/applications/t/restart")
    assert reply.status == 200, reply
    assert reply.json == {"success": "Ok"}
    new = get(srv, "/").headers["X-Pid"]
    stop.set()
    t.join()
    assert new != old
    assert failures == []
    apps.wait_for(lambda: apps.app_pids(srv, "t") == [int(new)], 15,
                  "the old process to exit")


def test_changed_config_restarts_removed_app_stops(wharf):
    srv = wharf(config(processes=1, environment={"ROUTER_TEST": "a"}))
    r = get(srv, "/")
    assert r.headers["X-Env"] == "a"
    conf = srv.config
    conf["applications"]["t"]["environment"]["ROUTER_TEST"] = "b"
    assert srv.api().put("/config", conf).status == 200
    r = get(srv, "/")
    assert r.status_code == 200 and r.headers["X-Env"] == "b"
    conf = {"listeners": {}, "routes": [], "applications": {}}
    assert srv.api().put("/config", conf).status == 200
    apps.wait_for(lambda: apps.app_pids(srv, "t") == [], 15,
                  "the removed app's processes to exit")


def test_failed_start_refuses_the_config_old_one_serves(wharf):
    srv = wharf(config(processes=1, environment={"ROUTER_TEST": "old"}))
    srv.log_ignore.append(r"failed to import module")
    pid = get(srv, "/").headers["X-Pid"]
    good = srv.config
    bad = {"listeners": good["listeners"], "settings": good["settings"],
           "applications": {"t": {"type": "python", "processes": 1,
                                  "path": os.path.join(os.path.dirname(
                                      APP_DIR), "wsgi"),
                                  "module": "broken_import"}}}
    reply = srv.api().put("/config", bad)
    assert reply.status == 500, reply
    assert reply.json["error"] == "Failed to apply new configuration."
    r = get(srv, "/")
    assert r.status_code == 200
    assert r.headers["X-Pid"] == pid and r.headers["X-Env"] == "old"
    assert srv.api().get("/config").json == good
    # A new application that fails to start is refused too, and goes.
    bad["applications"] = dict(good["applications"], u=bad["applications"]["t"])
    assert srv.api().put("/config", bad).status == 500
    assert get(srv, "/").headers["X-Pid"] == pid
    assert "u" not in status_all(srv)["applications"]
    # Each refused start was tried once, not retried.
    assert srv.log_text().count("failed to import module") == 2
    apps.wait_for(lambda: apps.app_pids(srv, "u") == [], 15, "u to go")


def status_all(srv):
    return srv.api().get("/status").json
