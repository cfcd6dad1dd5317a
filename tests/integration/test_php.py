"""PHP apps through a whole server: main discovers build/modules/
php8.2.wharf.so, the router starts app processes, requests and their
bodies travel over the app protocol, PHP runs them under the module's own
SAPI.  The scripts are in apps/php/; the expected answers are those of
NGINX Unit 1.35's PHP module on the same requests (checked by hand against
/tmp/unit, see docs/compatibility.md "PHP (issue 9)")."""

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import tempfile
import time

import pytest

from lib.wharf import SAN, WHARF_BIN, children_of, scaled

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "php")
WWW = os.path.join(APPS, "www")
MODULES = os.path.join(os.path.dirname(WHARF_BIN), "modules") if WHARF_BIN \
    else ""
MODULE = os.path.join(MODULES, "php8.2.wharf.so")

ROUTED = {"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
          "routes": [{"action": {"return": 204}}]}


def san_env(conf):
    """Under ASan PHP cannot load its extensions (it dlopen()s them with
    RTLD_DEEPBIND, which the sanitizer refuses): no conf.d then, so no
    OPcache, mysqli or posix in sanitizer runs."""
    if SAN:
        conf.setdefault("environment", {})["PHP_INI_SCAN_DIR"] = ""
    return conf


def php_app(root=WWW, **options):
    conf = {"type": "php", "root": root}
    conf.update(options)
    return san_env(conf)


