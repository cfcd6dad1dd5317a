"""The access log (path string; object with "path", "format" as a string or
a JSON object, and "if"; Unit's default combined format; "unix:" for unix
clients; SIGUSR1 reopens it), its delivery (batched per thread and written
by a writer thread: every line of a burst larger than the buffers arrives,
a reopen under load loses none, a stalled file system does not stall
serving and its drops are counted, lines of a quiet server arrive within
about a second, a graceful stop flushes) and the settings.http keys with a visible
effect (server_version, max_body_size, body_buffer_size,
large_header_buffer_size/large_header_buffers, discard_unsafe_fields,
log_route)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from lib.configs import routes_config
from lib.rawhttp import Reader, exchange, request, wait_closed
from lib.wharf import SAN, refuse_config, scaled

# $remote_addr - - [$time_local] "$request_line" $status $body_bytes_sent
# "$header_referer" "$header_user_agent"
COMBINED = re.compile(
    r'^(?P<addr>\S+) - - \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d '
    r'[+-]\d{4})\] "(?P<line>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<ref>[^"]*)" "(?P<ua>[^"]*)"$')


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def wait_lines(path, count=1, timeout=10.0):
    """Wait until the file has at least `count` complete lines."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        text = read(path)
        lines = text.splitlines() if text.endswith("\n") else \
            text.splitlines()[:-1]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def wait_match(path, pattern, timeout=10.0):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        m = re.search(pattern, read(path), re.M)
        if m or time.monotonic() > deadline:
            return m
        time.sleep(0.05)


def ask(server, path="/", method="GET", headers=(), body=b"", version=None,
        host="localhost"):
    hdrs = list(headers) + [("Connection", "close")]
    if body:
        hdrs.append(("Content-Length", str(len(body))))
    kw = {"version": version} if version else {}
    with server.connect() as s:
        return exchange(s, request(method=method, path=path, headers=hdrs,
                                   body=body, host=host, **kw),
                        head_request=(method == "HEAD"))


def with_log(routes, log, http=None, listener="127.0.0.1:{port}",
             extra_listeners=None):
    c = routes_config(routes, http=http, listener=listener)
    if extra_listeners:
        c["listeners"].update(extra_listeners)
    c["access_log"] = log
    return c


def routes_for(docroot):
    return [{"match": {"uri": "/r/*"}, "action": {"return": 204}},
            {"match": {"uri": "/teapot"}, "action": {"return": 418}},
            {"action": {"share": str(docroot) + "$uri"}}]


# -- default (combined) format ---------------------------------------------------

def test_string_path_combined_format(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log))
    r = ask(server, "/a.txt?x=1&y", headers=[("Referer", "http://ref/"),
                                              ("User-Agent", "agent/1.0")])
    assert r.status == 200
    lines = wait_lines(log)
    assert len(lines) == 1, lines
    m = COMBINED.match(lines[0])
    assert m, lines[0]
    assert m.group("addr") == "127.0.0.1"
    assert m.group("line") == "GET /a.txt?x=1&y HTTP/1.1"
    assert m.group("status") == "200"
    assert m.group("bytes") == str(len(b"alpha file\n"))
    assert m.group("ref") == "http://ref/"
    assert m.group("ua") == "agent/1.0"


def test_combined_dashes_and_statuses(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log))
    assert ask(server, "/missing").status == 404
    assert ask(server, "/teapot").status == 418
    assert ask(server, "/r/x", version="HTTP/1.0").status == 204
    lines = wait_lines(log, 3)
    assert len(lines) == 3, lines
    ms = [COMBINED.match(l) for l in lines]
    assert all(ms), lines
    # Each request came on its own connection, which any I/O thread may
    # serve: a thread logs after it sent the response, so another thread
    # may log the next request first (Unit's threads race the same way).
    by = {m.group("line").split(" ")[1]: m for m in ms}
    assert {p: m.group("status") for p, m in by.items()} == {
        "/missing": "404", "/teapot": "418", "/r/x": "204"}, lines
    assert by["/missing"].group("ref") == "-"
    assert by["/missing"].group("ua") == "-"
    assert by["/r/x"].group("line") == "GET /r/x HTTP/1.0"
    assert by["/r/x"].group("bytes") == "0"


