"""WSGI apps through a whole server: main discovers build/modules/
python3.11.wharf.so, the router starts app processes, requests and their
bodies travel over the app protocol.  The small apps are in apps/wsgi/;
test_wsgi_module.py checks the module alone, in more detail."""

import http.client
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from lib.wharf import WHARF_BIN, children_of, require_python_module, scaled

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
    require_python_module(server)
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


def raw_request(port, head, timeout=30):
    """Sends head (bytes, a whole request) on a new connection and returns
    (status line, body) once the server closes it: a client library would
    add its own Host."""
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=scaled(timeout)) as s:
        s.sendall(head)
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            out += data
    status, _, rest = out.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return status.decode(), body


# Unit 1.35's values: HTTP_HOST as sent (case and port kept), SERVER_NAME
# the Host lowercased without its port ("localhost" without one), and
# SERVER_PORT the listener's port.
HOST_ROWS = [
    (b"GET / HTTP/1.0\r\n\r\n", None, "localhost"),
    (b"GET / HTTP/1.1\r\nHost: ExAmple.COM\r\nConnection: close\r\n\r\n",
     "ExAmple.COM", "example.com"),
    (b"GET / HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: close"
     b"\r\n\r\n", "Example.com:8080", "example.com"),
    (b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n", "",
     "localhost"),
    # longer than the request's inline buffer for the lowercased name
    (b"GET / HTTP/1.1\r\nHost: " + b"Ab" * 200 + b".Org:81\r\n"
     b"Connection: close\r\n\r\n", "Ab" * 200 + ".Org:81",
     "ab" * 200 + ".org"),
]


@pytest.mark.parametrize("head,http_host,server_name", HOST_ROWS,
                         ids=["no-host", "mixed-case", "port", "empty", "long"])
def test_host_and_server_name(py, head, http_host, server_name):
    configured(py, wsgi_app("environ"))
    status, body = raw_request(py.server.port, head)
    assert " 200 " in status, (status, body)
    env = json.loads(body)  # environ.py sends a Content-Length
    assert env.get("HTTP_HOST") == http_host
    assert env["SERVER_NAME"] == server_name
    assert env["SERVER_PORT"] == str(py.server.port)


def test_app_logs_follow_a_log_rotation(py):
    """As on Unit: what app processes write (wsgi.errors, their stderr, a
    traceback) goes to the error log, and after `mv log log.1` and USR1
    to main, an app process that was already running writes to the new
    log."""
    py.server.log_ignore.append(r"traceback-")
    configured(py, wsgi_app("logs"))
    assert py.get("/?before")[0] == 200
    log = py.server.log_path
    for text in ("errors-before", "stderr-before"):
        assert py.server.wait_log(re.escape(text)), py.server.log_text()
    pids = py.app_pids()
    os.rename(log, log + ".1")
    try:
        os.kill(py.server.pid, signal.SIGUSR1)
        assert wait_until(lambda: os.path.exists(log), 10)
        assert py.get("/?after")[0] == 200
        assert py.get("/raise?after")[0] == 500
        assert py.app_pids() == pids  # the same processes

        def new_log():
            with open(log, encoding="utf-8", errors="replace") as f:
                return f.read()

        for text in ("errors-after", "stderr-after", "traceback-after"):
            assert wait_until(lambda: text in new_log(), 10), new_log()
        with open(log + ".1", encoding="utf-8", errors="replace") as f:
            assert "-after" not in f.read()
    finally:
        # The post-test check reads the log: keep the earlier lines in it.
        with open(log + ".1", "rb") as old, open(log, "ab") as new:
            new.write(old.read())
        os.unlink(log + ".1")


def chunked_post(port, pieces):
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return raw_request(port, b"POST / HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: chunked\r\nConnection: close"
                       b"\r\n\r\n" + body + b"0\r\n\r\n")


