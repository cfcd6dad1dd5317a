"""Live reconfiguration: no request fails while the config is replaced
under load, listeners are kept, opened and closed as the config says, and
STATEDIR/conf.json is never torn (controller killed in a burst of PUTs; a
failing rename() injected with LD_PRELOAD)."""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from lib.wharf import SAN, free_port, scaled

DONE = {"success": "Reconfiguration done."}
MAX_REQUESTS = 20000
MAX_SECONDS = 60.0


def share_conf(listeners, root):
    return {"listeners": {name: {"pass": "routes"} for name in listeners},
            "routes": [{"action": {"share": str(root) + "$uri"}}]}


def fetch(port, path="/x.txt"):
    """(status, body) over a new connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(10))
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def refused(port):
    s = socket.socket()
    s.settimeout(scaled(5))
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


@pytest.fixture
def roots(tmp_path):
    """Two docroots whose x.txt differ."""
    out = []
    for name in ("A", "B"):
        root = tmp_path / ("root" + name)
        root.mkdir()
        (root / "x.txt").write_bytes(b"content " + name.encode() * 10 + b"\n")
        out.append(root)
    return out


class Load:
    """Client threads hitting one port until stop() or the bounds."""

    def __init__(self, port, expected, keepalive_threads=2, fresh_threads=1):
        self.port = port
        self.expected = expected           # allowed (status, body) replies
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.count = 0
        self.failures = []
        self.seen = set()
        self.deadline = time.monotonic() + MAX_SECONDS
        self.threads = [threading.Thread(target=self.run, args=(True,))
                        for _ in range(keepalive_threads)]
        self.threads += [threading.Thread(target=self.run, args=(False,))
                         for _ in range(fresh_threads)]

    def start(self):
        for t in self.threads:
            t.daemon = True
            t.start()
        return self

    def _more(self):
        with self.lock:
            if self.count >= MAX_REQUESTS:
                return False
            self.count += 1
        return not self.stop_event.is_set() and \
            time.monotonic() < self.deadline

    def _record(self, what):
        with self.lock:
            if len(self.failures) < 20:
                self.failures.append(what)

    def run(self, keepalive):
        conn = None
        while self._more():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(
                        "127.0.0.1", self.port, timeout=scaled(10))
                conn.request("GET", "/x.txt")
                r = conn.getresponse()
                got = (r.status, r.read())
                if got not in self.expected:
                    self._record(("unexpected reply", got))
                else:
                    with self.lock:
                        self.seen.add(got)
                if r.will_close:
                    self._record(("server closed a keep-alive connection",
                                  r.getheaders()))
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self._record(("%s connection" % ("keep-alive" if keepalive
                                                 else "new"), repr(e)))
                if conn is not None:
                    conn.close()
                conn = None
            if not keepalive and conn is not None:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(scaled(30))
        return self


def test_reconfigure_50_times_under_load(wharf, roots):
    server = wharf(share_conf(["127.0.0.1:{port}"], roots[0]))
    listen = list(server.config["listeners"])
    confs = [share_conf(listen, root) for root in roots]
    bodies = [(root / "x.txt").read_bytes() for root in roots]
    expected = {(200, b) for b in bodies}
    api = server.api()
    load = Load(server.port, expected).start()
    time.sleep(0.2)
    stale = []
    try:
        for i in range(50):
            which = (i + 1) % 2
            r = api.put("/config", confs[which])
            assert (r.status, r.json) == (200, DONE), (i, r)
            # applied before the reply: a new connection sees it at once
            got = fetch(server.port)
            if got != (200, bodies[which]):
                stale.append((i, got))
    finally:
        load.stop()
    assert load.count > 50, load.count
    assert not load.failures, "%d requests, failures: %s" % (
        load.count, load.failures)
    assert load.seen == expected, load.seen
    assert not stale, stale
    assert api.config() == confs[0]


def test_listeners_kept_added_and_removed(wharf, roots):
    server = wharf(share_conf(["127.0.0.1:{port}"], roots[0]))
    kept = list(server.config["listeners"])[0]
    body = (roots[0] / "x.txt").read_bytes()
    api = server.api()
    # only new connections to the kept address: none may be refused
    load = Load(server.port, {(200, body)}, keepalive_threads=1,
                fresh_threads=2).start()
    problems = []
    try:
        prev = None
        for i in range(20):
            port = free_port()
            listeners = [kept, "127.0.0.1:%d" % port]
            r = api.put("/config", share_conf(listeners, roots[0]))
            assert (r.status, r.json) == (200, DONE), (i, r)
            got = fetch(port)
            if got != (200, body):
                problems.append(("added listener", i, got))
            if prev is not None and not refused(prev):
                problems.append(("removed listener still accepts", i, prev))
            prev = port
        r = api.put("/config", share_conf([kept], roots[0]))
        assert r.status == 200, r
        if not refused(prev):
            problems.append(("removed listener still accepts", prev))
    finally:
        load.stop()
    assert not load.failures, "%d requests, failures: %s" % (
        load.count, load.failures)
    assert not problems, problems
    assert fetch(server.port) == (200, body)


def listen_inodes(port):
    """Inodes of the LISTEN sockets on 127.0.0.1:port (/proc/net/tcp)."""
    want = "0100007F:%04X" % port
    out = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                out.add(fields[9])
    return out


def test_listener_socket_kept_across_reconfig(wharf, roots):
    """An unchanged address keeps its very socket, and an open keep-alive
    connection goes on with the new config."""
    server = wharf(share_conf(["127.0.0.1:{port}"], roots[0]))
    listen = list(server.config["listeners"])
    api = server.api()
    before = listen_inodes(server.port)
    assert len(before) == 1, before
    c = http.client.HTTPConnection("127.0.0.1", server.port,
                                   timeout=scaled(10))
    c.request("GET", "/x.txt")
    assert c.getresponse().read() == (roots[0] / "x.txt").read_bytes()
    for i in range(4):
        r = api.put("/config", share_conf(listen, roots[(i + 1) % 2]))
        assert r.status == 200, r
        c.request("GET", "/x.txt")
        resp = c.getresponse()
        assert (resp.status, resp.read()) == \
            (200, (roots[(i + 1) % 2] / "x.txt").read_bytes())
    c.close()
    assert listen_inodes(server.port) == before


# -- crash safety of conf.json ----------------------------------------------

def numbered_conf(listen, i):
    return {"listeners": {listen: {"pass": "routes"}},
            "routes": [{"match": {"uri": "/n%d" % i},
                        "action": {"return": 204}},
                       {"action": {"return": 200}}]}


def test_controller_killed_in_a_burst_of_puts(wharf):
    server = wharf(numbered_conf("127.0.0.1:{port}", 0))
    server.log_ignore.append(r"exited on signal 9")
    listen = list(server.config["listeners"])[0]
    api = server.api()
    path = os.path.join(server.statedir, "conf.json")
    rng = random.Random(1)
    sent = {json.dumps(server.config, sort_keys=True): 0}
    for round_ in range(4):
        acked = [-1]
        stop = threading.Event()
        base = (round_ + 1) * 1000

        def burst():
            for i in range(base, base + 200):
                if stop.is_set():
                    return
                conf = numbered_conf(listen, i)
                sent[json.dumps(conf, sort_keys=True)] = i
                try:
                    r = api.put("/config", conf)
                except (OSError, http.client.HTTPException):
                    return          # the controller died under us
                if r.status == 200:
                    acked[0] = i

        t = threading.Thread(target=burst, daemon=True)
        t.start()
        time.sleep(rng.uniform(0.05, 0.4))
        pid = [p for p in server.children()
               if open("/proc/%d/cmdline" % p, "rb").read()
               .startswith(b"wharf: controller")]
        assert len(pid) == 1, server.children()
        os.kill(pid[0], signal.SIGKILL)
        stop.set()
        t.join(scaled(30))
        # main writes conf.json for the controller (WF_MSG_CONF_STORE): a
        # store the killed controller sent may still be on its way until
        # main reaped it, which happens before the new controller starts.
        assert api.wait_ready(), server.log_text()
        with open(path, "rb") as f:
            text = f.read()
        try:
            stored = json.loads(text)
        except ValueError:
            pytest.fail("torn conf.json after the kill: %r" % text[:300])
        key = json.dumps(stored, sort_keys=True)
        assert key in sent, "conf.json is none of the configs sent: %r" % (
            text[:300])
        # what was acknowledged is durable
        assert sent[key] >= acked[0], (sent[key], acked[0])
        assert api.wait_ready(), server.log_text()
        assert api.config() == stored


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* rename() of ".../conf.json.tmp" fails with EIO while the file named by
 * WHARF_FAIL_RENAME exists. */
int
rename(const char *from, const char *to)
{
    static int (*real)(const char *, const char *);
    const char *flag = getenv("WHARF_FAIL_RENAME");
    size_t n = strlen(from);

    if (real == NULL) {
        real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT,
                                                          "rename");
    }
    if (flag != NULL && n >= 13 && strcmp(from + n - 13, "conf.json.tmp") == 0
        && access(flag, F_OK) == 0) {
        errno = EIO;
        return -1;
    }
    return real(from, to);
}
"""


