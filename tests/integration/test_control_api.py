"""The control API through the real control socket: GET /, /config paths
(percent-encoded keys, array indexes), PUT/POST/DELETE, no-op changes, error
replies (bad JSON with its location, invalid configs, 404, 405, 413, bad
Content-Length), /status counters, Connection: close, the socket's mode,
a TCP control address and the real-world Unit configs."""

import glob
import json
import os
import socket
import stat
import time

import pytest
import requests

from lib.configs import UNIT_CONFIGS_DIR, return_config, routes_config
from lib.control import Control, parse_raw_reply
from lib.wharf import free_port, listener_address, scaled, try_connect

UNIT_CONFIGS = sorted(glob.glob(os.path.join(UNIT_CONFIGS_DIR, "*.json")))

DONE = {"success": "Reconfiguration done."}


def get(port, path="/"):
    return requests.get("http://127.0.0.1:%d%s" % (port, path), timeout=10,
                        allow_redirects=False)


def listen_key(port):
    return "127.0.0.1:%d" % port


def enc_key(port):
    return "127.0.0.1%%3A%d" % port


@pytest.fixture
def server(wharf):
    return wharf(routes_config([{"match": {"uri": "/a"},
                                 "action": {"return": 201}},
                                {"action": {"return": 200}}]))


def stored_conf(server):
    with open(os.path.join(server.statedir, "conf.json"), "rb") as f:
        return json.loads(f.read())


def raw_tolerant(api, data):
    """Send data, read the reply; the server may close before all is sent."""
    family, addr = api.family, api.addr
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(scaled(30))
    out = b""
    try:
        s.connect(addr)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out


def wait_until(check, timeout=10.0, step=0.05):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


# -- GET --------------------------------------------------------------------

def test_get_root_is_certificates_config_status(server):
    r = server.api().get("/")
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json"
    assert set(r.json) == {"certificates", "config", "status"}, r.json
    assert r.json["certificates"] == {}
    assert r.json["config"] == server.config
    status = r.json["status"]
    for key in ("accepted", "active", "idle", "closed"):
        assert isinstance(status["connections"][key], int), status
    assert isinstance(status["requests"]["total"], int), status
    assert status["applications"] == {}, status


def test_reply_is_pretty_printed_with_tabs(server):
    r = server.api().get("/config")
    assert r.status == 200
    assert b'\n\t"listeners": {' in r.body, r.body
    assert b'\n\t\t"%s": {' % listen_key(server.port).encode() in r.body
    assert r.body.endswith(b"\n")
    assert json.loads(r.body) == server.config


def test_get_config_subpaths(server):
    api = server.api()
    key = enc_key(server.port)
    assert api.config("/config") == server.config
    assert api.config("/config/listeners") == server.config["listeners"]
    assert api.config("/config/listeners/" + key) == {"pass": "routes"}
    assert api.config("/config/listeners/%s/pass" % key) == "routes"
    # an unencoded ':' is a plain character of the segment as well
    assert api.config("/config/listeners/%s/pass"
                      % listen_key(server.port)) == "routes"
    assert api.config("/config/routes/0/match/uri") == "/a"
    assert api.config("/config/routes/1/action") == {"return": 200}
    # one trailing slash and a query are ignored
    assert api.config("/config/routes/1/action/") == {"return": 200}
    assert api.config("/config/routes/1?x=1") == {"action": {"return": 200}}
    # a percent-encoded letter names the same key
    assert api.config("/config/routes/0/%61ction") == {"return": 201}


@pytest.mark.parametrize("path", [
    "/config/nope",
    "/config/routes/2",
    "/config/routes/x",
    "/config/routes/-1",
    "/config/routes/0/action/return/deeper",
    "/config/listeners/127.0.0.1%3A1",
    "/config//routes",
    "/nothing",
    "/configx",
])
def test_get_missing_path_is_404(server, path):
    r = server.api().get(path)
    assert r.status == 404, (path, r)
    assert "error" in r.json, r.json


# -- PUT / POST / DELETE ----------------------------------------------------

