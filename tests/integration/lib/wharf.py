"""Start, probe and stop a Wharf server process for the integration tests.

A `Wharf` object owns one server process: it writes the config into its own
temporary directory, picks free ports, starts `wharf --no-daemon`, waits until
every TCP/unix listener accepts a connection and stops the process by PID.
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import time

WHARF_BIN = os.environ.get("WHARF_BIN", "")
SAN = os.environ.get("WHARF_SAN", "0") == "1"

# The language modules the build made (build/modules beside build/wharf);
# WHARF_MODULESDIR overrides.
MODULESDIR = os.environ.get("WHARF_MODULESDIR") or (
    os.path.join(os.path.dirname(WHARF_BIN), "modules") if WHARF_BIN else "")

# The harness runs as root and its temp dirs are private to root, so by
# default the servers it starts run every process as root too.  A test
# that wants Unit's default (nobody and its group) passes user=None,
# group=None and makes its files world-readable.
DEFAULT_USER = "root"
DEFAULT_GROUP = "root"

# ASan/UBSan builds run several times slower: stretch every timeout.
TIME_SCALE = 3.0 if SAN else 1.0

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

BAD_LOG_PATTERNS = ("[alert]", "[crit]", "Sanitizer", "runtime error")


def scaled(seconds):
    """A timeout stretched for slow (sanitizer) builds."""
    return seconds * TIME_SCALE


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A TCP port that was free a moment ago (bind to port 0, then close)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _substitute_ports(obj, ports):
    """Replace "{port}", "{port0}", "{port1}"... in every string of obj."""
    if isinstance(obj, dict):
        return {_substitute_ports(k, ports): _substitute_ports(v, ports)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute_ports(v, ports) for v in obj]
    if isinstance(obj, str) and "{port" in obj:
        names = {"port": ports[0]}
        names.update({"port%d" % i: p for i, p in enumerate(ports)})
        return obj.format(**names)
    return obj


def _count_port_slots(text):
    found = set(int(n) for n in re.findall(r"\{port(\d+)\}", text))
    if not found:
        return 1
    return max(found) + 1


def listener_address(name):
    """(family, sockaddr) to connect to for a Unit listener name."""
    if name.startswith("unix:"):
        return socket.AF_UNIX, name[len("unix:"):]
    if name.startswith("["):
        host, port = name[1:].split("]:")
        return socket.AF_INET6, (host, int(port))
    host, port = name.rsplit(":", 1)
    if host == "*":
        host = "127.0.0.1"
    return socket.AF_INET, (host, int(port))


def try_connect(family, addr, timeout=1.0):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return False
    s.settimeout(timeout)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def process_tree(pid):
    """pid and all its descendants (a server may fork role processes)."""
    pids, todo = [], [pid]
    while todo and len(pids) < 1000:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, task)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def fd_targets(pid):
    """{fd: readlink target} of one process (missing fds are skipped)."""
    out = {}
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for name in names:
        try:
            out[int(name)] = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            pass
    return out


def cmdline(pid):
    """The process title of pid ("" once it is gone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def is_app_process(pid):
    """True for an app process ('wharf: "NAME" application')."""
    return '" application' in cmdline(pid)


def children_of(pid):
    """Direct children of pid (from /proc/PID/task/*/children)."""
    out = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


class WharfError(Exception):
    pass


class Wharf:
    """One server process. Use start()/stop() or the pytest factory fixture."""

    def __init__(self, workdir, config, threads=None, maxconn=None,
                 maxaccept=None, extra_args=(), statedir=None, control=None,
                 env=None, user=DEFAULT_USER, group=DEFAULT_GROUP,
                 modulesdir=None):
        """config None: start without --config (from STATEDIR/conf.json).
        control: the --control value (default unix:WORKDIR/control.sock).
        env: extra environment variables for the server.
        user, group: --user/--group (None: no flag, Unit's default).
        modulesdir: --modulesdir (default MODULESDIR)."""
        if not WHARF_BIN:
            raise WharfError("WHARF_BIN is not set")
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_template = config
        self.threads = threads
        self.maxconn = maxconn
        self.maxaccept = maxaccept
        self.extra_args = list(extra_args)
        self.proc = None
        self.config = None
        self.ports = []
        self.fd_baseline = None
        self.stopped_by_test = False    # set by tests that stop it on purpose
        self.statedir = statedir or os.path.join(self.workdir, "state")
        self.log_path = os.path.join(self.workdir, "wharf.log")
        self.out_path = os.path.join(self.workdir, "wharf.out")
        self.pid_path = os.path.join(self.workdir, "wharf.pid")
        self.config_path = os.path.join(self.workdir, "config.json")
        self.control_path = os.path.join(self.workdir, "control.sock")
        self.control = control or "unix:" + self.control_path
        self.env = env
        self.user = user
        self.group = group
        self.modulesdir = modulesdir or MODULESDIR
        self.log_ignore = []        # regexes of expected [alert] lines
        self.child_pids = None      # controller and router after start

    # -- start / stop ----------------------------------------------------

    def command(self):
        cmd = [WHARF_BIN, "--no-daemon"]
        if self.config_template is not None:
            cmd += ["--config", self.config_path]
        cmd += ["--statedir", self.statedir, "--log", self.log_path,
                "--pid", self.pid_path, "--control", self.control]
        for flag, value in (("--threads", self.threads),
                            ("--maxconn", self.maxconn),
                            ("--maxaccept", self.maxaccept),
                            ("--user", self.user),
                            ("--group", self.group),
                            ("--modulesdir", self.modulesdir or None)):
            if value is not None:
                cmd += [flag, str(value)]
        return cmd + self.extra_args

    def _write_config(self):
        template = self.config_template
        if template is None:
            self.ports, self.config, self.config_text = [], None, ""
            return
        if isinstance(template, str):
            nports = _count_port_slots(template)
        else:
            nports = _count_port_slots(json.dumps(template))
        self.ports = [free_port() for _ in range(nports)]
        if isinstance(template, str):
            names = {"port": self.ports[0]}
            names.update({"port%d" % i: p for i, p in enumerate(self.ports)})
            text = template
            for key, value in names.items():
                text = text.replace("{%s}" % key, str(value))
            self.config = None
            self.config_text = text
            data = text.encode()
        else:
            self.config = _substitute_ports(template, self.ports)
            self.config_text = json.dumps(self.config, indent=2)
            data = self.config_text.encode()
        with open(self.config_path, "wb") as f:
            f.write(data)

    def listeners(self):
        if self.config is not None:
            # "rhttp@NAME" (reverse HTTP) has no socket to wait for.
            return [n for n in self.config.get("listeners", {})
                    if not n.startswith("rhttp@")]
        # Raw-text config: find listener names by pattern.
        return re.findall(r'"((?:unix:[^"]+)|(?:[^"\s]*:\d+))"\s*:',
                          self.config_text)

    def start(self, attempts=3):
        os.makedirs(self.statedir, exist_ok=True)
        last = ""
        for _ in range(attempts):
            self._write_config()
            for path in (self.log_path, self.out_path):
                if os.path.exists(path):
                    os.unlink(path)
            out = open(self.out_path, "wb")
            env = None
            if self.env:
                env = dict(os.environ)
                env.update(self.env)
            self.proc = subprocess.Popen(self.command(), stdout=out,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
            out.close()
            if self._wait_ready():
                self.fd_baseline = self.settled_fd_count()
                self.child_pids = sorted(self.children())
                return self
            last = self.log_text()
            self.stop()
            if "in use" not in last.lower():
                break
        raise WharfError("wharf did not become ready within %.0fs\n"
                         "command: %s\n--- log ---\n%s" %
                         (scaled(START_TIMEOUT), " ".join(self.command()),
                          last))

    def _wait_ready(self):
        deadline = time.monotonic() + scaled(START_TIMEOUT)
        pending = [listener_address(n) for n in self.listeners()]
        if self.config_template is None:
            pending.append(listener_address(self.control))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            pending = [a for a in pending if not try_connect(*a)]
            if not pending:
                return True
            time.sleep(0.05)
        return False

    def stop(self):
        """SIGTERM, wait, SIGKILL after STOP_TIMEOUT. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(scaled(STOP_TIMEOUT))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- addresses -------------------------------------------------------

    @property
    def port(self):
        return self.ports[0]

    def url(self, path="/", port_index=0):
        return "http://127.0.0.1:%d%s" % (self.ports[port_index], path)

    def connect(self, timeout=None, port_index=0):
        """A raw TCP socket connected to 127.0.0.1:port."""
        s = socket.create_connection(("127.0.0.1", self.ports[port_index]),
                                     timeout=timeout or scaled(10))
        return s

    # -- logs ------------------------------------------------------------

    def log_text(self):
        text = ""
        for path in (self.log_path, self.out_path):
            try:
                with open(path, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text

    def bad_log_lines(self):
        """Log lines with a BAD_LOG_PATTERNS; log_ignore may excuse an
        expected [alert] line, never a sanitizer report."""
        bad = []
        for line in self.log_text().splitlines():
            if not any(p in line for p in BAD_LOG_PATTERNS):
                continue
            if ("Sanitizer" in line or "runtime error" in line
                    or not any(re.search(r, line) for r in self.log_ignore)):
                bad.append(line)
        return bad

    def wait_log(self, pattern, timeout=5.0):
        """Wait until the log matches the regex; return the match or None."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            m = re.search(pattern, self.log_text())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.05)

    # -- processes ---------------------------------------------------------

    def api(self, timeout=30.0):
        """A control-API client (lib.control.Control) for this server."""
        from .control import Control
        return Control(self.control, timeout=timeout)

    def children(self):
        """PIDs of main's direct children but its app processes (the
        controller and the router).  A child whose cmdline is empty is
        exiting (its memory is gone; main reaps it in a moment): an app
        process that a test saw stop, never a live role."""
        return [p for p in children_of(self.pid)
                if not is_app_process(p) and cmdline(p) != ""]

    def app_pids(self, name=None):
        """PIDs of the app processes (of app NAME), children of main."""
        tag = '"%s" application' % name if name is not None else '" application'
        return sorted(p for p in children_of(self.pid) if tag in cmdline(p))

    # -- file descriptors ------------------------------------------------

    def fd_count(self):
        """fds of main, the controller and the router (app processes come
        and go with scaling; they are not part of the baseline)."""
        return sum(len(fd_targets(p)) for p in [self.pid] + self.children())

    def settled_fd_count(self, quiet=0.3, timeout=3.0):
        """The fd count once it stayed unchanged for `quiet` seconds."""
        deadline = time.monotonic() + scaled(timeout)
        last, since = self.fd_count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.fd_count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return last

    def wait_fds_at_most(self, limit, timeout=5.0):
        """Poll until the fd count is <= limit; return the last count."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            count = self.fd_count()
            if count <= limit or time.monotonic() > deadline:
                return count
            time.sleep(0.1)


PY_MODULE_LINE = r'module: python (\d+\.\d+\.\d+) "'


def require_python_module(server):
    """The Python version main logged on discovering the Python module in
    server's modules directory.  Skips only when the build made no such
    module (no python3-dev: a missing external); a module that is there
    but that main did not discover fails the test."""
    import pytest
    if not glob.glob(os.path.join(server.modulesdir, "python*.wharf.so")):
        pytest.skip("the Python module is not built (python3-dev)")
    m = server.wait_log(PY_MODULE_LINE, timeout=10.0)
    assert m, "main did not discover the Python module:\n" + \
        server.log_text()
    return m.group(1)


def run_to_exit(workdir, config_text, timeout=10.0):
    """Run wharf on a config that must be rejected.

    Returns (returncode, log text); returncode is None if the process was
    still running after the timeout (it is then killed).
    """
    w = Wharf(workdir, config_text)
    os.makedirs(w.statedir, exist_ok=True)
    with open(w.config_path, "wb") as f:
        f.write(config_text if isinstance(config_text, bytes)
                else config_text.encode())
    with open(w.out_path, "wb") as out:
        proc = subprocess.Popen(w.command(), stdout=out,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        rc = proc.wait(scaled(timeout))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(scaled(STOP_TIMEOUT))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        rc = None
    return rc, w.log_text()


def refuse_config(tmp_path, config):
    """Run wharf on a config (a dict, or JSON text with {port}) that must be
    refused at start; returns its log.  Skips without a binary."""
    import pytest

    if not WHARF_BIN or not os.access(WHARF_BIN, os.X_OK):
        pytest.skip("WHARF_BIN is not an executable")
    if not isinstance(config, (str, bytes)):
        config = json.dumps(config)
    if isinstance(config, str):
        config = config.replace("{port}", str(free_port()))
    rc, log = run_to_exit(os.path.join(str(tmp_path), "refused"), config)
    assert rc is not None, "server kept running on an invalid config:\n" + log
    assert rc != 0, "invalid config accepted (exit 0):\n" + log
    return log