@pytest.fixture
def rename_shim(tmp_path):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    src = tmp_path / "shim.c"
    src.write_text(SHIM)
    lib = tmp_path / "shim.so"
    p = subprocess.run([gcc, "-shared", "-fPIC", "-O1", "-o", str(lib),
                        str(src), "-ldl"], capture_output=True, timeout=60)
    if p.returncode != 0:
        pytest.skip("cannot build the shim: %s" % p.stderr.decode()[-500:])
    return str(lib)


def test_failed_rename_keeps_the_stored_config(wharf, tmp_path, rename_shim):
    flag = str(tmp_path / "fail-rename")
    env = {"LD_PRELOAD": rename_shim, "WHARF_FAIL_RENAME": flag}
    if SAN:
        env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "")
                               + ":verify_asan_link_order=0").lstrip(":")
    server = wharf(numbered_conf("127.0.0.1:{port}", 1), env=env)
    server.log_ignore.append(r"rename\(|conf\.json")
    api = server.api()
    path = os.path.join(server.statedir, "conf.json")
    r = api.put("/config", numbered_conf(list(server.config["listeners"])[0],
                                         2))
    assert (r.status, r.json) == (200, DONE), r
    with open(path, "rb") as f:
        previous = json.loads(f.read())
    assert previous == numbered_conf(list(server.config["listeners"])[0], 2)

    open(flag, "w").close()
    change = numbered_conf(list(server.config["listeners"])[0], 3)
    r = api.put("/config", change)
    os.unlink(flag)
    assert server.wait_log(r"rename\(.*conf\.json\.tmp"), \
        "the shim did not act:\n" + server.log_text()
    with open(path, "rb") as f:
        stored = json.loads(f.read())
    # the store is never torn: still the previous config
    assert stored == previous, stored
    assert not os.path.exists(path + ".tmp")
    # and the client must not hear "done" for a change a restart would lose
    assert r.status == 500, "store failed but the reply was %r" % r
    assert "error" in r.json, r.json