def test_put_scalar_takes_effect_before_the_reply(server):
    api = server.api()
    r = api.put("/config/routes/1/action/return", 204)
    assert (r.status, r.json) == (200, DONE)
    # the reply comes after the router applied it: no waiting here
    assert get(server.port, "/x").status_code == 204
    assert get(server.port, "/a").status_code == 201
    assert api.config("/config/routes/1/action/return") == 204
    assert stored_conf(server)["routes"][1]["action"]["return"] == 204


def test_put_whole_config(server):
    api = server.api()
    conf = return_config(418)
    conf["listeners"] = server.config["listeners"]
    r = api.put("/config", conf)
    assert (r.status, r.json) == (200, DONE)
    assert api.config() == conf
    assert get(server.port).status_code == 418
    assert stored_conf(server) == conf


def test_put_new_listener_with_encoded_key(server):
    api = server.api()
    port = free_port()
    r = api.put("/config/listeners/" + enc_key(port), {"pass": "routes"})
    assert (r.status, r.json) == (200, DONE), r
    assert listen_key(port) in api.config("/config/listeners")
    assert get(port, "/a").status_code == 201
    # and gone again
    r = api.delete("/config/listeners/" + enc_key(port))
    assert (r.status, r.json) == (200, DONE), r
    assert not try_connect(*listener_address(listen_key(port)))
    assert get(server.port, "/a").status_code == 201


def test_put_array_index(server):
    api = server.api()
    # replace element 0
    r = api.put("/config/routes/0", {"match": {"uri": "/b"},
                                     "action": {"return": 202}})
    assert r.status == 200, r
    assert get(server.port, "/b").status_code == 202
    assert get(server.port, "/a").status_code == 200
    # an index past the end is refused
    r = api.put("/config/routes/3", {"action": {"return": 203}})
    assert r.status == 404, r
    assert len(api.config("/config/routes")) == 2


def test_put_at_array_length_appends(server):
    api = server.api()
    route = {"action": {"return": 299}}
    r = api.put("/config/routes/2", route)
    assert (r.status, r.json) == (200, DONE), r
    routes = api.config("/config/routes")
    assert len(routes) == 3 and routes[2] == route


def test_post_appends_to_array(server):
    api = server.api()
    # insert a route in front, then make the old catch-all unreachable...
    r = api.post("/config/routes", {"match": {"uri": "/p"},
                                    "action": {"return": 207}})
    assert (r.status, r.json) == (200, DONE), r
    routes = api.config("/config/routes")
    assert len(routes) == 3
    assert routes[2] == {"match": {"uri": "/p"}, "action": {"return": 207}}
    # ...appended after the catch-all, so never reached
    assert get(server.port, "/p").status_code == 200
    # POST into a nested array
    r = api.put("/config/routes/2/match/uri", ["/q"])
    assert r.status == 200, r
    r = api.post("/config/routes/2/match/uri", "/r")
    assert r.status == 200, r
    assert api.config("/config/routes/2/match/uri") == ["/q", "/r"]


def test_post_not_allowed_on_objects_and_root(server):
    api = server.api()
    r = api.post("/config/listeners", {"pass": "routes"})
    assert r.status == 405, r
    assert r.json == {"error": "Method isn't allowed."}
    r = api.post("/config", {})
    assert r.status == 405, r
    r = api.post("/config/nope", [])
    assert r.status == 404, r
    assert api.config() == server.config


def test_delete(server):
    api = server.api()
    r = api.delete("/config/routes/0")
    assert (r.status, r.json) == (200, DONE), r
    assert api.config("/config/routes") == [{"action": {"return": 200}}]
    assert get(server.port, "/a").status_code == 200
    r = api.delete("/config/routes/5")
    assert r.status == 404, r
    r = api.delete("/config/nope")
    assert r.status == 404, r
    assert r.json == {"error": "Value doesn't exist."}


UNIT_DEFAULT = {"listeners": {}, "routes": [], "applications": {}}