def test_chunked_transform_gives_a_content_length(py):
    """Unit 1.35's settings.http.chunked_transform: a chunked body is read
    whole and the app gets CONTENT_LENGTH and no Transfer-Encoding;
    max_body_size bounds the decoded body (413)."""
    conf = {"settings": {"http": {"chunked_transform": True,
                                  "max_body_size": 300000}},
            "listeners": {"127.0.0.1:%d" % py.server.port:
                          {"pass": "applications/app"}},
            "applications": {"app": wsgi_app("environ")}}
    r = py.api.put("/config", conf)
    assert r.status == 200, r
    for pieces in ([b"hello", b" world"], [], [b"x" * 70000] * 4):
        status, body = chunked_post(py.server.port, pieces)
        assert " 200 " in status, (status, body)
        env = json.loads(body)
        assert env["CONTENT_LENGTH"] == str(sum(map(len, pieces)))
        assert "HTTP_TRANSFER_ENCODING" not in env
    status, _ = chunked_post(py.server.port, [b"x" * 200000] * 2)
    assert " 413 " in status
    # Without the setting the body streams in, without a length (Wharf's
    # extension: Unit answers 411).
    conf["settings"]["http"]["chunked_transform"] = False
    assert py.api.put("/config", conf).status == 200
    status, body = chunked_post(py.server.port, [b"hello"])
    env = json.loads(body)
    assert "CONTENT_LENGTH" not in env
    assert env["HTTP_TRANSFER_ENCODING"] == "chunked"


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


def test_prefix_ignores_path_python3(wharf, shared_tmp):
    """Without "home", the embedded Python takes Debian's prefix (that of
    the libpython the module is built against), not the prefix of the first
    python3 in PATH (a pyenv shim, /usr/local): here a python3 whose
    directory has a stdlib landmark (lib/python3.11/os.py) first in the
    server's PATH.  Unit follows PATH there (docs/compatibility.md)."""
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    fake = os.path.join(shared_tmp, "fakepy")
    os.makedirs(os.path.join(fake, "bin"))
    os.makedirs(os.path.join(fake, "lib", "python3.11", "lib-dynload"))
    with open(os.path.join(fake, "bin", "python3"), "w") as f:
        f.write("#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n")
    open(os.path.join(fake, "lib", "python3.11", "os.py"), "w").close()
    subprocess.run(["chmod", "-R", "a+rX", shared_tmp], check=True)
    os.chmod(os.path.join(fake, "bin", "python3"), 0o755)
    server = wharf(ROUTED, extra_args=["--modulesdir", MODULES],
                   env={"PATH": os.path.join(fake, "bin") + ":"
                        + os.environ.get("PATH", "/usr/bin:/bin")})
    py = PyServer(server)
    with open(os.path.join(shared_tmp, "sysinfo.py"), "w") as f:
        f.write("import json, os, sys\n"
                "def application(environ, start_response):\n"
                "    start_response('200 OK', [])\n"
                "    return [json.dumps([sys.prefix, sys.exec_prefix,\n"
                "                        sys.executable, os.__file__,\n"
                "                        sys.path]).encode()]\n")
    os.chmod(os.path.join(shared_tmp, "sysinfo.py"), 0o644)
    configured(py, {"type": "python", "path": shared_tmp,
                    "module": "sysinfo"})
    status, _, body = py.get()
    assert status == 200, body
    prefix, exec_prefix, executable, os_file, path = json.loads(body)
    want = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(sys.prefix)"],
        check=True, capture_output=True, text=True).stdout.strip()
    assert (prefix, exec_prefix) == (want, want)
    assert not executable.startswith(fake) and os_file.startswith(want)
    assert not any(p.startswith(fake) for p in path), path
    pids = py.app_pids()
    assert py.api.put("/config", routed_at(server.port)).status == 200
    wait_until(lambda: not set(pids) & set(children_of(server.pid)), 30)


def routed_at(port):
    return {"listeners": {"127.0.0.1:%d" % port: {"pass": "routes"}},
            "routes": ROUTED["routes"]}


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
