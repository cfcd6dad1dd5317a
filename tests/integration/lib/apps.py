"""Run the real-app tests (tests/integration/apps/) against Wharf, or the
same test bodies against NGINX Unit as a reference.

Every app test takes the `app_server` fixture made by `server_fixture()`:
it is parametrized over the two servers, and the "unit" case is skipped
unless WHARF_REF_UNITD names a unitd binary (Unit 1.35 with its python
module, e.g. /tmp/unit/sbin/unitd):

    WHARF_REF_UNITD=/tmp/unit/sbin/unitd /usr/bin/python3 -m pytest \\
        -p no:cacheprovider tests/integration/test_app_flask.py

Both servers get the same JSON config (Unit's schema; "{port}" is a free
port).  `start(config)` returns an object with the part of lib.wharf.Wharf
the app tests use: port, url(), api(), log_text(), wait_log(), pid,
app_pids().  Wharf servers come from the `wharf` fixture, so the post-test
health check applies to them; Unit servers are stopped here, by PID.

App data (databases, collected static files, lifespan marks) lives in a
directory made by `shared_dir()`: world-readable (and writable where
asked), because a server started as root runs app processes as an
unprivileged user by default (Unit's and Wharf's `--user`).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from .control import Control
from .wharf import (_substitute_ports, free_port,
                    listener_address, process_tree, scaled, try_connect)

APPS_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "apps")
REF_UNITD = os.environ.get("WHARF_REF_UNITD", "")
SYSTEM_PYTHON = "/usr/bin/python3"


def app_dir(name):
    """The directory of the real app `name` (flask_app, django_site...)."""
    return os.path.join(APPS_DIR, name)


def require_modules(*names):
    """Skip unless Debian's Python has every module (the packages come from
    `make deps`)."""
    missing = []
    for name in names:
        rc = subprocess.run([SYSTEM_PYTHON, "-c", "import " + name],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=60).returncode
        if rc != 0:
            missing.append(name)
    if missing:
        pytest.skip("Debian Python lacks %s (make deps)" % ", ".join(missing))


def shared_dir(prefix, writable=False):
    """A new directory under /tmp that an unprivileged app process can
    read (and write, with writable); the caller removes it."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o1777 if writable else 0o755)
    return path


def python_app(name, **options):
    """Unit's application object for the real app `name`."""
    conf = {"type": "python 3", "path": app_dir(name)}
    conf.update(options)
    return conf


class UnitRef:
    """A reference NGINX Unit instance with its own control socket, state
    and log, configured over its control API."""

    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = str(workdir)
        os.makedirs(os.path.join(self.workdir, "state"), exist_ok=True)
        self.control_path = os.path.join(self.workdir, "control.sock")
        self.control = "unix:" + self.control_path
        self.log_path = os.path.join(self.workdir, "unit.log")
        self.proc = None
        self.ports = []
        self.config = None
        self.stopped_by_test = False
        # Unit's router (unprivileged) writes large request bodies here.
        self.tmpdir = shared_dir("unit-tmp-", writable=True)

    def command(self):
        cmd = [self.binary, "--no-daemon", "--control", self.control,
               "--statedir", os.path.join(self.workdir, "state"),
               "--pid", os.path.join(self.workdir, "unit.pid"),
               "--log", self.log_path, "--tmpdir", self.tmpdir]
        modules = os.path.join(os.path.dirname(os.path.dirname(
            os.path.abspath(self.binary))), "lib", "unit", "modules")
        if os.path.isdir(modules):
            cmd += ["--modulesdir", modules]
        return cmd

    def start(self, config, timeout=30.0):
        text = json.dumps(config)
        nports = 1 + max([i for i in range(10) if "{port%d}" % i in text]
                         or [0])
        self.ports = [free_port() for _ in range(nports)]
        self.config = _substitute_ports(config, self.ports)
        out = open(os.path.join(self.workdir, "unit.out"), "wb")
        self.proc = subprocess.Popen(self.command(), stdout=out,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        api = self.api()
        if not api.wait_ready(timeout):
            raise AssertionError("unitd did not answer on its control "
                                 "socket:\n" + self.log_text())
        reply = api.put("/config", self.config)
        assert reply.status == 200, "Unit refused the config: %r\n%s" % (
            reply, self.log_text())
        deadline = time.monotonic() + scaled(timeout)
        for name in self.config.get("listeners", {}):
            addr = listener_address(name)
            while not try_connect(*addr):
                assert time.monotonic() < deadline, "listener %s" % name
                time.sleep(0.05)
        return self

    def stop(self):
        """SIGTERM to unitd's main, then SIGKILL to whatever of its tree is
        left, each by PID."""
        if self.proc is None:
            remove_tree(self.tmpdir)
            return None
        pids = process_tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(15))
            except subprocess.TimeoutExpired:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(scaled(15))
        except subprocess.TimeoutExpired:
            pass
        remove_tree(self.tmpdir)
        return self.proc.returncode

    @property
    def pid(self):
        return self.proc.pid

    @property
    def port(self):
        return self.ports[0]

    def url(self, path="/", port_index=0):
        return "http://127.0.0.1:%d%s" % (self.ports[port_index], path)

    def api(self, timeout=30.0):
        return Control(self.control, timeout=timeout)

    def connect(self, timeout=None, port_index=0):
        """A raw TCP socket connected to 127.0.0.1:port."""
        return socket.create_connection(
            ("127.0.0.1", self.ports[port_index]),
            timeout=timeout or scaled(10))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        text = ""
        for name in ("unit.log", "unit.out"):
            try:
                with open(os.path.join(self.workdir, name), "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text

    def wait_log(self, pattern, timeout=5.0):
        import re
        deadline = time.monotonic() + scaled(timeout)
        while True:
            m = re.search(pattern, self.log_text())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.05)


