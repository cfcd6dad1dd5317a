"""A real Flask application (python3-flask, tests/integration/apps/flask_app)
under Unit's `applications` config, unchanged.

Run against Wharf; with WHARF_REF_UNITD=/path/to/unitd the same tests run
against NGINX Unit too (lib/apps.py).
"""

import hashlib
import os

import pytest
import requests

from lib import apps
from lib.rawhttp import Reader, request as raw_request
from lib.wharf import scaled

app_server = apps.server_fixture()

TIMEOUT = scaled(30)


@pytest.fixture(autouse=True)
def _flask_installed():
    apps.require_modules("flask")


def flask_config(**options):
    app = apps.python_app("flask_app", module="app", callable="app",
                          environment={"FLASK_TEST_ENV": "from-config"})
    app.update(options)
    return {
        "listeners": {"127.0.0.1:{port}": {"pass": "applications/flask"}},
        "applications": {"flask": app},
    }


@pytest.fixture
def flask(app_server):
    return app_server.start(flask_config())


def get(srv, path, **kw):
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("allow_redirects", False)
    return requests.get(srv.url(path), **kw)


def test_hello(flask):
    r = get(flask, "/")
    assert r.status_code == 200
    assert r.text == "Hello from Flask\n"
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Content-Length"] == str(len(r.content))


def test_routing_converters(flask):
    r = get(flask, "/user/bob/21")
    assert r.status_code == 200
    assert r.json() == {"name": "bob", "num": 21, "double": 42}
    # A converter that does not match is Flask's 404, through its handler.
    r = get(flask, "/user/bob/x21")
    assert r.status_code == 404
    assert r.json() == {"error": "not found", "path": "/user/bob/x21"}