def test_time_local_is_now(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log))
    ask(server, "/r/t")
    m = COMBINED.match(wait_lines(log)[0])
    assert m
    t = time.mktime(time.strptime(m.group("time"), "%d/%b/%Y:%H:%M:%S %z"))
    assert abs(t - time.time()) < 120


def test_pipelined_requests_each_logged(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log))
    data = b"".join(request(path="/r/%d" % i, headers=[("Referer", "R%d" % i)])
                    for i in range(3))
    with server.connect() as s:
        s.sendall(data)
        reader = Reader(s)
        for _ in range(3):
            assert reader.read_response().status == 204
    lines = wait_lines(log, 3)
    for i in range(3):
        assert any('"GET /r/%d HTTP/1.1" 204 0 "R%d" "-"' % (i, i) in l
                   for l in lines), lines


def test_bad_request_logged(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log))
    with server.connect() as s:
        s.sendall(b"GET /\n")
        wait_closed(s)
    assert wait_match(log, r'"-" 400 \d+ "-" "-"$'), read(log)


def test_unix_client_logged_as_unix(wharf, docroot, tmp_path):
    d = tempfile.mkdtemp(prefix="wfa", dir="/tmp")
    try:
        path = os.path.join(d, "a.sock")
        log = str(tmp_path / "access.log")
        wharf(with_log(routes_for(docroot), log,
                       extra_listeners={"unix:" + path: {
                           "pass": "routes"}}))
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            assert exchange(s, request(path="/r/u", headers=[
                ("Connection", "close")])).status == 204
        assert wait_match(
            log, r'^unix: - - \[.+\] "GET /r/u HTTP/1.1" 204 0 "-" "-"$'), \
            read(log)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_ipv6_client_logged(wharf, docroot, tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log, listener="[::1]:{port}"))
    with socket.create_connection(("::1", server.port), timeout=10) as s:
        assert exchange(s, request(path="/r/6", headers=[
            ("Connection", "close")])).status == 204
    assert wait_match(log, r'^::1 - - \[.+\] "GET /r/6 HTTP/1.1" 204 0'), \
        read(log)


def test_forwarded_address_logged(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    conf = with_log(routes_for(docroot), log)
    conf["listeners"]["127.0.0.1:{port}"]["forwarded"] = {
        "client_ip": "X-Forwarded-For", "source": "127.0.0.1"}
    server = wharf(conf)
    ask(server, "/r/f", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert wait_match(log, r'^203\.0\.113\.7 - - .*"GET /r/f HTTP/1.1" 204'), \
        read(log)


# -- object form: format string, JSON object, if ------------------------------

def test_object_with_format_string(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), {
        "path": log,
        "format": "$uri|$status|$method|$host|$body_bytes_sent|"
                  "$arg_a|$header_x_h|$cookie_c|${uri}x|$dollar|"
                  "$request_uri|$request_time|BLAH\t0123"}))
    ask(server, "/a%2Etxt?a=1", host="h.example:1",
        headers=[("X-H", "hv"), ("Cookie", "c=cv")])
    lines = wait_lines(log)
    assert len(lines) == 1, lines
    f = lines[0].split("|")
    assert f[:11] == ["/a.txt", "200", "GET", "h.example", "11", "1", "hv",
                      "cv", "/a.txtx", "$", "/a%2Etxt?a=1"], f
    assert re.match(r"^\d+\.\d{3}$", f[11]), f[11]
    assert f[12] == "BLAH\t0123"


def test_object_without_format_uses_combined(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), {"path": log}))
    ask(server, "/r/obj")
    lines = wait_lines(log)
    assert lines and COMBINED.match(lines[0]), lines