# -- section 5: reconfiguration leaks nothing --------------------------------

LEAK_PUTS = 10000
LEAK_WARMUP = 300
LEAK_SLACK_KIB = 2048


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def regex_conf(listen, n):
    """A small config whose only route matches a regex no other n uses."""
    return {"listeners": {listen: {"pass": "routes"}},
            "routes": [{"match": {"uri": "~^/r%d(/[a-z]+)?$" % n},
                        "action": {"return": 200 + n % 2}}]}


def test_10000_puts_with_distinct_regexes_leak_nothing(wharf):
    """Every snapshot frees the PCRE2 code it compiled: 10,000 PUTs, each
    bringing a new regex, all succeed (the old process-wide table refused
    them past 65,536 and grew ~3 KiB a PUT) and no process grows by more
    than 2 MiB after a warm-up."""
    listen = "127.0.0.1:%d" % free_port()
    server = wharf(regex_conf(listen, 0))
    api = server.api()
    procs = [server.pid] + server.children()
    assert len(procs) == 3, procs
    deadline = time.monotonic() + scaled(900)
    start = None
    for n in range(1, LEAK_PUTS + 1):
        r = api.put("/config", regex_conf(listen, n))
        assert r.status == 200 and r.json == DONE, (n, r)
        if n == LEAK_WARMUP:
            start = {p: vm_rss_kib(p) for p in procs}
        assert time.monotonic() < deadline, "only %d PUTs in time" % n
    end = {p: vm_rss_kib(p) for p in procs}
    # The last config is live: its regex matches, the previous one's not.
    assert fetch(int(listen.rsplit(":", 1)[1]), "/r%d/x" % LEAK_PUTS)[0] \
        == 200 + LEAK_PUTS % 2
    assert fetch(int(listen.rsplit(":", 1)[1]), "/r%d" % (LEAK_PUTS - 1))[0] \
        == 404
    if SAN:
        return  # ASan's quarantine keeps freed memory; LSan checks at exit
    grown = {p: end[p] - start[p] for p in procs}
    assert all(g <= LEAK_SLACK_KIB for g in grown.values()), \
        ("RSS growth in KiB (main, controller, router)", grown, start)