def is_unit(server):
    """True for the reference Unit: a test may then accept the few answers
    where Unit is known to differ from Wharf (each one says why)."""
    return isinstance(server, UnitRef)


def app_pids(server, name):
    """PIDs of the processes of server titled as app `name`'s processes
    (Unit's title: `unit: "NAME" application`; Wharf titles its app
    processes the same way under the unitd name, or `wharf: "NAME"
    application`)."""
    want = '"%s" application' % name
    out = []
    for pid in process_tree(server.pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                title = f.read().replace(b"\0", b" ").decode("utf-8",
                                                              "replace")
        except OSError:
            continue
        if want in title:
            out.append(pid)
    return sorted(out)


def wait_for(predicate, timeout=10.0, what="condition"):
    """Poll predicate() until it is true; return its value or fail."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class ServerStarter:
    """What an app test's `app_server` fixture yields: start(config)
    starts the server the test is parametrized with."""

    def __init__(self, kind, wharf_factory, tmp_path):
        self.kind = kind
        self.wharf_factory = wharf_factory
        self.tmp_path = tmp_path
        self.units = []

    def start(self, config):
        if self.kind == "wharf":
            # Wharf runs applications: a failure to start fails the test.
            return self.wharf_factory(config)
        unit = UnitRef(REF_UNITD, self.tmp_path / ("unit%d" % len(self.units)))
        self.units.append(unit)
        unit.start(config)
        return unit

    def stop_all(self):
        for unit in self.units:
            unit.stop()


def server_fixture():
    """The `app_server` fixture for a test module: assign it at module
    level (app_server = apps.server_fixture())."""

    @pytest.fixture(params=["wharf", "unit"])
    def app_server(request, wharf, tmp_path):
        if request.param == "unit":
            if not REF_UNITD or not os.access(REF_UNITD, os.X_OK):
                pytest.skip("reference Unit: set WHARF_REF_UNITD to unitd")
        starter = ServerStarter(request.param, wharf, tmp_path)
        yield starter
        starter.stop_all()

    return app_server


def bounded(fn, seconds, what="the request"):
    """fn() on a helper thread, failing the test if it has not returned
    within seconds (scaled): a client's per-operation timeouts add up over
    a long upload, and a stalled upload must fail, not hang the run.  The
    thread ends when the server closes the connection at teardown."""
    import concurrent.futures
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        future = pool.submit(fn)
        try:
            return future.result(scaled(seconds))
        except concurrent.futures.TimeoutError:
            raise AssertionError("%s took more than %.0f s"
                                 % (what, scaled(seconds))) from None
    finally:
        pool.shutdown(wait=False)


def run_python(args, env=None, cwd=None, timeout=300):
    """Runs Debian's Python with args; fails the test with its output on a
    non-zero exit."""
    full_env = dict(os.environ)
    full_env.pop("PYTHONPATH", None)
    full_env.update(env or {})
    res = subprocess.run([SYSTEM_PYTHON] + list(args), cwd=cwd, env=full_env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=scaled(timeout))
    assert res.returncode == 0, "%s failed:\n%s" % (
        " ".join(args), res.stdout.decode("utf-8", "replace")[-3000:])
    return res.stdout.decode("utf-8", "replace")


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