def test_environ_as_flask_sees_it(flask):
    r = get(flask, "/info?a=1&a=2&b=x%20y", headers={"X-Test": "yes"})
    assert r.status_code == 200
    info = r.json()
    assert info["method"] == "GET"
    assert info["path"] == "/info"
    assert info["script_root"] == ""
    assert info["query"] == {"a": ["1", "2"], "b": ["x y"]}
    assert info["headers"]["x-test"] == "yes"
    assert info["headers"]["host"] == "127.0.0.1:%d" % flask.port
    assert info["scheme"] == "http"
    assert info["host"] == "127.0.0.1:%d" % flask.port
    assert info["remote_addr"] == "127.0.0.1"
    assert info["url"] == ("http://127.0.0.1:%d/info?a=1&a=2&b=x%%20y"
                           % flask.port)
    assert info["server_protocol"] == "HTTP/1.1"
    assert info["wsgi_version"] == [1, 0]
    assert info["multithread"] is False
    assert info["run_once"] is False
    # "environment" of the application config reaches os.environ.
    assert info["env_var"] == "from-config"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_methods(flask, method):
    r = requests.request(method, flask.url("/info"), timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json()["method"] == method


def test_method_not_allowed(flask):
    r = requests.post(flask.url("/"), timeout=TIMEOUT)
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"]


def test_json_post(flask):
    payload = {"list": [1, 2, 3], "text": "h\u00e9llo", "nested": {"x": None}}
    r = requests.post(flask.url("/json"), json=payload, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json() == {"received": payload, "type": "dict"}
    r = requests.post(flask.url("/json"), data=b"not json",
                      headers={"Content-Type": "application/json"},
                      timeout=TIMEOUT)
    assert r.status_code == 400


def test_form_post(flask):
    r = requests.post(flask.url("/form"),
                      data={"a": ["1", "2"], "name": "caf\u00e9 & co"},
                      timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json() == {"form": {"a": ["1", "2"], "name": ["caf\u00e9 & co"]}}


def test_multipart_upload(flask):
    blob = os.urandom(300 * 1024)
    text = b"line one\r\nline two\r\n"
    r = apps.bounded(lambda: requests.post(
        flask.url("/upload"),
        files={"blob": ("blob.bin", blob, "application/octet-stream"),
               "text": ("notes.txt", text, "text/plain")},
        data={"title": "two files"}, timeout=TIMEOUT), 60)
    assert r.status_code == 200
    got = r.json()
    assert got["form"] == {"title": "two files"}
    assert got["files"]["blob"] == {
        "filename": "blob.bin", "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest()}
    assert got["files"]["text"] == {
        "filename": "notes.txt", "size": len(text),
        "sha256": hashlib.sha256(text).hexdigest()}


def test_large_body_read_in_pieces(flask):
    """8 MiB with a Content-Length, read by the app 64 KiB at a time."""
    body = os.urandom(8 * 1024 * 1024)
    r = apps.bounded(lambda: requests.put(flask.url("/body-sha256"),
                                          data=body, timeout=TIMEOUT), 60)
    assert r.status_code == 200
    assert r.json() == {"size": len(body),
                        "sha256": hashlib.sha256(body).hexdigest()}


def test_session_and_cookies(flask):
    with requests.Session() as s:
        r = s.get(flask.url("/session/set/abc"), timeout=TIMEOUT,
                  allow_redirects=False)
        assert r.status_code == 302
        assert r.headers["Location"] in ("/session/get",
                                         flask.url("/session/get"))
        cookies = r.raw.headers.getlist("Set-Cookie")
        assert len(cookies) == 2, cookies   # the session and "plain"
        r = s.get(flask.url("/session/get"), timeout=TIMEOUT)
        assert r.json() == {"value": "abc", "plain": "cookie-abc"}
    # Without the cookies, the session is empty.
    assert get(flask, "/session/get").json() == {"value": None,
                                                  "plain": None}


def test_external_redirect_uses_host(flask):
    r = get(flask, "/redirect")
    assert r.status_code == 302
    assert r.headers["Location"] == "http://127.0.0.1:%d/" % flask.port


def test_streamed_response(flask):
    r = get(flask, "/stream/2000")
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert len(lines) == 2000
    assert lines[0] == "line 0" and lines[-1] == "line 1999"


def test_large_response(flask):
    size = 4 * 1024 * 1024
    r = get(flask, "/big/%d" % size)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(size)
    assert r.content == b"x" * size


@pytest.mark.parametrize("code", [201, 202, 301, 418, 503])
def test_status_and_headers(flask, code):
    r = get(flask, "/status/%d" % code)
    assert r.status_code == code
    assert r.headers["X-Custom"] == "custom-%d" % code
    assert r.text == "status %d\n" % code


def test_head(flask):
    with flask.connect(timeout=TIMEOUT) as s:
        s.sendall(raw_request(method="HEAD", path="/"))
        resp = Reader(s).read_response(head_request=True)
        assert resp.status == 200
        assert resp.header("Content-Length") == str(len("Hello from Flask\n"))
        # Nothing follows the head: the next response on the connection
        # is the next request's.
        s.sendall(raw_request(path="/user/x/1"))
        resp = Reader(s).read_response()
        assert resp.status == 200
        assert b'"name":"x"' in resp.body.replace(b" ", b"")


def test_keep_alive_one_process(flask):
    with requests.Session() as s:
        pids = set()
        for _ in range(50):
            r = s.get(flask.url("/info"), timeout=TIMEOUT)
            assert r.status_code == 200
            pids.add(r.json()["pid"])
    assert len(pids) == 1       # "processes" defaults to 1


def test_threads(app_server):
    """"threads": 4 runs four requests of one process at once (each waits
    on a barrier that opens only when all four are in)."""
    import concurrent.futures
    srv = app_server.start(flask_config(threads=4))
    key = "b%d" % os.getpid()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(
            lambda _: get(srv, "/barrier/%s/4" % key), range(4)))
    assert [r.status_code for r in replies] == [200] * 4, \
        [r.text for r in replies]
    got = [r.json() for r in replies]
    assert sorted(g["index"] for g in got) == [0, 1, 2, 3]
    assert len({g["thread"] for g in got}) == 4
    assert len({g["pid"] for g in got}) == 1
    assert all(g["multithread"] is True for g in got)


def test_exception_is_500_and_logged(flask):
    pid = get(flask, "/info").json()["pid"]
    r = get(flask, "/boom")
    assert r.status_code == 500
    assert "Internal Server Error" in r.text
    # Flask logs the traceback to wsgi.errors, which is the error log.
    assert flask.wait_log(r"flask-boom-marker", timeout=10), \
        flask.log_text()[-3000:]
    assert flask.wait_log(r"Traceback", timeout=10)
    # The process survives and keeps serving.
    r = get(flask, "/info")
    assert r.status_code == 200 and r.json()["pid"] == pid