def test_json_object_format(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), {
        "path": log,
        "format": {"remote_addr": "$remote_addr", "uri": "$uri",
                   "status": "$status", "ua": "$header_user_agent",
                   "literal": "text", "mixed": "${method} $uri"}}))
    ask(server, "/a.txt", headers=[("User-Agent", 'quote" back\\slash')])
    ask(server, "/missing")
    lines = wait_lines(log, 2)
    assert len(lines) == 2, lines
    # (two connections: the lines may come in either order)
    by = {json.loads(l)["uri"]: json.loads(l) for l in lines}
    first = by["/a.txt"]
    assert first == {"remote_addr": "127.0.0.1", "uri": "/a.txt",
                     "status": "200", "ua": 'quote" back\\slash',
                     "literal": "text", "mixed": "GET /a.txt"}
    assert list(first) == ["remote_addr", "uri", "status", "ua", "literal",
                           "mixed"]
    assert by["/missing"]["status"] == "404"


def test_if_condition(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), {
        "path": log, "format": "$request_uri", "if": "$arg_log"}))
    for path in ("/r/1?log=1", "/r/2", "/r/3?log=", "/r/4?log=0",
                 "/r/5?log=yes"):
        ask(server, path)
    wait_lines(log, 2)
    time.sleep(0.3)
    assert sorted(read(log).splitlines()) == ["/r/1?log=1", "/r/5?log=yes"]


def test_if_negated(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), {
        "path": log, "format": "$request_uri", "if": "!$arg_nolog"}))
    for path in ("/r/1", "/r/2?nolog=1", "/r/3?nolog=0"):
        ask(server, path)
    wait_lines(log, 2)
    time.sleep(0.3)
    assert sorted(read(log).splitlines()) == ["/r/1", "/r/3?nolog=0"]


def test_if_on_cookie_and_header(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), {
        "path": log, "format": "$uri", "if": "$cookie_track$header_x_log"}))
    ask(server, "/r/none")
    ask(server, "/r/cookie", headers=[("Cookie", "track=1")])
    ask(server, "/r/header", headers=[("X-Log", "on")])
    wait_lines(log, 2)
    time.sleep(0.3)
    assert sorted(read(log).splitlines()) == ["/r/cookie", "/r/header"]


def test_access_log_dev_null_accepted(wharf, docroot):
    server = wharf(with_log(routes_for(docroot), "/dev/null"))
    assert ask(server, "/a.txt").status == 200


# -- reopen on SIGUSR1 -----------------------------------------------------------

def test_usr1_reopens_access_log(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), {"path": log,
                                                  "format": "$uri"}))
    ask(server, "/r/before")
    assert wait_lines(log) == ["/r/before"]
    os.rename(log, log + ".1")
    ask(server, "/r/renamed")      # still goes to the renamed file
    assert wait_lines(log + ".1", 2) == ["/r/before", "/r/renamed"]
    os.kill(server.pid, signal.SIGUSR1)
    deadline = time.monotonic() + scaled(10)
    while not os.path.exists(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(log), "SIGUSR1 did not reopen the access log"
    ask(server, "/r/after")
    assert wait_lines(log) == ["/r/after"]
    assert read(log + ".1").splitlines() == ["/r/before", "/r/renamed"]
    assert server.alive()


# -- delivery: batching, bursts, reopen under load, stalls -------------------

# Beyond every buffer of the writer (64 of 64 KiB): lines of ~400 bytes.
BURST = 20000
UA = "burst-agent/" + "u" * 380


def load(server, paths, conns=4, batch=50, headers=(), errors=None):
    """Sends GET paths over `conns` keep-alive connections (pipelined,
    `batch` at a time); every response must be a 204.  Returns the number
    answered; exceptions of the client threads go to errors (a list)."""
    errors = [] if errors is None else errors
    done = [0] * conns

    def client(k):
        try:
            mine = paths[k::conns]
            with server.connect(timeout=scaled(30)) as s:
                reader = Reader(s, timeout=30)
                for i in range(0, len(mine), batch):
                    part = mine[i:i + batch]
                    s.sendall(b"".join(request(path=p, headers=headers)
                                       for p in part))
                    for _ in part:
                        assert reader.read_response().status == 204
                        done[k] += 1
        except Exception as e:  # reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,))
               for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(300))
    return sum(done)


def status_alog(server):
    r = server.api().get("/status")
    assert r.status == 200, r
    return r.json["access_log"]


def uris(lines):
    """The request paths of combined-format lines."""
    out = []
    for line in lines:
        m = COMBINED.match(line)
        assert m, line
        out.append(m.group("line").split(" ")[1])
    return out


