"""The Python module's WSGI side through its real interface, without a
router: build/modules/app-harness (tests/harness/app_harness.c) loads
python3.11.wharf.so, calls setup() and run(), serves it a scripted queue of
requests and prints what the module sent (status, fields, body, and how each
piece went: respond / write / file).  test_wsgi.py runs the same apps
through a whole server."""

import json
import os
import subprocess
import sys

import pytest

from lib.wharf import SAN, WHARF_BIN, scaled

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "wsgi")
BUILD = os.path.dirname(WHARF_BIN) if WHARF_BIN else ""
HARNESS = os.path.join(BUILD, "modules", "app-harness")
MODULE = os.path.join(BUILD, "modules", "python3.11.wharf.so")


def run(tmp_path, conf, requests, expect_setup=True):
    """Runs the module on conf (an app object) for requests; returns
    (result, log text)."""
    if not os.access(HARNESS, os.X_OK) or not os.path.exists(MODULE):
        pytest.skip("no %s or %s" % (HARNESS, MODULE))
    conf = dict(conf)
    conf.setdefault("type", "python")
    conf.setdefault("path", APPS)
    conf_file = tmp_path / "app.json"
    req_file = tmp_path / "requests.json"
    conf_file.write_text(json.dumps(conf))
    req_file.write_text(json.dumps(requests))
    env = dict(os.environ)
    if SAN:
        # libpython is not instrumented and keeps its memory at exit.
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    proc = subprocess.run([HARNESS, MODULE, str(conf_file), str(req_file)],
                          capture_output=True, timeout=scaled(120), env=env)
    log = proc.stderr.decode("utf-8", "replace")
    assert "Sanitizer" not in log and "runtime error" not in log, log
    result = json.loads(proc.stdout)
    assert result["setup"] == expect_setup, log
    if expect_setup:
        assert result["status"] == 0 and proc.returncode == 0, log
        assert None not in result["responses"], "a request never ended"
    else:
        assert proc.returncode == 1
    return result, log


def req(target="/", **kw):
    r = {"method": "GET", "target": target, "path": target.split("?")[0],
         "query": target.split("?", 1)[1] if "?" in target else "",
         "headers": [["Host", "localhost"]]}
    r.update(kw)
    return r


def body_of(resp):
    return resp["body"].encode("latin-1")


def test_module_identity(tmp_path):
    result, _ = run(tmp_path, {"module": "hello"}, [])
    assert result["type"] == "python"
    assert result["version"] == "%d.%d.%d" % sys.version_info[:3]


def test_hello_is_one_message(tmp_path):
    result, log = run(tmp_path, {"module": "hello"}, [req(), req()])
    for r in result["responses"]:
        assert r["status"] == 200 and r["ok"]
        assert r["fields"] == [["Content-Type", "text/plain"]]
        assert r["pieces"] == [["respond", 13]] and r["last"] is True
        assert body_of(r) == b"Hello, World!"
    assert "[alert]" not in log and "[error]" not in log


def test_environ_has_units_keys(tmp_path):
    r = req("/a%20b?x=1&y=%20", method="POST", path="/a b",
            headers=[["Host", "example.com:8080"], ["X-Foo", "a"],
                     ["x-foo", "b"], ["Content-Type", "text/plain"],
                     ["Content-Length", "5"], ["User-Agent", "t/1"]],
            body=["hel", "lo"], server="example.com", local_port=8080,
            remote="10.1.2.3", local="127.0.0.2")
    result, _ = run(tmp_path, {"module": "environ"}, [r])
    env = json.loads(result["responses"][0]["body"])
    assert env == {
        # As Unit 1.35 sets them for the same request...
        "REQUEST_METHOD": "POST", "REQUEST_URI": "/a%20b?x=1&y=%20",
        "PATH_INFO": "/a b", "QUERY_STRING": "x=1&y=%20",
        "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "5",
        "HTTP_CONTENT_TYPE": "text/plain", "HTTP_CONTENT_LENGTH": "5",
        "HTTP_HOST": "example.com:8080", "HTTP_X_FOO": "a, b",
        "HTTP_USER_AGENT": "t/1",
        "SERVER_NAME": "example.com", "SERVER_PORT": "8080",
        "SERVER_ADDR": "127.0.0.2", "REMOTE_ADDR": "10.1.2.3",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": [1, 0], "wsgi.url_scheme": "http",
        "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input": "<wsgi_input>", "wsgi.errors": "<wsgi_errors>",
        "wsgi.input_terminated": True,
        # ...and Wharf's: PEP 3333 wants SCRIPT_NAME, file_wrapper is
        # offered, and the server says who it is.
        "SCRIPT_NAME": "", "wsgi.file_wrapper": "<type>",
        "SERVER_SOFTWARE": env["SERVER_SOFTWARE"],
    }
    assert env["SERVER_SOFTWARE"].startswith("Wharf/")