# -- section 1: removed listeners --------------------------------------------

def read_until_close(s, timeout):
    """Everything s receives until the server closes it (or timeout)."""
    s.settimeout(timeout)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return out, False
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk


def test_removed_listener_serves_no_new_request(wharf, roots):
    """A connection whose listener a reconfiguration removed serves no new
    request: an idle keep-alive one is closed; one with a request in
    progress finishes it, and a request behind it answers 408 and closes
    (Unit 1.35 does both).  A kept listener's connection goes on."""
    gone, kept = free_port(), free_port()
    both = share_conf(["127.0.0.1:%d" % gone, "127.0.0.1:%d" % kept],
                      roots[0])
    server = wharf(both)
    req = b"GET /x.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    idle = socket.create_connection(("127.0.0.1", gone), timeout=scaled(10))
    busy = socket.create_connection(("127.0.0.1", gone), timeout=scaled(10))
    other = socket.create_connection(("127.0.0.1", kept), timeout=scaled(10))
    try:
        for s in (idle, other):
            s.sendall(req)
            assert s.recv(65536).startswith(b"HTTP/1.1 200 "), s
        busy.sendall(req[:-2])          # a head in progress
        time.sleep(0.2)
        r = server.api().put("/config", share_conf(["127.0.0.1:%d" % kept],
                                                   roots[0]))
        assert r.status == 200 and r.json == DONE, r
        data, closed = read_until_close(idle, scaled(5))
        assert (data, closed) == (b"", True)
        busy.sendall(b"\r\n" + req)     # ends the first, pipelines another
        data, closed = read_until_close(busy, scaled(10))
        assert closed, data
        first, _, rest = data.partition(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200 "), data
        body = rest[:len(b"content ") + 11]
        assert body == b"content " + b"A" * 10 + b"\n", data
        rest = rest[len(body):]
        assert rest.startswith(b"HTTP/1.1 408 "), data
        assert b"\r\nConnection: close\r\n" in rest, data
        assert rest.count(b"HTTP/1.1 ") == 1, data
        other.sendall(req)
        assert other.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert refused(gone)
    finally:
        for s in (idle, busy, other):
            s.close()