def test_burst_larger_than_buffers_every_line_arrives(wharf, docroot,
                                                      tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log), threads=2)
    paths = ["/r/%d" % i for i in range(BURST)]
    errors = []
    assert load(server, paths, conns=8, headers=[("User-Agent", UA)],
                errors=errors) == BURST, errors
    lines = wait_lines(log, BURST, timeout=60)
    assert len(lines) == BURST, (len(lines), BURST)
    assert sorted(uris(lines)) == sorted(paths)
    assert all(l.endswith('"%s"' % UA) for l in lines)
    st = status_alog(server)
    assert st["dropped"] == 0 and st["written"] >= BURST, st


def test_usr1_reopen_under_load_loses_no_line(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log), threads=2)
    n = 12000
    paths = ["/r/%d" % i for i in range(n)]
    errors = []
    done = []
    t = threading.Thread(target=lambda: done.append(
        load(server, paths, conns=4, batch=20, errors=errors)))
    t.start()
    rotated = []
    try:
        for k in (1, 2):
            # Rotate once some lines are in, while requests still flow.
            wait_lines(log, 500, timeout=30)
            os.rename(log, "%s.%d" % (log, k))
            rotated.append("%s.%d" % (log, k))
            os.kill(server.pid, signal.SIGUSR1)
            deadline = time.monotonic() + scaled(10)
            while not os.path.exists(log) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert os.path.exists(log), "SIGUSR1 did not reopen the log"
    finally:
        t.join(scaled(300))
    assert done == [n], (done, errors)
    deadline = time.monotonic() + scaled(30)
    while True:
        lines = [l for f in rotated + [log] for l in wait_lines(f, 0, 0)]
        if len(lines) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(uris(lines)) == sorted(paths), (len(lines), n)
    # The rotations happened while requests flowed: each renamed file has
    # lines (the last file may have none when the load ended before the
    # second reopen, which now goes through main).
    assert all(wait_lines(f, 1, 0) for f in rotated)


def test_stalled_file_system_does_not_stall_serving(wharf, docroot,
                                                    tmp_path):
    """The log is a FIFO whose reader is stopped (SIGSTOP): the pipe fills,
    the writer thread blocks in write(), its buffers fill, and the I/O
    threads keep serving while they count what they cannot keep.  Then the
    reader resumes: what was kept arrives, and written + dropped adds up to
    every request."""
    fifo = str(tmp_path / "access.fifo")
    out = str(tmp_path / "received.log")
    os.mkfifo(fifo)
    # The reader holds the FIFO open read-write, so that it never sees an
    # end of file when the controller, which validates the config, closes
    # its own descriptor.
    reader = subprocess.Popen(["/usr/bin/python3", "-c", FIFO_READER, fifo,
                               out], stdin=subprocess.DEVNULL)
    try:
        server = wharf(with_log(routes_for(docroot), fifo), threads=2)
        os.kill(reader.pid, signal.SIGSTOP)
        router = [p for p in server.children()
                  if b"router" in open("/proc/%d/cmdline" % p, "rb").read()]
        # (ASan keeps freed memory in quarantine: RSS says nothing there.)
        rss0 = rss_kib(router[0]) if router and not SAN else None
        # 3000 lines of 4 KiB: 12 MB, three times what the writer may hold.
        n = 3000
        ua = "stalled/" + "s" * 4000
        errors = []
        t0 = time.monotonic()
        assert load(server, ["/r/%d" % i for i in range(n)], conns=4,
                    headers=[("User-Agent", ua)], errors=errors) == n, errors
        served_s = time.monotonic() - t0
        st = status_alog(server)       # the control path answers too
        assert st["dropped"] > 0, st
        assert server.wait_log(r"\[warn\].*access log: \d+ lines dropped",
                               timeout=10), server.log_text()[-2000:]
        if rss0 is not None:
            grown = rss_kib(router[0]) - rss0
            # 12 MB offered; the writer holds 4 MiB at most.
            assert grown < 8 * 1024, "router grew by %d KiB" % grown
        os.kill(reader.pid, signal.SIGCONT)
        deadline = time.monotonic() + scaled(30)
        while True:
            st = status_alog(server)
            got = wait_lines(out, 0, 0)
            if (st["written"] + st["dropped"] >= n and len(got) >= st["written"]) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert st["written"] + st["dropped"] == n, (st, n)
        assert len(got) == st["written"] > 0, (len(got), st)
        assert all(l.endswith('"%s"' % ua) for l in got)
        # Serving never waited for the reader (which stayed stopped).
        assert served_s < scaled(120), served_s
        # Lines flow again once the reader reads.
        ask(server, "/r/after")
        assert wait_match(out, r'"GET /r/after HTTP/1.1" 204'), got[-1:]
        server.stop()               # flushes into the FIFO, then closes it
        server.stopped_by_test = True
    finally:
        os.kill(reader.pid, signal.SIGCONT)
        reader.kill()
        reader.wait(30)