def test_fresh_state_has_units_default_config(wharf):
    """A fresh state directory starts on Unit 1.35's default (not {}),
    shown by GET /config and GET /, stored only once it changes; so a
    PUT into /config/applications or /config/listeners works at once."""
    server = wharf(None)
    api = server.api()
    assert api.config() == UNIT_DEFAULT
    r = api.get("/")
    assert r.status == 200 and r.json["config"] == UNIT_DEFAULT, r
    assert not os.path.exists(os.path.join(server.statedir, "conf.json"))
    port = free_port()
    r = api.put("/config/listeners/127.0.0.1:%d" % port, {"pass": "routes"})
    assert (r.status, r.json) == (200, DONE), r
    r = api.put("/config/applications", {})
    assert (r.status, r.json) == (200, DONE), r
    want = dict(UNIT_DEFAULT,
                listeners={"127.0.0.1:%d" % port: {"pass": "routes"}})
    assert api.config() == want
    assert stored_conf(server) == want
    assert api.put("/config", UNIT_DEFAULT).status == 200


def test_delete_whole_config(server):
    api = server.api()
    r = api.delete("/config")
    assert (r.status, r.json) == (200, DONE), r
    assert api.config() == {}
    assert not try_connect(*listener_address(listen_key(server.port)))
    assert stored_conf(server) == {}


def test_unchanged_config_is_a_noop(server):
    api = server.api()
    r = api.put("/config/routes/1/action/return", 204)
    assert r.status == 200
    path = os.path.join(server.statedir, "conf.json")
    before = os.stat(path)
    lines = server.log_text().count("\n")
    for _ in range(3):
        r = api.put("/config/routes/1/action/return", 204)
        assert (r.status, r.json) == (200, DONE), r
    r = api.put("/config", api.config())
    assert (r.status, r.json) == (200, DONE), r
    after = os.stat(path)
    # not rewritten: the rename of a new file would change the inode
    assert (before.st_ino, before.st_mtime_ns) == \
        (after.st_ino, after.st_mtime_ns)
    assert server.log_text().count("\n") == lines, server.log_text()
    assert get(server.port).status_code == 204


# -- errors -----------------------------------------------------------------

def test_invalid_json_reports_location(server):
    api = server.api()
    r = api.put("/config/routes/1", b'{"a": }')
    assert r.status == 400, r
    assert r.json["error"] == "Invalid JSON."
    assert r.json["detail"]
    assert r.json["location"] == {"offset": 6, "line": 1, "column": 7}, r.json
    r = api.put("/config", b'{"a": 1,\n "b" x}')
    assert r.status == 400, r
    assert r.json["location"] == {"offset": 14, "line": 2, "column": 6}, r.json
    assert api.config() == server.config


def test_empty_body_is_invalid_json(server):
    r = server.api().put("/config", b"")
    assert r.status == 400, r
    assert r.json["error"] == "Invalid JSON."
    assert "empty JSON payload" in r.json["detail"], r.json


@pytest.mark.parametrize("path,value,detail", [
    ("/config/routes/1/action/x", 1, 'Unknown parameter "x".'),
    ("/config/bogus", {}, 'Unknown parameter "bogus".'),
    ("/config/listeners/%(key)s/pass", "routes/y",
     'Request "pass" points to invalid location "routes/y".'),
    ("/config/routes/1/action/return", "abc", None),
    ("/config/listeners/%(key)s", {"x": 1}, None),
])
def test_invalid_config_refused_and_kept(server, path, value, detail):
    api = server.api()
    before = stored_conf(server) if os.path.exists(
        os.path.join(server.statedir, "conf.json")) else None
    r = api.put(path % {"key": enc_key(server.port)}, value)
    assert r.status == 400, r
    assert r.json["error"] == "Invalid configuration.", r.json
    assert r.json.get("detail"), r.json
    if detail is not None:
        assert r.json["detail"] == detail, r.json
    assert api.config() == server.config
    assert get(server.port, "/a").status_code == 201
    if before is not None:
        assert stored_conf(server) == before


def test_unsupported_feature_refused(server):
    api = server.api()
    r = api.put("/config/listeners/127.0.0.1:1",
                {"pass": "routes", "backlog": 1024})
    assert r.status == 400, r
    assert "not supported yet" in r.json.get("detail", ""), r.json


