"""ACME (issue 11, docs/internals/acme.md) against Debian's `pebble` on
loopback: a /certificates entry PUT as {"acme": {...}} is issued through
HTTP-01 (answered by Wharf's plain listener) and TLS-ALPN-01 (answered by
its TLS listener), served to a client that trusts pebble's root, renewed on
a control call, retried with a logged back-off while pebble is down, kept
across a restart, and deleted.  Pebble's VA resolves the test domains with
pebble-challtestsrv's DNS server (every name -> 127.0.0.1) and validates
for real (no PEBBLE_VA_ALWAYS_VALID).  The body's validation has Unit-style
errors."""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

from lib.certs import make_cert
from lib.wharf import cmdline, free_port, scaled

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")

pytestmark = pytest.mark.skipif(
    PEBBLE is None or CHALLTESTSRV is None,
    reason="Debian's pebble is not installed (make deps)")

CONFIG = {"listeners": {"127.0.0.1:{port0}": {"pass": "routes"},
                        "127.0.0.1:{port1}": {"pass": "routes"}},
          "routes": [{"action": {"return": 204}}]}


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Pebble:
    """pebble (directory on 127.0.0.1 over TLS with a certificate of a CA
    made here) and pebble-challtestsrv as its DNS server, validating
    challenges against Wharf's ports."""

    def __init__(self, workdir, http_port, tls_port):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.ca = make_cert(self.dir, "pebble-ca", "Pebble Test CA", ca=True,
                            ec=True, days=30)
        self.tls = make_cert(self.dir, "pebble-tls", "127.0.0.1",
                             sans=("IP:127.0.0.1", "localhost"),
                             issuer=self.ca, ec=True)
        self.port = free_port()
        self.mgmt = free_port()
        self.dns = free_port()
        self.chall_mgmt = free_port()
        self.http_port = http_port
        self.tls_port = tls_port
        self.procs = []
        conf = {"pebble": {
            "listenAddress": "127.0.0.1:%d" % self.port,
            "managementListenAddress": "127.0.0.1:%d" % self.mgmt,
            "certificate": self.tls.crt, "privateKey": self.tls.key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        self.conf_path = os.path.join(self.dir, "pebble.json")
        with open(self.conf_path, "w") as f:
            json.dump(conf, f)
        self.directory = "https://127.0.0.1:%d/dir" % self.port

    def _spawn(self, args, env, name):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                             env=env, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(p)
        return p

    def start(self):
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1")
        env.pop("PEBBLE_VA_ALWAYS_VALID", None)
        self._spawn([CHALLTESTSRV, "-dns01", "127.0.0.1:%d" % self.dns,
                     "-management", "127.0.0.1:%d" % self.chall_mgmt,
                     "-http01", "", "-https01", "", "-tlsalpn01", "",
                     "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                    env, "challtestsrv")
        self.start_pebble()
        wait_until(lambda: port_open(self.chall_mgmt), 15, "challtestsrv")

    def start_pebble(self):
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1")
        env.pop("PEBBLE_VA_ALWAYS_VALID", None)
        self.pebble = self._spawn(
            [PEBBLE, "-config", self.conf_path, "-strict=false",
             "-dnsserver", "127.0.0.1:%d" % self.dns], env, "pebble")
        wait_until(lambda: port_open(self.port) and port_open(self.mgmt),
                   15, "pebble")

    def stop_pebble(self):
        """Stops pebble alone (the DNS server stays)."""
        self.pebble.terminate()
        self.pebble.wait(timeout=10)
        self.procs.remove(self.pebble)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def root_pem(self):
        """The root that issues (pebble makes a new one at each start)."""
        ctx = ssl.create_default_context(cafile=self.ca.crt)
        url = "https://127.0.0.1:%d/roots/0" % self.mgmt
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return r.read().decode()

    def ca_bundle(self):
        """The CA that signed pebble's directory certificate, as a store
        bundle (its key and certificate)."""
        return self.ca.bundle()

    def log_text(self):
        with open(os.path.join(self.dir, "pebble.log"), "rb") as f:
            return f.read().decode(errors="replace")


@pytest.fixture
def acme_env(wharf, tmp_path):
    server = wharf(CONFIG)
    peb = Pebble(tmp_path / "pebble", server.ports[0], server.ports[1])
    peb.start()
    api = server.api()
    r = api.request("PUT", "/certificates/pebble-ca", peb.ca_bundle())
    assert r.status == 200, r
    yield server, peb
    peb.stop()


def acme_body(peb, domains, **extra):
    acme = {"directory": peb.directory, "domains": list(domains),
            "email": "admin@a.test", "ca_bundle": "pebble-ca"}
    acme.update(extra)
    return json.dumps({"acme": acme}).encode()


def put_acme(server, name, body):
    return server.api().request("PUT", "/certificates/" + name, body)


def acme_state(server, name):
    r = server.api().get("/certificates/%s/acme" % name)
    assert r.status == 200, r
    return r.json


def wait_issued(server, name, timeout=40, failures_ok=False):
    def issued():
        st = acme_state(server, name)
        if st["state"] == "valid":
            return st
        assert failures_ok or st["failures"] == 0, st
        return None
    return wait_until(issued, timeout, "the certificate of " + name)


def tls_listen(server, name):
    api = server.api()
    conf = api.get("/config").json
    conf["listeners"]["127.0.0.1:%d" % server.ports[1]] = {
        "pass": "routes", "tls": {"certificate": name}}
    r = api.request("PUT", "/config", json.dumps(conf).encode())
    assert r.status == 200, r


def fetch_cert(port, servername, cafile=None):
    """The leaf the listener serves for servername (verified against
    cafile when given), and the response status."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else \
        ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=servername) as t:
            der = t.getpeercert(binary_form=True)
            t.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close"
                      b"\r\n\r\n" % servername.encode())
            head = t.recv(4096)
    return der, head


def issuer_cn(server, name):
    return server.api().get(
        "/certificates/%s/chain/0/issuer/common_name" % name).json


def test_http01_issue_and_serve(acme_env, tmp_path):
    server, peb = acme_env
    r = put_acme(server, "site", acme_body(peb, ["a.test", "b.test"]))
    assert r.status == 200 and r.json == {"success": "ACME entry stored."}, r
    # The placeholder is there at once, self-signed, and may be named.
    info = server.api().get("/certificates/site").json
    assert info["acme"]["state"] in ("pending", "valid")
    tls_listen(server, "site")
    st = wait_issued(server, "site")
    assert st["expires"] is not None and st["next_attempt"] is not None
    assert st["last_error"] is None and st["challenge"] == "http-01"
    assert st["domains"] == ["a.test", "b.test"]
    info = server.api().get("/certificates/site").json
    assert info["key"] == "ECDH"
    assert info["chain"][0]["subject"]["alt_names"] == ["a.test", "b.test"]
    assert "Pebble" in info["chain"][0]["issuer"]["common_name"]
    assert "acme" in server.api().get("/certificates").json["site"]
    server.wait_log(r'\[notice\].*acme "site": certificate issued, '
                    r'expires \d{4}-', timeout=5)
    # pebble really fetched the token from Wharf's plain listener
    for d in ("a.test", "b.test"):
        assert ("validate w/ HTTP: http://%s:%d/.well-known/acme-challenge/"
                % (d, server.ports[0])) in peb.log_text()
    # A client that trusts pebble's root gets the issued chain.
    root = tmp_path / "pebble-root.pem"
    root.write_text(peb.root_pem())

    def served():
        try:
            return fetch_cert(server.ports[1], "b.test", str(root))
        except ssl.SSLError:
            return None
    der, head = wait_until(served, 10, "the issued certificate served")
    assert head.startswith(b"HTTP/1.1 204"), head
    # After the order, no token is answered any more: routes see it.
    c = socket.create_connection(("127.0.0.1", server.ports[0]), timeout=10)
    c.sendall(b"GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: a\r\n"
              b"Connection: close\r\n\r\n")
    assert c.recv(4096).startswith(b"HTTP/1.1 204")
    c.close()


def test_tls_alpn01_issue(acme_env, tmp_path):
    server, peb = acme_env
    r = put_acme(server, "alpn", acme_body(peb, ["c.test"],
                                           challenge="tls-alpn-01",
                                           key_type="rsa-2048"))
    assert r.status == 200, r
    # The TLS listener serves the placeholder until the issue, and
    # answers acme-tls/1 for the pending domain meanwhile.
    tls_listen(server, "alpn")
    st = wait_issued(server, "alpn")
    assert st["challenge"] == "tls-alpn-01"
    info = server.api().get("/certificates/alpn").json
    assert info["key"] == "RSA (2048 bits)"
    assert "Pebble" in info["chain"][0]["issuer"]["common_name"]
    assert "Starting 3 validations." in peb.log_text()
    root = tmp_path / "pebble-root.pem"
    root.write_text(peb.root_pem())
    wait_until(lambda: _served_ok(server.ports[1], "c.test", str(root)), 10,
               "the issued certificate served")
    # With no challenge pending, acme-tls/1 is not selected.
    ctx = ssl._create_unverified_context()
    ctx.set_alpn_protocols(["acme-tls/1"])
    with socket.create_connection(("127.0.0.1", server.ports[1]),
                                  timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="c.test") as t:
            assert t.selected_alpn_protocol() is None


def _served_ok(port, name, cafile):
    try:
        fetch_cert(port, name, cafile)
        return True
    except ssl.SSLError:
        return False


def test_renew_on_control_call(acme_env):
    server, peb = acme_env
    assert put_acme(server, "site", acme_body(peb, ["r.test"])).status == 200
    wait_issued(server, "site")
    path = os.path.join(server.statedir, "certs", "site")
    with open(path) as f:
        first = f.read()
    r = server.api().get("/control/certificates/site/renew")
    assert r.status == 200 and r.json == {"success": "Renewal scheduled."}
    issued = 'acme "site": certificate issued'
    wait_until(lambda: server.log_text().count(issued) == 2, 40,
               "the renewal")
    st = wait_issued(server, "site")
    assert st["failures"] == 0 and st["last_error"] is None
    with open(path) as f:
        second = f.read()
    # A new key and a new certificate, stored atomically in place.
    assert second != first
    assert second.split("-----END PRIVATE KEY-----")[0] \
        != first.split("-----END PRIVATE KEY-----")[0]
    r = server.api().get("/control/certificates/nope/renew")
    assert r.status == 404


def test_failure_backoff_logged(acme_env):
    server, peb = acme_env
    peb.stop_pebble()
    r = put_acme(server, "down", acme_body(peb, ["d.test"],
                                           retry_min_seconds=1,
                                           retry_max_seconds=4))
    assert r.status == 200, r

    def three():
        return server.log_text().count('acme "down": attempt') >= 3
    wait_until(three, 20, "three failed attempts")
    lines = [ln for ln in server.log_text().splitlines()
             if 'acme "down": attempt' in ln]
    assert all("[warn]" in ln for ln in lines), lines
    assert "directory: connect() to 127.0.0.1:%d failed" % peb.port \
        in lines[0], lines[0]
    # 1 s, 2 s, 4 s, then bounded at 4 s
    assert lines[0].endswith("next attempt in 1 s"), lines[0]
    assert lines[1].endswith("next attempt in 2 s"), lines[1]
    assert lines[2].endswith("next attempt in 4 s"), lines[2]
    # The state is committed right after the line (and "pending" again
    # while the next attempt runs).
    st = wait_until(lambda: (lambda s: s if s["state"] == "failed"
                             and s["failures"] >= 3 else None)(
        acme_state(server, "down")), 10, "the failed state")
    assert "connect()" in st["last_error"]
    # Back up: the next attempt (at most 4 s away) issues, and the
    # failures are forgotten.
    peb.start_pebble()
    st = wait_issued(server, "down", timeout=30, failures_ok=True)
    assert st["failures"] == 0 and st["last_error"] is None


def test_restart_keeps_entry_then_delete(acme_env):
    server, peb = acme_env
    assert put_acme(server, "keep", acme_body(peb, ["k.test"])).status == 200
    st = wait_issued(server, "keep")
    before = server.api().get("/certificates/keep").json
    assert os.path.isfile(os.path.join(server.statedir, "acme", "keep"))
    mode = os.stat(os.path.join(server.statedir, "acme", "keep")).st_mode
    assert mode & 0o777 == 0o600
    server.stop()
    server.start()
    after = server.api().get("/certificates/keep").json
    assert after["chain"] == before["chain"]
    assert after["acme"]["state"] == "valid"
    assert after["acme"]["expires"] == st["expires"]
    assert after["acme"]["next_attempt"] == st["next_attempt"]
    # DELETE removes the entry, its certificate and its state.
    r = server.api().request("DELETE", "/certificates/keep")
    assert r.status == 200 and r.json == {"success": "Certificate deleted."}
    assert server.api().get("/certificates/keep").status == 404
    assert not os.path.exists(os.path.join(server.statedir, "acme", "keep"))
    assert not os.path.exists(os.path.join(server.statedir, "certs", "keep"))
    assert server.api().get("/control/certificates/keep/renew").status == 404


def test_delete_refused_while_listener_names_it(acme_env):
    server, peb = acme_env
    assert put_acme(server, "used", acme_body(peb, ["u.test"])).status == 200
    tls_listen(server, "used")
    r = server.api().request("DELETE", "/certificates/used")
    assert r.status == 400
    assert r.json == {"error": "Certificate is used in the configuration."}
    wait_issued(server, "used")


BAD = [
    (b'{"acme": 1}', "Invalid ACME entry.",
     'The body must be {"acme": {...}} or a PEM bundle.'),
    (b'{"acme": {}, "x": 1}', "Invalid ACME entry.",
     'The body must be {"acme": {...}} or a PEM bundle.'),
    (b'{"acme": {"domains": ["a.test"]}}', "Invalid ACME entry.",
     'Required parameter "directory" is missing.'),
    (b'{"acme": {"directory": "http://x/dir", "domains": ["a.test"]}}',
     "Invalid ACME entry.", 'The "directory" value must be an https URL.'),
    (b'{"acme": {"directory": "https://x/dir", "domains": []}}',
     "Invalid ACME entry.", 'The "domains" array must hold 1 to 100 names.'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["*.a.test"]}}',
     "Invalid ACME entry.",
     'The "domains" array must hold lower-case DNS names (no wildcards).'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t", "a.t"]}}',
     "Invalid ACME entry.", 'The "domains" array holds "a.t" twice.'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t"], '
     b'"challenge": "dns-01"}}', "Invalid ACME entry.",
     'The "challenge" value must be "http-01" or "tls-alpn-01".'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t"], '
     b'"key_type": "ed25519"}}', "Invalid ACME entry.",
     'The "key_type" value must be "ecdsa-p256" or "rsa-2048".'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t"], '
     b'"renew_before_days": 0}}', "Invalid ACME entry.",
     'The "renew_before_days" value must be between 1 and 3650.'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t"], '
     b'"email": 5}}', "Invalid ACME entry.",
     'The "email" value must be a string.'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t"], '
     b'"colour": "red"}}', "Invalid ACME entry.",
     'Unknown parameter "colour".'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t"], '
     b'"ca_bundle": "nope"}}', "Invalid ACME entry.",
     'Certificate "nope" is not found.'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t"], '
     b'"ca_bundle": "/nonexistent/ca.pem"}}', "Invalid ACME entry.",
     'The "ca_bundle" file "/nonexistent/ca.pem" cannot be read.'),
    (b'{"acme": {"directory": "https://x/dir", "domains": ["a.t"], '
     b'"retry_min_seconds": 10, "retry_max_seconds": 5}}',
     "Invalid ACME entry.", 'The "retry_max_seconds" value must not be '
     'less than "retry_min_seconds".'),
]


@pytest.mark.parametrize("body,error,detail", BAD)
def test_invalid_bodies(wharf, body, error, detail):
    server = wharf(CONFIG)
    r = put_acme(server, "bad", body)
    assert r.status == 400, r
    assert r.json == {"error": error, "detail": detail}
    assert server.api().get("/certificates/bad").status == 404


def test_invalid_json(wharf):
    server = wharf(CONFIG)
    r = put_acme(server, "bad", b'{"acme": ')
    assert r.status == 400 and r.json["error"] == "Invalid JSON.", r


# ---- restarts during an order ------------------------------------------

class HoldingRelay:
    """A TCP relay on a free port to 127.0.0.1:target that holds every
    connection it accepts, the request head read, until release(): pebble
    validates through it, so the test can restart a Wharf process between
    the challenge being handed out and pebble fetching it."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.heads = []
        self.released = threading.Event()
        self.threads = []
        self.conns = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                data = c.recv(4096)
                if not data:
                    return
                head += data
            self.heads.append(head)
            self.released.wait(scaled(60))
            with socket.create_connection(("127.0.0.1", self.target),
                                          timeout=scaled(20)) as s:
                s.sendall(head)
                s.shutdown(socket.SHUT_WR)
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def first_path(self, timeout):
        """The path of the first request held (pebble's token fetch)."""
        wait_until(lambda: self.heads, timeout, "pebble's validation")
        return self.heads[0].split(b" ", 2)[1].decode()

    def release(self):
        self.released.set()

    def stop(self):
        self.released.set()
        self.lsock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(5)


@pytest.fixture
def relay_env(wharf, tmp_path):
    """Wharf and pebble, pebble's HTTP-01 fetches held by a HoldingRelay
    in front of Wharf's plain listener."""
    server = wharf(CONFIG)
    relay = HoldingRelay(server.ports[0])
    peb = Pebble(tmp_path / "pebble", relay.port, server.ports[1])
    peb.start()
    r = server.api().request("PUT", "/certificates/pebble-ca",
                             peb.ca_bundle())
    assert r.status == 200, r
    yield server, peb, relay
    relay.stop()
    peb.stop()


def child_pid(server, role):
    pids = [p for p in server.children() if role in cmdline(p)]
    return pids[0] if pids else None


def kill_child(server, role):
    """SIGKILLs the router or the controller and waits for main's
    replacement."""
    old = child_pid(server, role)
    server.log_ignore.append(r"process %d exited on signal 9" % old)
    os.kill(old, signal.SIGKILL)
    assert server.wait_log(r"restarting the %s" % role, timeout=20), \
        server.log_text()
    wait_until(lambda: child_pid(server, role) not in (None, old), 20,
               "a new " + role)
    server.child_pids = None  # replaced on purpose


def token_answered(server, path):
    c = socket.create_connection(("127.0.0.1", server.ports[0]), timeout=10)
    try:
        c.sendall(b"GET %s HTTP/1.1\r\nHost: a.test\r\nConnection: close"
                  b"\r\n\r\n" % path.encode())
        return c.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        c.close()


def test_router_restart_during_order_keeps_challenges(relay_env):
    """The router dies after it got the challenge set and before pebble
    fetches the token: the controller, which owns the set, hands it to the
    new router, and the order in flight succeeds with no failed attempt."""
    server, peb, relay = relay_env
    r = put_acme(server, "rr", acme_body(peb, ["r.test"]))
    assert r.status == 200, r
    path = relay.first_path(40)
    assert path.startswith("/.well-known/acme-challenge/"), path
    assert token_answered(server, path)
    kill_child(server, "router")
    wait_until(lambda: token_answered(server, path), 20,
               "the new router answering the pending token")
    relay.release()
    st = wait_issued(server, "rr", timeout=60)
    assert st["failures"] == 0 and st["last_error"] is None, st


def test_controller_restart_during_order_restarts_it(relay_env):
    """The controller dies mid-order: the one main starts again loads the
    entry (still pending) and runs a new order at once, and the certificate
    is issued."""
    server, peb, relay = relay_env
    r = put_acme(server, "cr", acme_body(peb, ["q.test"]))
    assert r.status == 200, r
    relay.first_path(40)
    kill_child(server, "controller")
    relay.release()

    def state():
        try:
            return acme_state(server, "cr")
        except OSError:
            return None  # the new controller is not listening yet
    wait_until(lambda: (state() or {}).get("state") == "valid", 60,
               "the certificate of cr")
    assert server.wait_log(r'acme "cr": certificate issued', timeout=5)