def test_environ_per_request_values_do_not_leak(tmp_path):
    """Cached strs are reused only for equal bytes; a field of one request
    never shows up in the next one's environ."""
    reqs = [req("/one?a", headers=[["Host", "h1"], ["X-Only-First", "1"]],
                tls=True),
            req("/two", method="PUT", headers=[["Host", "h2"]],
                version="HTTP/1.0", server="h2", local_port=81),
            req("/two", method="PUT", headers=[["Host", "h2"]],
                version="HTTP/1.0", server="h2", local_port=81)]
    result, _ = run(tmp_path, {"module": "environ"}, reqs)
    e1, e2, e3 = [json.loads(r["body"]) for r in result["responses"]]
    assert e1["wsgi.url_scheme"] == "https" and e1["HTTP_X_ONLY_FIRST"] == "1"
    assert e1["QUERY_STRING"] == "a" and e1["PATH_INFO"] == "/one"
    assert "HTTP_X_ONLY_FIRST" not in e2
    assert e2 == e3
    assert (e2["REQUEST_METHOD"], e2["PATH_INFO"], e2["QUERY_STRING"],
            e2["SERVER_PROTOCOL"], e2["HTTP_HOST"], e2["SERVER_PORT"],
            e2["wsgi.url_scheme"]) == ("PUT", "/two", "", "HTTP/1.0", "h2",
                                       "81", "http")


def test_environ_latin1_both_ways(tmp_path):
    r = req("/", headers=[["X-In", "caf\u00e9"]])
    result, _ = run(tmp_path, {"module": "bad", "callable": "latin1"}, [r])
    resp = result["responses"][0]
    assert resp["status"] == 200
    assert body_of(resp) == b"caf\xe9"
    assert resp["fields"] == [["X-Latin", "caf\u00e9"], ["X-Bytes", "b"]]


BODY = "line one\nline two\n\nlast line without newline"