@pytest.mark.parametrize("method,path", [
    ("PATCH", "/config"),
    ("OPTIONS", "/config/routes"),
    ("PUT", "/status"),
    ("POST", "/status"),
    ("DELETE", "/status/connections"),
    ("PUT", "/"),
    ("DELETE", "/"),
])
def test_wrong_method_is_405(server, method, path):
    body = b"{}" if method in ("PUT", "POST", "PATCH") else None
    r = server.api().request(method, path, body)
    assert r.status == 405, (method, path, r)
    assert "error" in r.json
    assert server.api().config() == server.config


def test_body_over_the_limit_is_413(server):
    api = server.api()
    data = (b"PUT /config HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: %d\r\n\r\n" % (9 * 1024 * 1024)) + b"{" * 1000
    status, headers, body = parse_raw_reply(api.raw(data))
    assert status == 413, body
    assert "error" in json.loads(body)
    assert headers.get("connection") == "close"
    # chunked, without a length: refused while it streams in
    head = (b"PUT /config HTTP/1.1\r\nHost: localhost\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"[" + b"0," * 32767 + b"0"
    data = head + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 200
    status, headers, body = parse_raw_reply(raw_tolerant(api, data))
    assert status == 413, body
    assert api.config() == server.config


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1x", b"1, 2"])
def test_bad_content_length_is_400(server, value):
    data = (b"PUT /config HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: " + value + b"\r\n\r\n{}")
    status, headers, _ = parse_raw_reply(server.api().raw(data))
    assert status == 400, status
    assert server.api().config() == server.config


def test_replies_close_the_connection(server):
    api = server.api()
    key = enc_key(server.port)
    cases = [
        b"GET /config HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PATCH /config HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"PUT /config/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{]",
        b"PUT /config/listeners/" + key.encode() + b"/pass HTTP/1.1\r\n"
        b"Host: x\r\nContent-Length: 8\r\n\r\n\"routes\"",
        b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for data in cases:
        # a second request on the same connection is never answered: raw()
        # reads until the server closes, which it must do by itself
        raw = api.raw(data + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.count(b"HTTP/1.1 ") == 1, raw[:300]
        status, headers, body = parse_raw_reply(raw)
        assert headers.get("connection") == "close", (data, headers)
        assert int(headers["content-length"]) == len(body), (data, headers)
        json.loads(body)


# -- /status ----------------------------------------------------------------

def test_status_paths(server):
    api = server.api()
    st = api.config("/status")
    assert set(st["connections"]) >= {"accepted", "active", "idle", "closed"}
    assert "total" in st["requests"]
    assert st["applications"] == {}
    assert set(api.config("/status/connections")) == set(st["connections"])
    assert isinstance(api.config("/status/requests/total"), int)
    assert api.get("/status/nope").status == 404
    assert api.get("/status/connections/nope").status == 404


def test_status_counts_requests(server):
    api = server.api()
    before = api.config("/status")
    n = 5
    for _ in range(n):
        assert get(server.port).status_code == 200   # one connection each
    s = requests.Session()
    for _ in range(n):
        assert s.get(server.url("/a"), timeout=10).status_code == 201
    s.close()

    def grown():
        st = api.config("/status")
        if (st["requests"]["total"] >= before["requests"]["total"] + 2 * n
                and st["connections"]["accepted"]
                >= before["connections"]["accepted"] + n + 1
                and st["connections"]["closed"]
                >= before["connections"]["closed"] + n + 1):
            return st
        return None

    st = wait_until(grown)
    assert st, (before, api.config("/status"))
    c = st["connections"]
    assert c["accepted"] >= c["closed"] + c["active"], st
    # an open idle keep-alive connection is counted as such
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    idle = wait_until(
        lambda: api.config("/status/connections")["idle"] >= 1)
    sock.close()
    assert idle, api.config("/status")


# -- the control socket -----------------------------------------------------

def test_unix_socket_mode_0600_by_default(server):
    mode = os.stat(server.control_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600, oct(mode)


def test_control_mode_option(wharf):
    server = wharf(return_config(), extra_args=["--control-mode", "0660"])
    mode = os.stat(server.control_path).st_mode
    assert stat.S_IMODE(mode) == 0o660, oct(mode)
    assert server.api().ready()


def test_control_on_tcp(wharf):
    port = free_port()
    server = wharf(return_config(), control="127.0.0.1:%d" % port)
    api = Control("127.0.0.1:%d" % port)
    assert api.wait_ready()
    assert api.config() == server.config
    r = api.put("/config/routes/0/action/return", 203)
    assert (r.status, r.json) == (200, DONE), r
    assert get(server.port).status_code == 203
    assert not os.path.exists(server.control_path)


def test_control_socket_removed_at_exit(wharf):
    server = wharf(return_config())
    assert os.path.exists(server.control_path)
    server.stopped_by_test = True
    assert server.stop() == 0
    assert not os.path.exists(server.control_path)


# -- real-world Unit configs ------------------------------------------------

def _rewrite_listeners(conf):
    """Every listener on a free 127.0.0.1 port (keeps the names unique)."""
    listeners = conf.get("listeners")
    if isinstance(listeners, dict):
        conf["listeners"] = {"127.0.0.1:%d" % free_port(): v
                             for v in listeners.values()}
    return conf


def _rewrite_paths(obj, root):
    if isinstance(obj, dict):
        return {k: _rewrite_paths(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rewrite_paths(v, root) for v in obj]
    if isinstance(obj, str) and obj.startswith("/") and \
            not obj.startswith("/dev/"):
        return root + obj
    return obj


@pytest.mark.skipif(not UNIT_CONFIGS, reason="no shared/unit-configs")
@pytest.mark.parametrize("path", UNIT_CONFIGS,
                         ids=[os.path.basename(p)[:-5] for p in UNIT_CONFIGS])
def test_unit_config_accepted_or_not_supported_yet(wharf, tmp_path, path):
    server = wharf(None)
    api = server.api()
    before = api.config()
    with open(path, "rb") as f:
        conf = json.loads(f.read())
    conf = _rewrite_listeners(conf)
    # paths (shares, applications' homes, sockets) into the tmp dir; URIs
    # such as "/static/*" in "match" stay as they are
    for section in ("applications", "upstreams", "settings"):
        if section in conf:
            conf[section] = _rewrite_paths(conf[section], str(tmp_path))
    r = api.put("/config", conf)
    assert r.status in (200, 400, 500), r
    if r.status == 500:
        # Valid, but its applications' code is not here: their first
        # process cannot import it, and the change is refused as Unit
        # refuses it.
        assert "applications" in conf, r
        assert r.json == {"error": "Failed to apply new configuration."}
        assert api.config() == before
        # the app process says why at [alert], as Unit's does
        server.log_ignore.append(r"Failed to initialise config")
        # The PHP module's: a root that is not here, and Satis's
        # /dev/stdout, which its www-data user cannot open here.
        server.log_ignore.append(r"root realpath\(")
        server.log_ignore.append(r'open\("/dev/std(out|err)"\) failed')
    elif r.status == 400:
        text = json.dumps(r.json)
        assert "Unknown parameter" not in text, r.json
        # An application whose language module is not installed is refused
        # as Unit refuses it.
        detail = r.json.get("detail", "")
        assert "not supported yet" in detail or \
            "among the available application modules" in detail, r.json
        assert api.config() == before
    else:
        assert r.json == DONE
        assert api.config() == conf
        for name in conf.get("listeners", {}):
            assert try_connect(*listener_address(name)), name
        assert api.delete("/config").status == 200


# -- bodies larger than the first read buffer -------------------------------

def test_large_bodies_keep_their_request_line(server):
    """A body that outgrows the first read buffer (4 KiB) must not change
    where the request goes: method and path are kept across the growth."""
    api = server.api()
    listen = {listen_key(server.port): {"pass": "routes"}}
    for n, size in enumerate((100, 300, 1000, 3000, 100, 3000)):
        conf = {"listeners": listen,
                "routes": [{"match": {"uri": "/r%d" % i},
                            "action": {"return": 204}}
                           for i in range(size)]
                + [{"action": {"return": 200 + n}}]}
        r = api.put("/config", conf)
        assert (r.status, r.json) == (200, DONE), (size, len(json.dumps(conf)),
                                                   r)
        assert get(server.port, "/zz").status_code == 200 + n
    assert server.alive()