class PhpServer:
    """A server whose listener passes to applications/app; configure()
    replaces the app."""

    def __init__(self, server, tmpdir):
        self.server = server
        self.tmpdir = tmpdir
        self.api = server.api()

    def configure(self, app, passes="applications/app", routes=None,
                  settings=None):
        config = {"listeners": {"127.0.0.1:%d" % self.server.port:
                                {"pass": passes}},
                  "applications": {"app": app}}
        if routes is not None:
            config["routes"] = routes
        if settings is not None:
            config["settings"] = settings
        return self.api.put("/config", config)

    def connect(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.server.port,
                                          timeout=scaled(timeout))

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = self.connect(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def get(self, path="/", **kw):
        status, headers, body = self.request("GET", path, **kw)
        return status, dict(headers), body

    def json(self, path, **kw):
        status, _, body = self.get(path, **kw)
        assert status == 200, (status, body, self.log()[-2000:])
        return json.loads(body)

    def log(self):
        return self.server.log_text()

    def app_pids(self):
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


def wait_until(pred, timeout):
    deadline = time.monotonic() + scaled(timeout)
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pred()


@pytest.fixture
def php(wharf):
    if not os.path.exists(MODULE):
        pytest.skip("the PHP module is not built (make deps: php8.2-dev)")
    tmpdir = tempfile.mkdtemp(prefix="wharf-php-")
    server = wharf(ROUTED, extra_args=["--modulesdir", MODULES,
                                       "--tmpdir", tmpdir])
    assert "module: php 8.2." in server.log_text()
    p = PhpServer(server, tmpdir)
    yield p
    if server.alive():
        pids = p.app_pids()
        p.api.put("/config", {"listeners": {"127.0.0.1:%d" % server.port:
                                             {"pass": "routes"}},
                              "routes": ROUTED["routes"]})
        wait_until(lambda: not set(pids) & set(children_of(server.pid)), 30)
    shutil.rmtree(tmpdir, ignore_errors=True)


def configured(php, app, **kw):
    r = php.configure(app, **kw)
    assert r.status == 200, (r, php.log()[-3000:])
    return php


@pytest.fixture
def scratch():
    """A directory for marks and code the test writes."""
    path = tempfile.mkdtemp(prefix="wharf-php-t-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- the module ---------------------------------------------------------


def test_module_discovered_and_logged(php):
    m = re.search(r'module: php (8\.2\.\d+) "([^"]+)"', php.log())
    assert m and m.group(2) == MODULE
    r = php.api.get("/status/modules")
    assert r.status == 200 and "php" in json.dumps(r.json), r


@pytest.mark.parametrize("type_", ["php", "php 8", "php 8.2", "php8.2"])
def test_hello_world_types(php, type_):
    configured(php, php_app(type=type_))
    status, headers, body = php.get("/hello.php")
    assert status == 200 and body == b"Hello, World!"
    assert headers["Content-type"] == "text/html; charset=UTF-8"
    assert headers["Content-Length"] == "13"


def test_unknown_php_version_refused(php):
    r = php.configure(php_app(type="php 7"))
    assert r.status == 400
    assert "php 7" in json.dumps(r.json)


def test_bad_root_fails_start(php, scratch):
    php.server.log_ignore.append(r"root realpath\(")
    r = php.configure(php_app(root=os.path.join(scratch, "missing")))
    assert r.status == 500
    assert r.json["error"] == "Failed to apply new configuration."
    # The app's lines reach the log through main's pipe: maybe later.
    assert wait_until(lambda: "root realpath(%s) failed" % os.path.join(
        scratch, "missing") in php.log(), 10)


# ---- routing (Unit's rules) --------------------------------------------


def test_index_and_directories(php):
    configured(php, php_app())
    assert php.get("/")[2] == b"root index"
    assert php.get("/sub/")[2] == b"index of sub"
    status, headers, body = php.get("/sub?x=1")
    assert status == 301
    assert headers["Location"] == "http://127.0.0.1:%d/sub/?x=1" \
        % php.server.port


def test_custom_index(php):
    configured(php, php_app(index="main.php"))
    assert php.get("/sub/")[2] == b"custom index"
    assert php.get("/")[0] == 404


def test_missing_and_non_php(php):
    configured(php, php_app())
    assert php.get("/nope.php")[0] == 404
    assert php.get("/nope")[0] == 404
    assert php.get("/nope/")[0] == 404
    # An existing file that is not PHP: Unit's PHP module ends the request
    # with an error, which Unit answers 503.
    status, _, body = php.get("/file.txt")
    assert status == 503 and b"Error 503" in body


def test_path_info(php):
    configured(php, php_app())
    assert php.json("/pi.php/a/b") == {
        "path_info": "/a/b", "php_self": "/pi.php/a/b",
        "script_name": "/pi.php"}
    assert php.json("/pi.php") == {
        "path_info": None, "php_self": "/pi.php", "script_name": "/pi.php"}
    assert php.json("/pi.php/") == {
        "path_info": "/", "php_self": "/pi.php/", "script_name": "/pi.php"}
    # The first ".php/" splits: sub/index.php runs with PATH_INFO /x.
    assert php.get("/sub/index.php/x")[2] == b"index of sub"


def test_paths_stay_under_root(php):
    configured(php, php_app(root=os.path.join(WWW, "sub")))
    for path in ("/../hello.php", "/%2e%2e/hello.php", "/a/../../hello.php",
                 "/..%2fhello.php"):
        status, _, body = php.get(path)
        assert body != b"Hello, World!", path
        assert status in (400, 404), (path, status)


def test_script_front_controller(php):
    configured(php, php_app(root=os.path.join(APPS, "front"),
                            script="index.php"))
    for uri in ("/", "/other.php", "/any/thing?q=1", "/missing.php"):
        got = php.json(uri)
        assert got["front"] is True and got["uri"] == uri
        assert got["script_name"] == "/index.php"
        assert got["script_filename"] == os.path.join(APPS, "front",
                                                      "index.php")
        assert got["cwd"] == os.path.join(APPS, "front")


def test_script_outside_root_refused_at_start(php):
    php.server.log_ignore.append(r"script is not under php root")
    r = php.configure(php_app(root=os.path.join(WWW, "sub"),
                              script="../hello.php"))
    assert r.status == 500
    assert wait_until(lambda: "script is not under php root" in php.log(),
                      10)


def test_targets(php):
    app = san_env({"type": "php", "targets": {
        "one": {"root": os.path.join(APPS, "t1")},
        "two": {"root": os.path.join(APPS, "t2"), "script": "app.php"}}})
    routes = [{"match": {"uri": "/two/*"},
               "action": {"pass": "applications/app/two"}},
              {"action": {"pass": "applications/app/one"}}]
    configured(php, app, passes="routes", routes=routes)
    assert php.get("/")[2] == ("t1 /index.php %s" % os.path.join(
        APPS, "t1")).encode()
    assert php.get("/two/x")[2] == ("t2 /app.php %s" % os.path.join(
        APPS, "t2")).encode()
    # Back and forth: each target runs in its own directory.
    assert php.get("/")[2].startswith(b"t1 ")


# ---- request variables ---------------------------------------------------


UNIT_SERVER_KEYS = {
    "DOCUMENT_ROOT", "HTTP_ACCEPT_ENCODING", "HTTP_HOST", "HTTP_X_FOO_BAR",
    "PHP_SELF", "QUERY_STRING", "REMOTE_ADDR", "REQUEST_METHOD",
    "REQUEST_TIME", "REQUEST_TIME_FLOAT", "REQUEST_URI", "SCRIPT_FILENAME",
    "SCRIPT_NAME", "SERVER_ADDR", "SERVER_NAME", "SERVER_PORT",
    "SERVER_PROTOCOL", "SERVER_SOFTWARE"}


def test_server_variables(php):
    configured(php, php_app())
    port = php.server.port
    status, _, body = php.request(
        "GET", "/server.php?x=1&y=%20",
        headers={"Host": "example.com:8080", "X-Foo-Bar": "a",
                 "Accept-Encoding": "identity"})
    got = json.loads(body)
    s = got["server"]
    # Unit's keys, and nothing of the process environment.
    assert set(s) == UNIT_SERVER_KEYS | {"HTTP_CONNECTION"} or \
        set(s) == UNIT_SERVER_KEYS, sorted(s)
    assert s["DOCUMENT_ROOT"] == WWW
    assert s["SCRIPT_FILENAME"] == os.path.join(WWW, "server.php")
    assert s["SCRIPT_NAME"] == s["PHP_SELF"] == "/server.php"
    assert s["REQUEST_URI"] == "/server.php?x=1&y=%20"
    assert s["QUERY_STRING"] == "x=1&y=%20"
    assert s["SERVER_NAME"] == "example.com"
    assert s["SERVER_PORT"] == str(port)
    assert s["SERVER_ADDR"] == s["REMOTE_ADDR"] == "127.0.0.1"
    assert s["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert s["SERVER_SOFTWARE"].startswith("Wharf/")
    assert s["HTTP_HOST"] == "example.com:8080"
    assert "HTTPS" not in s and "PATH" not in s
    assert got["sapi"] == "cli-server"
    assert got["cwd"] == WWW


def test_server_fields_joined_and_body_fields(php):
    configured(php, php_app())
    conn = php.connect()
    conn.putrequest("POST", "/server.php", skip_accept_encoding=True)
    conn.putheader("X-Dup", "a")
    conn.putheader("x-dup", "b")
    conn.putheader("Content-Type", "text/plain")
    conn.putheader("Content-Length", "3")
    conn.putheader("Authorization", "Basic dXNlcjpwYXNz")
    conn.endheaders(b"abc")
    s = json.loads(conn.getresponse().read())["server"]
    conn.close()
    assert s["HTTP_X_DUP"] == "a, b"
    assert s["CONTENT_TYPE"] == s["HTTP_CONTENT_TYPE"] == "text/plain"
    assert s["CONTENT_LENGTH"] == s["HTTP_CONTENT_LENGTH"] == "3"
    assert s["PHP_AUTH_USER"] == "user" and s["PHP_AUTH_PW"] == "pass"
    assert s["REQUEST_METHOD"] == "POST"


def test_get_post_cookie(php):
    configured(php, php_app())
    status, _, body = php.request(
        "POST", "/vars.php?a=1&b[]=2&b[]=3", body=b"p=x+y&q[k]=v",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Cookie": "c1=v1; c2=v%202"})
    got = json.loads(body)
    assert got["get"] == {"a": "1", "b": ["2", "3"]}
    assert got["post"] == {"p": "x y", "q": {"k": "v"}}
    assert got["cookie"] == {"c1": "v1", "c2": "v 2"}


def multipart(fields, files, boundary="wharfBoundary7MA4YWxk"):
    out = b""
    for name, value in fields.items():
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n"
                % (boundary.encode(), name.encode())) + value + b"\r\n"
    for name, (filename, data) in files.items():
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; "
                b"filename=\"%s\"\r\nContent-Type: application/octet-stream"
                b"\r\n\r\n" % (boundary.encode(), name.encode(),
                               filename.encode())) + data + b"\r\n"
    out += b"--%s--\r\n" % boundary.encode()
    return out, "multipart/form-data; boundary=" + boundary


def test_uploads_under_tmpdir_and_removed(php):
    configured(php, php_app(options={"admin": {
        "upload_max_filesize": "8M", "post_max_size": "16M"}}))
    data = os.urandom(3 * 1024 * 1024 + 17)
    body, ctype = multipart({"f": b"field value"},
                            {"up": ("a.bin", data)})
    status, _, resp = php.request("POST", "/vars.php", body=body,
                                  headers={"Content-Type": ctype})
    assert status == 200, resp
    got = json.loads(resp)
    assert got["post"] == {"f": "field value"}
    up = got["files"]["up"]
    assert up["name"] == "a.bin" and up["error"] == 0
    assert up["size"] == len(data)
    assert up["sha1"] == hashlib.sha1(data).hexdigest()
    assert os.path.realpath(up["tmp_dir"]) == os.path.realpath(php.tmpdir)
    # PHP removes the upload at the end of the request.
    assert not os.path.exists(up["tmp_name"])


def test_upload_too_large_reports_error(php):
    configured(php, php_app(options={"admin": {
        "upload_max_filesize": "1M", "post_max_size": "16M"}}))
    body, ctype = multipart({}, {"up": ("b.bin", b"x" * (2 * 1024 * 1024))})
    status, _, resp = php.request("POST", "/vars.php", body=body,
                                  headers={"Content-Type": ctype})
    assert status == 200
    assert json.loads(resp)["files"]["up"]["error"] == 1  # INI_SIZE


def test_php_input_large_body(php):
    configured(php, php_app(),
               settings={"http": {"max_body_size": 64 * 1024 * 1024}})
    data = os.urandom(20 * 1024 * 1024 + 3)
    status, _, body = php.request("PUT", "/input.php", body=data,
                                  headers={"Content-Type":
                                           "application/octet-stream"},
                                  timeout=120)
    assert status == 200
    assert body.decode() == "%d %s" % (len(data),
                                       hashlib.sha1(data).hexdigest())


def test_php_input_chunked_body(php):
    configured(php, php_app())
    conn = php.connect()
    conn.putrequest("POST", "/input.php")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.endheaders()
    pieces = [b"a" * 1000, b"b" * 70000, b"c"]
    for p in pieces:
        conn.send(b"%x\r\n%s\r\n" % (len(p), p))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    whole = b"".join(pieces)
    assert resp.status == 200
    assert body.decode() == "%d %s" % (len(whole),
                                       hashlib.sha1(whole).hexdigest())


# ---- responses -------------------------------------------------------------


def test_headers_status_cookies(php):
    configured(php, php_app())
    status, headers, body = php.request("GET", "/headers.php")
    assert status == 201 and body == b"ok"
    assert [v for k, v in headers if k == "X-A"] == ["1", "2"]
    assert [v for k, v in headers if k == "X-Replaced"] == ["new"]
    cookies = [v for k, v in headers if k == "Set-Cookie"]
    assert cookies == ["c1=v%201", "c2=v2; path=/p; HttpOnly"]


def test_location_redirects(php):
    configured(php, php_app())
    status, headers, _ = php.get("/redirect.php")
    assert status == 302 and headers["Location"] == "/elsewhere"


def test_large_response(php):
    configured(php, php_app())
    for n in (0, 1, 32 * 1024, 32 * 1024 + 1, 5 * 1024 * 1024 + 7):
        status, headers, body = php.get("/big.php?n=%d" % n, timeout=120)
        assert status == 200 and len(body) == n, n
        piece = b"0123456789" * 1000
        assert body == (piece * (n // len(piece) + 1))[:n] or \
            len(body) == n and body[:100] == piece[:100]


def test_head_request_has_no_body(php):
    configured(php, php_app())
    status, headers, body = php.request("HEAD", "/hello.php")
    assert status == 200 and body == b""


def test_streaming_flush(php, scratch):
    """flush() sends the head and the first part while the script waits
    for a mark the test makes only after reading that part."""
    configured(php, php_app())
    mark = os.path.join(scratch, "go")
    sock = socket.create_connection(("127.0.0.1", php.server.port),
                                    timeout=scaled(20))
    try:
        sock.sendall(b"GET /stream.php?mark=%s HTTP/1.1\r\nHost: x\r\n\r\n"
                     % mark.encode())
        got = b""
        while b"first\n" not in got:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        assert b"X-Stream: yes" in got and b"second" not in got
        head = got.split(b"\r\n\r\n")[0]
        assert b"Transfer-Encoding: chunked" in head
        open(mark, "w").close()
        while not got.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        assert b"second\n" in got
    finally:
        sock.close()


def test_fastcgi_finish_request(php, scratch):
    configured(php, php_app())
    seen = os.path.join(scratch, "seen")
    after = os.path.join(scratch, "after")
    status, headers, body = php.get("/finish.php?seen=%s&after=%s"
                                    % (seen, after), timeout=20)
    # The response is complete while the script still waits for `seen`.
    assert status == 200 and body == b"finished"
    assert headers["X-Finish"] == "1"
    assert not os.path.exists(after)
    open(seen, "w").close()
    assert wait_until(lambda: os.path.exists(after), 20)
    assert wait_until(lambda: open(after).read() == "true", 5)
    # The process goes on serving.
    assert php.get("/hello.php")[2] == b"Hello, World!"


# ---- errors ------------------------------------------------------------------


def test_fatal_error_500_and_logged(php):
    configured(php, php_app())
    status, _, body = php.get("/fatal.php")
    assert status == 500 and body == b"before"
    assert wait_until(lambda: "php message: PHP Fatal error:  Uncaught "
                      "Error: Call to undefined function "
                      "undefined_function()" in php.log(), 10)
    assert php.get("/hello.php")[2] == b"Hello, World!"


def test_uncaught_exception_500_and_logged(php):
    configured(php, php_app())
    status, _, body = php.get("/exc.php")
    assert status == 500 and body == b""
    assert wait_until(lambda: "PHP Fatal error:  Uncaught Exception: boom "
                      "here" in php.log(), 10)


def test_warnings_and_error_log_go_to_the_log(php):
    configured(php, php_app())
    assert php.get("/notice.php")[2] == b"ok"
    assert wait_until(lambda: "php message: a line from error_log()"
                      in php.log(), 10)
    assert "PHP Warning:  a user warning" in php.log()


def test_max_execution_time_then_next_request(php):
    configured(php, php_app(options={"admin": {"max_execution_time": "1"}}))
    status, _, body = php.get("/loop.php", timeout=60)
    pid = int(body)
    assert wait_until(lambda: "Maximum execution time of 1 second exceeded"
                      in php.log(), 30)
    assert int(php.get("/pid.php")[2]) == pid


def test_limits_timeout_then_next_request(php):
    configured(php, php_app(limits={"timeout": 1}))
    pid = int(php.get("/pid.php")[2])
    t0 = time.monotonic()
    status, _, _ = php.get("/sleep.php?s=60", timeout=60)
    assert status == 503
    # The script stops soon after; the same process serves the next one.
    status, _, body = php.get("/pid.php", timeout=60)
    assert status == 200 and int(body) == pid
    assert time.monotonic() - t0 < scaled(20)
    assert wait_until(lambda: "exceeded limits.timeout" in php.log(), 10)


def test_no_state_leaks_between_requests(php):
    configured(php, php_app())
    first = php.json("/leak.php?x=1")
    for i in range(3):
        status, headers, body = php.get("/leak.php?v=%d" % i)
        got = json.loads(body)
        assert status == 200
        assert got["global"] is False and got["constant"] is False
        assert got["static"] == 1 and got["code"] == 200
        # output_buffering (Debian's php.ini: 4096) opens one buffer.
        assert got["headers"] == [] and got["ob"] == first["ob"] <= 1
        assert got["get"] == {"v": str(i)}
        assert headers["X-Leak"] == str(i)
    assert first["static"] == 1
    status, _, _ = php.get("/leak.php?code=404")
    assert status == 404
    assert php.get("/leak.php")[0] == 200


def test_sessions(php, scratch):
    os.chmod(scratch, 0o777)
    configured(php, php_app(options={"admin": {"session.save_path":
                                               scratch}}))
    status, headers, body = php.get("/session.php")
    assert body.decode() == "1 " + scratch
    cookie = headers["Set-Cookie"].split(";")[0]
    assert cookie.startswith("PHPSESSID=")
    for n in (2, 3):
        assert php.get("/session.php", headers={"Cookie": cookie})[2] \
            .decode() == "%d %s" % (n, scratch)
    assert php.get("/session.php")[2].decode().startswith("1 ")
    assert any(f.startswith("sess_") for f in os.listdir(scratch))


# ---- options -------------------------------------------------------------------


def test_options_admin_and_user(php):
    configured(php, php_app(options={
        "admin": {"memory_limit": "77M"},
        "user": {"display_errors": "1"}}))
    got = php.json("/ini.php?names=memory_limit,display_errors")
    assert got["memory_limit"] == {"value": "77M", "settable": False}
    assert got["display_errors"] == {"value": "1", "settable": True}
    # ini_set() lasts one request.
    got = php.json("/ini.php?names=display_errors")
    assert got["display_errors"]["value"] == "1"


def test_options_file(php, scratch):
    ini = os.path.join(scratch, "php.ini")
    with open(ini, "w") as f:
        f.write("memory_limit = 55M\nshort_open_tag = On\n")
    configured(php, php_app(options={"file": ini,
                                     "admin": {"short_open_tag": "0"}}))
    got = php.json("/ini.php?names=memory_limit,short_open_tag")
    assert got["memory_limit"]["value"] == "55M"
    assert got["short_open_tag"]["value"] == "0"


def test_unknown_option_logged(php):
    configured(php, php_app(options={"admin": {"no_such_option": "1"}}))
    assert php.get("/hello.php")[2] == b"Hello, World!"
    assert wait_until(lambda: 'setting PHP option "no_such_option: 1" failed'
                      in php.log(), 10)


def test_disable_functions(php):
    configured(php, php_app(options={"admin": {
        "disable_functions": "getmypid"}}))
    status, _, _ = php.get("/pid.php")
    assert status == 500
    assert wait_until(lambda: "Call to undefined function getmypid()"
                      in php.log(), 10)


# ---- OPcache and restart -------------------------------------------------------


def test_opcache_on_and_shared_in_process(php):
    configured(php, php_app())
    first = php.json("/opcache.php")
    if not first["enabled"]:
        pytest.skip("PHP has no OPcache here (php8.2-opcache)")
    second = php.json("/opcache.php")
    assert second["pid"] == first["pid"]
    assert second["hits"] > first["hits"]


def test_restart_picks_up_new_code(php, scratch):
    script = os.path.join(scratch, "v.php")
    with open(script, "w") as f:
        f.write('<?php echo "one";')
    # Without timestamp checks OPcache alone would keep the old code.
    configured(php, php_app(root=scratch, options={"admin": {
        "opcache.validate_timestamps": "0"}}))
    assert php.get("/v.php")[2] == b"one"
    pids = php.app_pids()
    with open(script, "w") as f:
        f.write('<?php echo "two";')
    r = php.api.get("/control/applications/app/restart")
    assert r.status == 200
    assert wait_until(lambda: php.get("/v.php")[2] == b"two", 20)
    # The old process ends gracefully once the new one serves.
    assert wait_until(lambda: not set(pids) & set(php.app_pids()), 20)


def test_processes_serve_in_parallel(php):
    configured(php, php_app(processes=2))
    assert wait_until(lambda: len(php.app_pids()) == 2, 20)
    conns = [php.connect() for _ in range(2)]
    for c in conns:
        c.request("GET", "/sleep.php?s=1")
    bodies = []
    for c in conns:
        bodies.append(c.getresponse().read().decode())
        c.close()
    pids = {b.split()[1] for b in bodies}
    assert len(pids) == 2, bodies
    assert {int(p) for p in pids} == set(php.app_pids())


def test_client_gone_ends_script(php, scratch):
    """A client that leaves mid-response ends the script (PHP sees the
    aborted connection) and the process serves the next request."""
    configured(php, php_app())
    mark = os.path.join(scratch, "mark")
    pid = int(php.get("/pid.php")[2])
    sock = socket.create_connection(("127.0.0.1", php.server.port),
                                    timeout=scaled(20))
    sock.sendall(b"GET /abort.php?mark=%s HTTP/1.1\r\nHost: x\r\n\r\n"
                 % mark.encode())
    got = b""
    while len(got) < 20000:
        chunk = sock.recv(65536)
        assert chunk
        got += chunk
    sock.close()
    assert wait_until(lambda: os.path.exists(mark)
                      and open(mark).read() == "aborted", 20)
    assert int(php.get("/pid.php")[2]) == pid