@pytest.mark.parametrize("way,expect", [
    ("/read", [BODY]),
    ("/read3", [BODY[i:i + 3] for i in range(0, len(BODY), 3)]),
    ("/readline", ["line one\n", "line two\n", "\n",
                   "last line without newline"]),
    ("/readline2", ["li", "ne one\n", BODY[len("line one\n"):]]),
    ("/readlines", ["line one\n", "line two\n", "\n",
                    "last line without newline"]),
    ("/iter", ["line one\n", "line two\n", "\n",
               "last line without newline"]),
    ("/mixed", ["line one\n", "li", "ne two\n", "\nlast line without newline"]),
])
@pytest.mark.parametrize("pieces", [1, 2, 7])
@pytest.mark.parametrize("chunked", [False, True])
def test_input_ways(tmp_path, way, expect, pieces, chunked):
    """Every way of reading gives the same bytes, whatever pieces the body
    comes in and whether its length is known."""
    step = -(-len(BODY) // pieces)
    body = [BODY[i:i + step] for i in range(0, len(BODY), step)]
    r = req(way, method="POST", body=body, chunked=chunked)
    result, log = run(tmp_path, {"module": "body"}, [r])
    resp = result["responses"][0]
    assert resp["status"] == 200, log
    assert json.loads(resp["body"]) == expect


@pytest.mark.parametrize("way", ["/size", "/read", "/readline"])
def test_input_large_body(tmp_path, way):
    """A body of 4 MiB in 64 KiB pieces (and lines longer than the
    read-ahead) streams through."""
    piece = ("x" * 1023 + "\n") * 64   # 64 KiB, lines of 1 KiB
    if way == "/readline":
        piece = "y" * 65536 + "z" * 65535 + "\n"   # one line > read-ahead
    r = req(way, method="POST", body=[piece] * 64)
    result, _ = run(tmp_path, {"module": "body"}, [r])
    out = json.loads(result["responses"][0]["body"])
    if way == "/size":
        assert out == [str(64 * len(piece))]
    else:
        assert "".join(out) == piece * 64
        if way == "/readline":
            assert len(out) == 64


def test_input_abort_is_an_error_not_a_crash(tmp_path):
    r = req("/read", method="POST", body=["abc", "def"], abort_after=1)
    result, log = run(tmp_path, {"module": "body"}, [r, req("/size")])
    aborted, after = result["responses"]
    assert aborted["status"] == 500
    assert "failed to read the request body" in log
    assert after["status"] == 200 and json.loads(after["body"]) == ["0"]


def test_streaming_output_goes_as_it_is_yielded(tmp_path):
    result, _ = run(tmp_path, {"module": "stream"}, [req("/?n=5&size=4")])
    resp = result["responses"][0]
    assert resp["ok"] and resp["last"] is False
    assert resp["pieces"] == [["respond", 4]] + [["write", 4]] * 4
    assert body_of(resp) == b"0000111122223333" + b"4444"


def test_large_output(tmp_path):
    result, _ = run(tmp_path, {"module": "stream"},
                    [req("/?n=64&size=65536")])
    resp = result["responses"][0]
    assert resp["ok"] and len(body_of(resp)) == 64 * 65536


BAD = {"module": "bad"}


@pytest.mark.parametrize("callable_,message", [
    ("raises", "ValueError: boom from raises"),
    ("garbage", "the application returned not an iterable object"),
    ("notbytes", "the application returned not a bytestring object"),
    ("nostart", "the application did not call start_response()"),
    ("badstatus", "failed to parse status code"),
    ("badheader", "header #0 has a character that is not allowed"),
    ("nonlatin1", "UnicodeEncodeError"),
])
def test_bad_app_gets_500_and_a_traceback(tmp_path, callable_, message):
    conf = dict(BAD, callable=callable_)
    result, log = run(tmp_path, conf, [req(), req()])
    for resp in result["responses"]:
        assert resp["status"] == 500 and resp["ok"], log
        assert body_of(resp).startswith(b"<!DOCTYPE html><title>Error 500")
        assert "X-Split" not in json.dumps(resp["fields"])
    assert message in log
    assert "[error]" in log and "[alert]" not in log
    # The same worker served both: the process survived the first.
    assert log.count(message) == 2


def test_raise_traceback_names_the_line(tmp_path):
    _, log = run(tmp_path, dict(BAD, callable="raises"), [req()])
    assert "Python failed to call the application\nTraceback" in log
    assert 'bad.py", line' in log and "in raises" in log


def test_error_after_the_head_cuts_the_response(tmp_path):
    result, log = run(tmp_path, dict(BAD, callable="late"), [req()])
    resp = result["responses"][0]
    assert resp["status"] == 200 and body_of(resp) == b"part1"
    assert resp["ok"] is False
    assert "ValueError: boom after the head" in log


def test_exc_info_replaces_an_unsent_head(tmp_path):
    result, _ = run(tmp_path, dict(BAD, callable="excinfo"), [req()])
    resp = result["responses"][0]
    assert resp["status"] == 500 and resp["fields"] == [["X-Second", "2"]]
    assert body_of(resp) == b"replaced"


def test_exc_info_after_the_head_reraises(tmp_path):
    result, log = run(tmp_path, dict(BAD, callable="excinfo_late"), [req()])
    resp = result["responses"][0]
    assert resp["status"] == 200 and body_of(resp) == b"sent"
    assert resp["ok"] is False
    assert "KeyError: 'too late'" in log


def test_start_response_twice_replaces_as_unit(tmp_path):
    result, _ = run(tmp_path, dict(BAD, callable="twice"), [req()])
    resp = result["responses"][0]
    assert resp["status"] == 201 and resp["fields"] == [["X-B", "2"]]


def test_empty_response(tmp_path):
    result, _ = run(tmp_path, dict(BAD, callable="empty"), [req()])
    resp = result["responses"][0]
    assert resp["status"] == 204 and resp["last"] is True
    assert resp["pieces"] == [["respond", 0]] and resp["ok"]


def test_write_then_iterable(tmp_path):
    result, _ = run(tmp_path, dict(BAD, callable="writeapp"), [req()])
    resp = result["responses"][0]
    assert body_of(resp) == b"via write;then iter"
    assert resp["pieces"][0] == ["respond", 10] and resp["ok"]


def test_content_length_stops_the_body(tmp_path):
    """PEP 3333: no byte past the app's Content-Length; reaching it
    completes the response."""
    result, _ = run(tmp_path, dict(BAD, callable="cl_truncate"), [req()])
    resp = result["responses"][0]
    assert body_of(resp) == b"abc" and resp["ok"]
    assert resp["pieces"] == [["respond", 2], ["write", 1]]


def test_close_is_called(tmp_path):
    conf = {"module": "bad", "targets": {
        "ok": {"module": "bad", "callable": "closing"},
        "fail": {"module": "bad", "callable": "closing_fail"},
        "closed": {"module": "bad", "callable": "closed"}}}
    del conf["module"]
    result, log = run(tmp_path, conf, [req(target_index=0),
                                       req(target_index=1),
                                       req(target_index=2)])
    ok, fail, closed = result["responses"]
    assert ok["ok"] and body_of(ok) == b"closing body"
    assert fail["ok"] is False and "iteration failed" in log
    assert body_of(closed) == b"closed,closed"


def test_file_wrapper_sends_the_fd(tmp_path):
    data = os.urandom(200000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    h = [["X-File", str(path)]]
    result, _ = run(tmp_path, {"module": "files"},
                    [req("/", headers=h), req("/offset", headers=h),
                     req("/length", headers=h), req("/bytesio")])
    whole, offset, length, bio = result["responses"]
    assert whole["pieces"] == [["respond", 0], ["file", 200000]]
    assert body_of(whole) == data and whole["ok"]
    assert offset["pieces"] == [["respond", 0], ["file", 200000 - 10]]
    assert body_of(offset) == data[10:]
    assert length["pieces"] == [["respond", 0], ["file", 100]]
    assert body_of(length) == data[:100]
    # Not a file with an fd: iterated in blksize pieces.
    assert body_of(bio) == b"from a BytesIO " * 1000
    assert bio["pieces"][0] == ["respond", 4096]
    assert all(p[0] != "file" for p in bio["pieces"])


def test_errors_go_to_the_log(tmp_path):
    result, log = run(tmp_path, {"module": "errors"}, [req()])
    assert result["responses"][0]["status"] == 200
    for line in ["[error] first line from wsgi.errors",
                 "[error] second line", "[error] unterminated",
                 "[error] printed to errors"]:
        assert line + "\n" in log, log


def test_threads_serve_at_once(tmp_path):
    result, log = run(tmp_path, {"module": "threads", "threads": 4},
                      [req() for _ in range(8)])
    resps = result["responses"]
    assert [r["status"] for r in resps] == [200] * 8, log
    assert len(set(r["worker"] for r in resps)) == 4


def test_threads_environ_multithread_and_stack_size(tmp_path):
    result, _ = run(tmp_path, {"module": "environ", "threads": 2,
                               "thread_stack_size": 1048576},
                    [req(), req()])
    for r in result["responses"]:
        assert json.loads(r["body"])["wsgi.multithread"] is True


def test_factory(tmp_path):
    result, _ = run(tmp_path, {"module": "factory", "callable": "create_app",
                               "factory": True}, [req(), req()])
    for r in result["responses"]:
        assert body_of(r) == b"from the factory, called 1 time(s)"


@pytest.mark.parametrize("conf,message", [
    ({"module": "factory", "callable": "not_a_factory", "factory": True},
     'factory "not_a_factory" in module "factory" can not be called to '
     'fetch callable'),
    ({"module": "factory", "callable": "returns_garbage", "factory": True},
     'factory "returns_garbage" in module "factory" did not return '
     'callable object'),
    ({"module": "notcallable"},
     '"application" in module "notcallable" is not a callable object'),
    ({"module": "hello", "callable": "nothere"},
     'Python failed to get "nothere" from module "hello"'),
    ({"module": "broken_import"},
     'Python failed to import module "broken_import"\nTraceback'),
    ({"module": "no_such_module_at_all"},
     'Python failed to import module "no_such_module_at_all"'),
])
def test_load_failures_use_units_words(tmp_path, conf, message):
    _, log = run(tmp_path, conf, [], expect_setup=False)
    assert "[alert] " + message in log, log


def test_import_failure_logs_the_exception(tmp_path):
    _, log = run(tmp_path, {"module": "broken_import"}, [],
                 expect_setup=False)
    assert ("ModuleNotFoundError: No module named "
            "'module_that_does_not_exist_anywhere'") in log


@pytest.mark.parametrize("prefix", ["/app", "/app/"])
def test_prefix(tmp_path, prefix):
    result, _ = run(tmp_path, {"module": "prefix", "prefix": prefix},
                    [req("/app/x/y"), req("/app"), req("/apps/x"),
                     req("/other")])
    assert [body_of(r) for r in result["responses"]] == [
        b"/app|/x/y", b"/app|", b"|/apps/x", b"|/other"]


def test_targets(tmp_path):
    conf = {"targets": {
        "first": {"module": "prefix", "prefix": "/one"},
        "second": {"module": "hello"},
        "third": {"module": "factory", "callable": "create_app",
                  "factory": True}}}
    result, _ = run(tmp_path, conf, [req("/one/a", target_index=0),
                                     req("/x", target_index=1),
                                     req("/x", target_index=2),
                                     req("/one/b", target_index=0)])
    assert [body_of(r) for r in result["responses"]] == [
        b"/one|/a", b"Hello, World!", b"from the factory, called 1 time(s)",
        b"/one|/b"]


def test_path_array_keeps_its_order(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for d, word in ((first, b"first"), (second, b"second")):
        d.mkdir()
        (d / "which.py").write_bytes(
            b"def application(e, s):\n    s('200 OK', [])\n"
            b"    return [b'" + word + b"']\n")
    result, _ = run(tmp_path, {"path": [str(first), str(second)],
                               "module": "which"}, [req()])
    assert body_of(result["responses"][0]) == b"first"
    result, _ = run(tmp_path, {"path": str(second), "module": "which"},
                    [req()])
    assert body_of(result["responses"][0]) == b"second"


def test_explicit_wsgi_protocol(tmp_path):
    result, _ = run(tmp_path, {"module": "hello", "protocol": "wsgi"},
                    [req()])
    assert result["responses"][0]["status"] == 200


@pytest.fixture
def venv(tmp_path):
    """A virtual environment made by Debian's python3, with a module only
    it has."""
    path = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip",
                    str(path)], check=True, timeout=scaled(120))
    site = path / "lib" / ("python%d.%d" % sys.version_info[:2]) / \
        "site-packages"
    (site / "venvapp.py").write_text(
        "import sys\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [sys.prefix.encode()]\n")
    return path


def test_home_is_a_virtualenv(tmp_path, venv):
    result, log = run(tmp_path, {"home": str(venv), "module": "venvapp"},
                      [req()])
    assert body_of(result["responses"][0]) == str(venv).encode(), log


def test_without_home_the_venv_module_is_not_found(tmp_path, venv):
    _, log = run(tmp_path, {"module": "venvapp"}, [], expect_setup=False)
    assert 'Python failed to import module "venvapp"' in log


def test_long_traceback_is_logged_in_pieces(tmp_path):
    """A log line holds about 2 KiB: a long traceback is cut at line ends
    into several, none lost."""
    _, log = run(tmp_path, dict(BAD, callable="long_traceback"), [req()])
    records = log.split("\n[error] ")
    assert len(records) >= 4
    assert all(len(r) <= 1536 + 100 for r in records)
    for i in range(400):
        assert "message line %03d\n" % i in log + "\n"


@pytest.mark.parametrize("chunked", [False, True])
def test_werkzeug_reads_a_body_of_unknown_length(tmp_path, chunked):
    """wsgi.input_terminated: Werkzeug (Flask) reads a chunked body rather
    than taking it as empty."""
    pytest.importorskip("werkzeug")
    body = ["0123456789" * 100] * 3
    r = req("/", method="POST", body=body, chunked=chunked)
    if not chunked:
        r["headers"].append(["Content-Length", "3000"])
    result, log = run(tmp_path, {"module": "werkzeug_body"}, [r])
    assert body_of(result["responses"][0]) == b"got 3000 bytes: 0123456789"


def test_calls_after_the_request_raise(tmp_path):
    """start_response, write() and wsgi.input kept past their request and
    called at exit (atexit, as Unit's ctx_iter_atexit test does) raise
    RuntimeError; the process ends with 0."""
    out = tmp_path / "late.txt"
    result, _ = run(tmp_path, dict(BAD, callable="atexit_start"),
                    [req(headers=[["X-Out", str(out)]])])
    assert body_of(result["responses"][0]) == b"registered"
    assert out.read_text().splitlines() == [
        "start_response() is called outside of WSGI request processing",
        "write() is called outside of WSGI request processing",
        "wsgi.input.read() is called outside of WSGI request processing"]


def test_exit_in_the_app_is_a_500(tmp_path):
    """SystemExit from the app is an error like another (Unit: 500); the
    worker goes on."""
    result, log = run(tmp_path, dict(BAD, callable="exits"), [req(), req()])
    assert [r["status"] for r in result["responses"]] == [500, 500]
    assert "SystemExit" in log


def test_environ_field_names_long_and_cased(tmp_path):
    """Names past the key cache's 32 bytes, and the same name in another
    case, still make one HTTP_ key each, joined when repeated."""
    long_name = "X-" + "Long-" * 10
    key = "HTTP_" + long_name.upper().replace("-", "_")
    reqs = [req(headers=[[long_name, "a"], [long_name.lower(), "b"],
                         ["Accept", "1"], ["ACCEPT", "2"]]),
            req(headers=[[long_name, "c"], ["accept", "3"]])]
    result, _ = run(tmp_path, {"module": "environ"}, reqs)
    e1, e2 = [json.loads(r["body"]) for r in result["responses"]]
    assert e1[key] == "a, b" and e1["HTTP_ACCEPT"] == "1, 2"
    assert e2[key] == "c" and e2["HTTP_ACCEPT"] == "3"


def test_client_gone_mid_response(tmp_path):
    """A write the runtime refuses (the client left) stops the iteration
    (close() is called) or raises in write(); the request is cut short and
    the worker serves the next one."""
    conf = {"targets": {
        "endless": {"module": "bad", "callable": "endless"},
        "write": {"module": "bad", "callable": "write_forever"},
        "closed": {"module": "bad", "callable": "closed"}}}
    result, log = run(tmp_path, conf, [req(target_index=0, gone_after=3),
                                       req(target_index=1, gone_after=2),
                                       req(target_index=2)])
    endless, write, closed = result["responses"]
    assert endless["ok"] is False and len(endless["pieces"]) == 3
    assert write["ok"] is False and len(write["pieces"]) == 2
    assert "failed to send the response" in log
    assert body_of(closed) == b"endless"


def test_list_too_big_to_join_goes_in_pieces(tmp_path):
    result, _ = run(tmp_path, dict(BAD, callable="biglist"), [req()])
    resp = result["responses"][0]
    assert body_of(resp) == b"".join(b"%04d" % i * 250 for i in range(40))
    assert resp["pieces"] == [["respond", 1000]] + [["write", 1000]] * 39
    assert resp["ok"] and resp["last"] is False