FIFO_READER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
out = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
while True:
    data = os.read(fd, 65536)
    while data:
        data = data[os.write(out, data):]
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_quiet_server_lines_arrive_within_a_second(wharf, docroot, tmp_path):
    """Two pipelined requests on a connection that stays open: the first
    line goes at once (a quiet thread), the second waits in the thread's
    buffer, which nothing fills and nothing closes, yet it is written by
    the interval timer (100 ms), not at the next burst or at exit."""
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log))
    with server.connect() as s:
        reader = Reader(s)
        for i in range(3):
            t0 = time.monotonic()
            s.sendall(request(path="/r/quiet%da" % i) +
                      request(path="/r/quiet%db" % i))
            assert reader.read_response().status == 204
            assert reader.read_response().status == 204
            lines = wait_lines(log, 2 * i + 2, timeout=5)
            waited = time.monotonic() - t0
            assert len(lines) == 2 * i + 2, lines
            assert lines[-1].split('"')[1] == "GET /r/quiet%db HTTP/1.1" % i
            assert waited < scaled(5), waited
            time.sleep(0.3)


def test_graceful_stop_flushes_the_last_lines(wharf, docroot, tmp_path):
    log = str(tmp_path / "access.log")
    server = wharf(with_log(routes_for(docroot), log), threads=2)
    paths = ["/r/%d" % i for i in range(2000)]
    assert load(server, paths, conns=4) == len(paths)
    os.kill(server.pid, signal.SIGQUIT)   # at once: lines are in buffers
    server.proc.wait(scaled(30))
    server.stopped_by_test = True
    assert server.proc.returncode == 0
    assert sorted(uris(read(log).splitlines())) == sorted(paths)


def test_reconfiguration_removing_the_log_keeps_its_lines(wharf, docroot,
                                                          tmp_path):
    log = str(tmp_path / "access.log")
    conf = with_log(routes_for(docroot), log)
    server = wharf(conf)
    paths = ["/r/%d" % i for i in range(500)]
    assert load(server, paths, conns=2) == len(paths)
    del conf["access_log"]
    conf = json.loads(json.dumps(conf).replace(
        "{port}", str(server.port)))
    r = server.api().put("/config", conf)
    assert r.status == 200, r
    lines = wait_lines(log, len(paths))
    assert sorted(uris(lines)) == sorted(paths)
    assert ask(server, "/r/unlogged").status == 204
    time.sleep(0.5)
    assert len(read(log).splitlines()) == len(paths)


# -- refused configurations --------------------------------------------------------

def refuse(tmp_path, config):
    return refuse_config(tmp_path, config)


def test_unknown_variable_in_format_refused(tmp_path):
    log = refuse(tmp_path, with_log([{"action": {"return": 200}}], {
        "path": str(tmp_path / "a.log"), "format": "$remote_add"}))
    assert 'Unknown variable "remote_add"' in log, log


def test_unwritable_access_log_path_refused(tmp_path):
    refuse(tmp_path, with_log([{"action": {"return": 200}}],
                              str(tmp_path / "no" / "such" / "a.log")))


def test_access_log_object_without_path_refused(tmp_path):
    refuse(tmp_path, with_log([{"action": {"return": 200}}],
                              {"format": "$uri"}))


# -- settings.http ----------------------------------------------------------------

