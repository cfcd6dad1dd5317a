"""WSGI apps through a whole server: main discovers build/modules/
python3.11.wharf.so, the router starts app processes, requests and their
bodies travel over the app protocol.  The small apps are in apps/wsgi/;
test_wsgi_module.py checks the module alone, in more detail."""

import http.client
import json
import re
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from lib.wharf import WHARF_BIN, children_of, scaled

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi")
MODULES = os.path.join(os.path.dirname(WHARF_BIN), "modules") if WHARF_BIN \
    else ""

ROUTED = {"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
          "routes": [{"action": {"return": 204}}]}


def wsgi_app(module, **options):
    conf = {"type": "python 3", "path": APPS, "module": module}
    conf.update(options)
    return conf


class PyServer:
    """A server whose listener passes to applications/app; configure()
    replaces the app."""

    def __init__(self, server):
        self.server = server
        self.api = server.api()

    def configure(self, app, passes="applications/app", routes=None):
        config = {"listeners": {"127.0.0.1:%d" % self.server.port:
                                {"pass": passes}},
                  "applications": {"app": app}}
        if routes is not None:
            config["routes"] = routes
        return self.api.put("/config", config)

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port,
                                          timeout=scaled(timeout))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get(self, path="/", **kw):
        return self.request("GET", path, **kw)

    def app_pids(self):
        """PIDs of the app processes (main's children titled as an
        application)."""
        pids = []
        for pid in children_of(self.server.pid):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    title = f.read()
            except OSError:
                continue
            if b"application" in title:
                pids.append(pid)
        return sorted(pids)


@pytest.fixture
def py(wharf):
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    server = wharf(ROUTED, extra_args=["--modulesdir", MODULES])
    if "module: python" not in server.log_text():
        pytest.skip("this wharf does not discover language modules yet")
    py = PyServer(server)
    yield py
    # The router holds sockets to each app process: remove the apps so
    # that the post-test check finds the fd counts back at the baseline.
    if server.alive():
        routes = {"listeners": {"127.0.0.1:%d" % server.port:
                                {"pass": "routes"}},
                  "routes": ROUTED["routes"]}
        pids = py.app_pids()
        py.api.put("/config", routes)
        # Gone from main's children: exited and reaped, not a zombie.
        wait_until(lambda: not set(pids) & set(children_of(server.pid)), 30)


def ROUTED_AT(port):
    return {"listeners": {"127.0.0.1:%d" % port: {"pass": "routes"}},
            "routes": ROUTED["routes"]}


def wait_until(pred, timeout):
    deadline = time.monotonic() + scaled(timeout)
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pred()


def logged(py, text):
    """Waits until the log has text (not a regex); asserts it does."""
    assert py.server.wait_log(re.escape(text), timeout=10), \
        py.server.log_text()[-3000:]


def configured(py, app, **kw):
    r = py.configure(app, **kw)
    assert r.status == 200, (r, py.server.log_text()[-3000:])
    return py


@pytest.fixture
def shared_tmp():
    """A directory an unprivileged app process can read."""
    path = tempfile.mkdtemp(prefix="wharf-wsgi-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_hello(py):
    configured(py, wsgi_app("hello"))
    status, headers, body = py.get()
    assert status == 200 and body == b"Hello, World!"
    assert headers["Content-Type"] == "text/plain"
    assert headers.get("Content-Length") == "13"


def test_environ_through_the_server(py):
    configured(py, wsgi_app("environ"))
    status, _, body = py.request(
        "POST", "/a%20b/c?x=1&y=%20", body=b"hello",
        headers={"Host": "example.com:%d" % py.server.port, "X-Foo": "bar",
                 "Content-Type": "text/plain"})
    assert status == 200
    env = json.loads(body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["REQUEST_URI"] == "/a%20b/c?x=1&y=%20"
    assert env["PATH_INFO"] == "/a b/c"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SCRIPT_NAME"] == ""
    assert env["CONTENT_LENGTH"] == "5" and env["CONTENT_TYPE"] == "text/plain"
    assert env["HTTP_X_FOO"] == "bar"
    assert env["HTTP_HOST"] == "example.com:%d" % py.server.port
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == str(py.server.port)
    assert env["SERVER_ADDR"] == "127.0.0.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.input"] == "<wsgi_input>"
    assert env["wsgi.multithread"] is False


def test_streamed_upload(py):
    """8 MiB sent chunked (no Content-Length) arrives whole."""
    configured(py, wsgi_app("body"))
    piece = os.urandom(65536)

    def chunks():
        for _ in range(128):
            yield piece

    # http.client sends an iterable body chunked (no Content-Length).
    status, _, body = py.request("POST", "/size", body=chunks(), timeout=120)
    assert status == 200 and json.loads(body) == [str(128 * 65536)]


def test_upload_readline(py):
    configured(py, wsgi_app("body"))
    data = b"".join(b"line %d\n" % i for i in range(20000))
    status, _, body = py.request("POST", "/readline", body=data, timeout=120)
    assert status == 200
    lines = json.loads(body)
    assert len(lines) == 20000 and lines[-1] == "line 19999\n"


def test_streamed_download(py):
    configured(py, wsgi_app("stream"))
    status, headers, body = py.get("/?n=256&size=65536", timeout=120)
    assert status == 200 and len(body) == 256 * 65536
    assert body[:65536] == b"0" * 65536 and body[-1:] == b"5"


def test_file_wrapper(py, shared_tmp):
    configured(py, wsgi_app("files"))
    data = os.urandom(3 * 1024 * 1024 + 5)
    path = os.path.join(shared_tmp, "data.bin")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    status, _, body = py.get("/", headers={"X-File": path}, timeout=120)
    assert status == 200 and body == data
    status, _, body = py.get("/offset", headers={"X-File": path})
    assert status == 200 and body == data[10:]
    status, headers, body = py.get("/length", headers={"X-File": path})
    assert body == data[:100] and headers["Content-Length"] == "100"
    status, _, body = py.get("/bytesio")
    assert body == b"from a BytesIO " * 1000


@pytest.mark.parametrize("name,message", [
    ("raises", "ValueError: boom from raises"),
    ("garbage", "the application returned not an iterable object"),
    ("nostart", "the application did not call start_response()"),
])
def test_bad_app_500_traceback_survives(py, name, message):
    configured(py, wsgi_app("bad", callable=name))
    status, _, _ = py.get()
    assert status == 500
    logged(py, message)
    pids = py.app_pids()
    status, _, _ = py.get()
    assert status == 500
    assert py.app_pids() == pids  # the same process answered


def test_error_after_head_cuts_the_connection(py):
    configured(py, wsgi_app("bad", callable="late"))
    with pytest.raises(http.client.IncompleteRead):
        py.get()
    logged(py, "ValueError: boom after the head")


def test_threads(py):
    configured(py, wsgi_app("threads", threads=4))
    results = []

    def one():
        results.append(py.get(timeout=60)[0])

    workers = [threading.Thread(target=one) for _ in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(scaled(90))
    assert results == [200] * 4


@pytest.mark.parametrize("router_threads", [1, 2])
def test_queued_requests_each_get_their_own_timeout(wharf, router_threads):
    """With one process busy, a pull worker takes the next requests queued
    behind the one it serves; limits.timeout of each starts when the one
    before it ends, as if the router had held it: three requests of 1.5 s
    under a 4 s timeout all succeed, though the third ends 4.5 s after it
    was sent.  (With two router threads the router holds them instead.)"""
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    server = wharf(ROUTED, threads=router_threads,
                   extra_args=["--modulesdir", MODULES])
    py = PyServer(server)
    configured(py, wsgi_app("slow", processes=1, limits={"timeout": 4}))
    results = []

    def one():
        results.append(py.get("/?1.5", timeout=60)[0:3:2])

    workers = [threading.Thread(target=one) for _ in range(3)]
    for t in workers:
        t.start()
        time.sleep(0.1)
    for t in workers:
        t.join(scaled(90))
    assert results == [(200, b"slept")] * 3
    pids = py.app_pids()
    py.api.put("/config", ROUTED_AT(server.port))
    wait_until(lambda: not set(pids) & set(children_of(server.pid)), 30)


@pytest.mark.parametrize("router_threads", [1, 2])
def test_queued_request_bounded_by_queue_timeout(wharf, router_threads):
    """A request waiting behind a slow one, in the app's queue or in the
    router's, gets 503 once queue.timeout passes; the slow one is served."""
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    server = wharf(ROUTED, threads=router_threads,
                   extra_args=["--modulesdir", MODULES])
    py = PyServer(server)
    configured(py, wsgi_app("slow", processes=1, queue={"timeout": 1}))
    results = {}

    def one(name, delay):
        results[name] = py.get("/?%s" % delay, timeout=60)[0]

    slow = threading.Thread(target=one, args=("slow", 4))
    slow.start()
    time.sleep(0.5)
    one("fast", 0)  # a 200 would mean it waited for the slow one
    slow.join(scaled(90))
    assert results == {"slow": 200, "fast": 503}
    pids = py.app_pids()
    py.api.put("/config", ROUTED_AT(server.port))
    wait_until(lambda: not set(pids) & set(children_of(server.pid)), 30)


def test_prefix(py):
    configured(py, wsgi_app("prefix", prefix="/app"))
    assert py.get("/app/x")[2] == b"/app|/x"
    assert py.get("/app")[2] == b"/app|"
    assert py.get("/apps")[2] == b"|/apps"


def test_targets(py):
    app = {"type": "python", "path": APPS, "targets": {
        "one": {"module": "prefix", "prefix": "/one"},
        "two": {"module": "hello"}}}
    routes = [{"match": {"uri": "/one/*"},
               "action": {"pass": "applications/app/one"}},
              {"action": {"pass": "applications/app/two"}}]
    configured(py, app, passes="routes", routes=routes)
    assert py.get("/one/x")[2] == b"/one|/x"
    assert py.get("/other")[2] == b"Hello, World!"


def test_factory(py):
    configured(py, wsgi_app("factory", callable="create_app", factory=True))
    assert py.get()[2] == b"from the factory, called 1 time(s)"


def test_home_virtualenv(py, shared_tmp):
    venv = os.path.join(shared_tmp, "venv")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", venv],
                   check=True, timeout=scaled(120))
    site = os.path.join(venv, "lib", "python%d.%d" % sys.version_info[:2],
                        "site-packages")
    with open(os.path.join(site, "venvapp.py"), "w") as f:
        f.write("import sys\n"
                "def application(environ, start_response):\n"
                "    start_response('200 OK', [])\n"
                "    return [sys.prefix.encode()]\n")
    subprocess.run(["chmod", "-R", "a+rX", shared_tmp], check=True)
    configured(py, {"type": "python", "home": venv, "module": "venvapp"})
    assert py.get()[2] == venv.encode()


def test_import_failure_rejects_the_config(py):
    py.server.log_ignore.append(r"Python failed to import module")
    py.server.log_ignore.append(r"failed to apply")
    configured(py, wsgi_app("hello"))
    r = py.configure(wsgi_app("broken_import"))
    assert r.status == 500
    assert r.json == {"error": "Failed to apply new configuration."}
    logged(py, 'Python failed to import module "broken_import"')
    assert "ModuleNotFoundError" in py.server.log_text()
    # The old config still serves.
    assert py.get()[2] == b"Hello, World!"