def test_server_version_false(wharf):
    server = wharf(routes_config([{"action": {"return": 200}}],
                                 http={"server_version": False}))
    r = ask(server)
    assert r.header("Server") is not None
    assert "/" not in r.header("Server")


def test_max_body_size_413(wharf):
    server = wharf(routes_config([{"action": {"return": 200}}],
                                 http={"max_body_size": 100}))
    assert ask(server, method="POST", body=b"x" * 100).status == 200
    assert ask(server, method="POST", body=b"x" * 101).status == 413


def test_max_body_size_chunked_413(wharf):
    server = wharf(routes_config([{"action": {"return": 200}}],
                                 http={"max_body_size": 100}))
    body = b"".join(b"%x\r\n%s\r\n" % (40, b"y" * 40) for _ in range(3))
    body += b"0\r\n\r\n"
    with server.connect() as s:
        r = exchange(s, request(method="POST", headers=[
            ("Transfer-Encoding", "chunked"), ("Connection", "close")],
            body=body))
    assert r.status == 413


def test_body_buffer_size_small_still_reads_whole_body(wharf):
    server = wharf(routes_config([{"action": {"return": 200}}],
                                 http={"body_buffer_size": 64,
                                       "max_body_size": 1 << 20}))
    with server.connect() as s:
        reader = Reader(s)
        for _ in range(2):      # keep-alive: the body was fully consumed
            s.sendall(request(method="POST", headers=[
                ("Content-Length", "100000")], body=b"z" * 100000))
            assert reader.read_response().status == 200


def test_large_header_buffer_size_431(wharf):
    server = wharf(routes_config([{"action": {"return": 200}}],
                                 http={"large_header_buffer_size": 1024}))
    assert ask(server, headers=[("X-Big", "a" * 900)]).status == 200
    assert ask(server, headers=[("X-Big", "a" * 3000)]).status == 431


def test_large_header_buffer_size_default_allows_bigger(wharf):
    server = wharf(routes_config([{"action": {"return": 200}}]))
    assert ask(server, headers=[("X-Big", "a" * 3000)]).status == 200


def test_large_header_buffers_count_431(wharf):
    small = wharf(routes_config([{"action": {"return": 200}}],
                                http={"large_header_buffer_size": 4096,
                                      "large_header_buffers": 2}))
    default = wharf(routes_config([{"action": {"return": 200}}]))
    many = [("X-H%d" % i, chr(97 + i) * 3000) for i in range(5)]
    assert ask(small, headers=many[:1]).status == 200
    assert ask(small, headers=many).status == 431
    assert ask(default, headers=many).status == 200


def test_discard_unsafe_fields(wharf):
    routes = [{"match": {"headers": {"X_Under": "1"}},
               "action": {"return": 201}},
              {"action": {"return": 200}}]
    default = wharf(routes_config(routes))
    keep = wharf(routes_config(routes,
                               http={"discard_unsafe_fields": False}))
    assert ask(default, headers=[("X_Under", "1")]).status == 200
    assert ask(keep, headers=[("X_Under", "1")]).status == 201


def test_log_route(wharf):
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/main"}},
        "routes": {"main": [
            {"match": {"uri": "/x"}, "action": {"return": 200}},
            {"action": {"return": 204}}]},
        "settings": {"http": {"log_route": True}}})
    assert ask(server, "/y").status == 204
    assert server.wait_log(r'"routes/main/1" selected', timeout=10), \
        server.log_text()[-2000:]
    assert '"routes/main/1" selected' in server.log_text()
    assert re.search(r'"routes/main/0" discarded', server.log_text()) or \
        "[info]" not in server.log_text()


def test_log_route_array_routes(wharf):
    server = wharf(routes_config(
        [{"match": {"uri": "/x"}, "action": {"return": 200}},
         {"action": {"return": 204}}], http={"log_route": True}))
    assert ask(server, "/y").status == 204
    assert server.wait_log(r'"routes/1" selected', timeout=10), \
        server.log_text()[-2000:]


def test_no_route_log_by_default(wharf):
    server = wharf(routes_config([{"action": {"return": 204}}]))
    assert ask(server, "/y").status == 204
    time.sleep(0.3)
    assert "selected" not in server.log_text()
