#!/usr/bin/python3
"""Wharf beside nginx: static files with wrk, access logs, idle memory.

Usage: /usr/bin/python3 bench/bench.py --wharf build/wharf [--reps 5]
       /usr/bin/python3 bench/bench.py --wharf build/wharf --routes

--routes: Wharf alone, with 1000 route steps on distinct host/uri literals
({"host": "hN.example", "uri": "/pN"} -> return 204); wrk rates for the
first and the last step (Host set with -H), and the median ratio
last/first, which must be at least 0.8 (the route index, not a scan).

Both servers run one worker (thread) pinned to CPU 0; wrk runs pinned to
CPU 1.  They serve the same docroot: a 1 KiB and a 10 MiB file.  Like for
like: Wharf keeps files open, so nginx gets open_file_cache; both get the
same access-log setting in each case (the configurations are printed
beside the figures).  Each repetition runs every case on both servers,
alternating which goes first, and the figures reported are the medians of
the per-repetition ratios wharf/nginx.

Cases (a fresh server for each):
  small         1 KiB file, keep-alive, no access log;
  small_log     the same, access log to a file in the combined format:
                nginx unbuffered (a write() per request), Wharf its default;
  small_logbuf  the same, nginx with buffer=64k flush=1s, Wharf its default;
  big           10 MiB file, no access log.
For each: req/s, p99 latency, requests (or MiB) per server CPU-second:
the run time of every thread of every process of the server, from
/proc/PID/task/TID/schedstat, before and after the wrk run; and per
CPU-second of the whole transfer ("+wrk"): the server, wrk (rusage) and the
ksoftirqd/N threads (schedstat) over the same window.  The 10 MiB goal is on
the whole-transfer figure: on loopback the kernel bills the receiver's TCP
input to whichever task transmitted the packet (BILLING_NOTE).  With a log,
the lines the file holds afterwards are counted against the requests wrk saw.
  idle          VmRSS growth of the server processes after N keep-alive
                connections that each made one request and stay open, per
                connection (an absolute goal for Wharf).

Stdlib only; every subprocess has a time bound, and every server started
here is stopped by PID before exit.  The Wharf half may fail (its error is
printed) without stopping the nginx half.  The machine may be shared:
the spread between repetitions is printed with the medians.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SMALL_NAME = "small.bin"
SMALL_SIZE = 1024
BIG_NAME = "big.bin"
BIG_SIZE = 10 * 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024.0 * 1024.0

ROUTES_N = 1000
ROUTES_GOAL = 0.8  # last/first request rate

# Ratio goals wharf/nginx, per case and figure.
GOALS = {
    ("small", "per_cpu"): (">=", 1.30),
    ("small_log", "per_cpu"): (">=", 1.30),
    ("small_logbuf", "per_cpu"): (">=", 1.30),
    # The whole transfer's CPU, not the server's alone: on loopback the
    # kernel runs much of the receiver's TCP work in the sender's context,
    # and how much swings sixfold with the client's concurrency (see
    # BILLING_NOTE and docs/internals/static.md, "The 10 MiB figure").
    ("big", "per_cpu_all"): (">=", 1.00),
}
IDLE_GOAL_KIB = 0.40  # Wharf's own figure, KiB per idle connection

NGINX_FILE_CACHE = (
    "open_file_cache max=1000 inactive=20s; open_file_cache_valid 1s; "
    "open_file_cache_errors on;"
)

# name, file, nginx access_log, wharf access_log
CASES = [
    ("small", SMALL_NAME, None, False),
    ("small_log", SMALL_NAME, "combined", True),
    ("small_logbuf", SMALL_NAME, "combined buffer=64k flush=1s", True),
    ("big", BIG_NAME, None, False),
]
ALL_CASES = [c[0] for c in CASES] + ["idle"]


# Where the servers listen and how wrk is started.  "lo" (default):
# loopback, where the kernel bills the receiver's TCP input to the sender.
# "veth" (--net veth, root): wrk in its own network namespace over a veth
# pair whose receive work RPS steers to the receiver's CPU (server 0,
# client 1), as on two machines; then the 10 MiB goal is checked on the
# server's own CPU.
NET = {"name": "lo", "host": "127.0.0.1", "client": []}
NET_NS = "wharf-bench"
NET_SETUP = [
    ["ip", "netns", "add", NET_NS],
    ["ip", "link", "add", "wfb0", "type", "veth", "peer", "name", "wfb1"],
    ["ip", "link", "set", "wfb1", "netns", NET_NS],
    ["ip", "addr", "add", "10.99.0.1/24", "dev", "wfb0"],
    ["ip", "link", "set", "wfb0", "mtu", "65535", "up"],
    ["ip", "-n", NET_NS, "addr", "add", "10.99.0.2/24", "dev", "wfb1"],
    ["ip", "-n", NET_NS, "link", "set", "wfb1", "mtu", "65535", "up"],
    ["ip", "-n", NET_NS, "link", "set", "lo", "up"],
]


def net_veth_up():
    """Makes the namespace and the veth pair, steers each side's receive
    work to its own CPU and points NET at them."""
    net_veth_down()
    for cmd in NET_SETUP:
        subprocess.run(cmd, check=True, capture_output=True)
    with open("/sys/class/net/wfb0/queues/rx-0/rps_cpus", "w") as f:
        f.write("1")
    subprocess.run(["ip", "netns", "exec", NET_NS, "sh", "-c",
                    "echo 2 > /sys/class/net/wfb1/queues/rx-0/rps_cpus"],
                   check=True)
    NET.update(name="veth", host="10.99.0.1",
               client=["ip", "netns", "exec", NET_NS])


def net_veth_down():
    """Removes what net_veth_up() made (deleting the namespace removes the
    pair)."""
    subprocess.run(["ip", "netns", "del", NET_NS], capture_output=True)


class BenchError(Exception):
    """A server or tool failed; the message says which and why."""


# ---------------------------------------------------------------- /proc


def proc_children_map():
    """Maps each PID to the PIDs of its children, from /proc/*/stat."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    return children


def proc_tree(pid):
    """Returns pid and all its descendants that exist now."""
    children = proc_children_map()
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def proc_cpu_seconds(pids):
    """CPU time of pids and all their threads, in seconds: the sum of each
    thread's run time from /proc/PID/task/TID/schedstat (nanoseconds), or
    utime + stime from /proc/PID/stat (clock ticks: 10 ms steps, too coarse
    for the 10 MiB case) where schedstat is missing.  Vanished processes
    count 0."""
    total = 0.0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            ns = 0
            for tid in tids:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            total += ns / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def softirqd_pids():
    """The per-CPU softirq threads (ksoftirqd/N): softirq work that runs too
    long in the context of whichever task raised it is deferred to them, and
    then it is billed to no process of the run."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm") as f:
                if f.read().startswith("ksoftirqd/"):
                    pids.append(int(name))
        except OSError:
            continue
    return pids


def proc_rss_kib(pids):
    """Sum of VmRSS of pids, in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


# ---------------------------------------------------------------- helpers


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((NET["host"], 0))
        return s.getsockname()[1]


def read_response(sock, deadline):
    """Reads one HTTP/1.1 response with a Content-Length; returns
    (status, body length).  Raises BenchError on a bad or late response."""
    data = b""
    while b"\r\n\r\n" not in data:
        if time.monotonic() > deadline:
            raise BenchError("response head timed out")
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise BenchError("response without Content-Length")
    while len(body) < length:
        if time.monotonic() > deadline:
            raise BenchError("response body timed out")
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed inside the body")
        body += chunk
    return status, len(body)


def http_get(port, path, timeout=2.0):
    """One GET on a new connection; returns (status, body length)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((NET["host"], port), timeout=timeout) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        return read_response(s, deadline)


# ---------------------------------------------------------------- servers


class Server:
    """A server under test, started in its own temp dir and pinned to CPU 0."""

    name = "?"

    def __init__(self, docroot, workdir, log=None):
        self.docroot = docroot
        self.workdir = workdir
        self.log = log  # the access-log setting of the case; None: off
        self.access_log = os.path.join(workdir, "access.log")
        self.port = None
        self.proc = None
        self.stderr = None

    def command(self):
        raise NotImplementedError

    def log_tail(self):
        return ""

    def start(self, timeout=10.0):
        self.port = free_port()
        cmd = ["taskset", "-c", "0"] + self.command()
        self.stderr = open(os.path.join(self.workdir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self.stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode}: "
                    + self.output_tail()
                )
            try:
                status, n = http_get(self.port, "/" + SMALL_NAME)
                if status == 200 and n == SMALL_SIZE:
                    return
                last = f"GET /{SMALL_NAME}: status {status}, {n} bytes"
            except (OSError, BenchError, ValueError, IndexError) as e:
                last = str(e)
            time.sleep(0.1)
        raise BenchError(
            f"{self.name} does not serve on port {self.port} after "
            f"{timeout:.0f}s ({last}): " + self.output_tail()
        )

    def output_tail(self):
        text = ""
        try:
            with open(os.path.join(self.workdir, "stderr.log"), "rb") as f:
                text = f.read()[-1500:].decode("utf-8", "replace")
        except OSError:
            pass
        return (text + self.log_tail()).strip() or "(no output)"

    def pids(self):
        return proc_tree(self.proc.pid)

    def stop(self):
        """Stops the server and every process of its tree, by PID."""
        if self.proc is None:
            return
        pids = proc_tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


class Nginx(Server):
    name = "nginx"

    def __init__(self, binary, docroot, workdir, log=None):
        super().__init__(docroot, workdir, log)
        self.binary = binary

    @staticmethod
    def describe(log):
        """The settings that matter, as printed beside the figures."""
        alog = "off" if log is None else f"FILE {log}"
        return (f"worker_processes 1; sendfile on; {NGINX_FILE_CACHE} "
                f"access_log {alog};")

    def command(self):
        w = self.workdir
        alog = "off" if self.log is None else f"{self.access_log} {self.log}"
        conf = f"""
worker_processes 1;
worker_rlimit_nofile 20000;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{
    worker_connections 20000;
}}
http {{
    access_log {alog};
    sendfile on;
    {NGINX_FILE_CACHE}
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    client_body_temp_path {w}/body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    default_type application/octet-stream;
    server {{
        listen {NET["host"]}:{self.port};
        root {self.docroot};
        location / {{ }}
    }}
}}
"""
        path = os.path.join(w, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return [self.binary, "-p", w, "-c", path, "-g", "daemon off;"]

    def log_tail(self):
        try:
            with open(os.path.join(self.workdir, "error.log"), "rb") as f:
                return "\n" + f.read()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""


class Wharf(Server):
    name = "wharf"

    def __init__(self, binary, docroot, workdir, log=None):
        super().__init__(docroot, workdir, log)
        self.binary = binary

    @staticmethod
    def describe(log):
        alog = ("access_log FILE (default: combined format)" if log
                else "no access_log")
        return f"--threads 1; share (keeps files open); {alog}"

    def config(self):
        conf = {
            "listeners": {f"{NET['host']}:{self.port}": {"pass": "routes"}},
            "routes": [{"action": {"share": self.docroot + "$uri"}}],
        }
        if self.log:
            conf["access_log"] = self.access_log
        return conf

    def command(self):
        w = self.workdir
        conf = self.config()
        path = os.path.join(w, "conf.json")
        with open(path, "w") as f:
            json.dump(conf, f)
        return [
            self.binary,
            "--no-daemon",
            "--threads",
            "1",
            "--config",
            path,
            "--statedir",
            w,
            "--log",
            os.path.join(w, "wharf.log"),
            "--pid",
            os.path.join(w, "wharf.pid"),
        ]

    def log_tail(self):
        try:
            with open(os.path.join(self.workdir, "wharf.log"), "rb") as f:
                return "\n" + f.read()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""


class WharfRoutes(Wharf):
    """Wharf with ROUTES_N steps on literal host/uri pairs, then the usual
    share step (which start() uses to see that the server is up)."""

    name = "wharf-routes"

    def config(self):
        conf = super().config()
        steps = [
            {
                "match": {"host": f"h{i}.example", "uri": f"/p{i}"},
                "action": {"return": 204},
            }
            for i in range(ROUTES_N)
        ]
        conf["routes"] = steps + conf["routes"]
        return conf


# ---------------------------------------------------------------- wrk

WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def run_wrk(server, path, duration, conns, headers=(), base_url=None):
    """Runs wrk pinned to CPU 1 and returns its figures plus the server's
    CPU time used meanwhile.  headers: extra "Name: value" fields.
    base_url: "https://127.0.0.1:PORT" (default: the server's http port)."""
    host = NET["host"]
    url = f"{base_url or f'http://{host}:{server.port}'}/{path}"
    cmd = [
        *NET["client"], "taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
        "--latency",
    ]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    pids = server.pids()
    kpids = softirqd_pids()
    cpu0 = proc_cpu_seconds(pids)
    k0 = proc_cpu_seconds(kpids)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + 30
        )
    except subprocess.TimeoutExpired:
        raise BenchError("wrk timed out")
    cpu_s = proc_cpu_seconds(pids) - cpu0
    softirqd_s = proc_cpu_seconds(kpids) - k0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # wrk's own CPU: on loopback, part of the receiving side's kernel work
    # is billed to whichever process triggers the transmission.
    client_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if out.returncode != 0:
        raise BenchError(f"wrk failed: {out.stderr.strip()}")
    text = out.stdout
    m_req = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+)", text, re.M)
    m_rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    m_p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if m_req is None or m_rps is None or m_p99 is None:
        raise BenchError("cannot read wrk output:\n" + text)
    errors = []
    m_err = re.search(r"^\s*Socket errors:(.*)$", text, re.M)
    if m_err:
        errors.append("socket errors:" + m_err.group(1))
    m_non2xx = re.search(r"^\s*Non-2xx or 3xx responses: (\d+)", text, re.M)
    if m_non2xx:
        errors.append(f"{m_non2xx.group(1)} non-2xx/3xx")
    return {
        "requests": int(m_req.group(1)),
        "rps": float(m_rps.group(1)),
        "p99_ms": float(m_p99.group(1)) * WRK_UNITS[m_p99.group(2)],
        "cpu_s": cpu_s,
        "client_s": client_s,
        "softirqd_s": softirqd_s,
        "errors": ", ".join(errors),
    }


# ---------------------------------------------------------------- idle


def idle_test(server, nconns, timeout=120.0):
    """Opens nconns keep-alive connections, one request each, keeps them
    open, and returns the RSS growth of the server in KiB per connection."""
    socks = []
    request = (
        f"GET /{SMALL_NAME} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    )
    deadline = time.monotonic() + timeout
    rss0 = proc_rss_kib(server.pids())
    try:
        for _ in range(nconns):
            if time.monotonic() > deadline:
                raise BenchError(f"idle test timed out after {len(socks)}")
            s = socket.create_connection((NET["host"], server.port), timeout=5)
            socks.append(s)
            # Reset on close: no TIME_WAIT pile-up across repetitions.
            s.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
            )
            s.sendall(request)
            status, n = read_response(s, time.monotonic() + 5)
            if status != 200 or n != SMALL_SIZE:
                raise BenchError(f"idle test: status {status}, {n} bytes")
        time.sleep(1.0)  # let the server settle its buffers
        rss1 = proc_rss_kib(server.pids())
        # Every connection must still be open (not closed by the server).
        for s in socks[:: max(1, nconns // 100)]:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    raise BenchError("the server closed an idle connection")
            except BlockingIOError:
                pass
        return rss0, rss1, (rss1 - rss0) / nconns
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------- driver


def make_docroot(base):
    docroot = os.path.join(base, "docroot")
    os.mkdir(docroot)
    with open(os.path.join(docroot, SMALL_NAME), "wb") as f:
        f.write(os.urandom(SMALL_SIZE))
    with open(os.path.join(docroot, BIG_NAME), "wb") as f:
        f.write(os.urandom(BIG_SIZE))
    # nginx workers run as nobody when started by root.
    for path in (base, docroot):
        os.chmod(path, 0o755)
    for name in (SMALL_NAME, BIG_NAME):
        os.chmod(os.path.join(docroot, name), 0o644)
    return docroot


def count_lines(path):
    """Newlines in path (0 when it does not exist)."""
    n = 0
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    return n
                n += chunk.count(b"\n")
    except OSError:
        return 0


def new_workdir(base, name):
    workdir = tempfile.mkdtemp(prefix=name + "-", dir=base)
    os.chmod(workdir, 0o755)
    return workdir


def bench_case(cls, binary, base, docroot, case, args):
    """One case on one server; returns its figures or raises."""
    name, path, nginx_log, wharf_log = case
    log = nginx_log if cls is Nginx else wharf_log
    server = cls(binary, docroot, new_workdir(base, f"{cls.name}-{name}"),
                 log or None)
    try:
        server.start()
        run_wrk(server, path, 1, args.conns)  # warm-up
        if log:
            time.sleep(FLUSH_WAIT_S)  # let buffered lines reach the file
        lines0 = count_lines(server.access_log)
        res = run_wrk(server, path, args.duration, args.conns)
        if log:
            time.sleep(FLUSH_WAIT_S)
        lines = count_lines(server.access_log) - lines0
    finally:
        server.stop()
        try:
            os.unlink(server.access_log)  # tens of MB per run
        except OSError:
            pass
    size = SMALL_SIZE if path == SMALL_NAME else BIG_SIZE
    res["per_cpu"] = res["requests"] / max(res["cpu_s"], 1e-9)
    res["per_cpu_all"] = res["requests"] / max(
        res["cpu_s"] + res["client_s"] + res["softirqd_s"], 1e-9)
    if size == BIG_SIZE:
        res["per_cpu"] *= size / MIB
        res["per_cpu_all"] *= size / MIB
        res["rate"] = res["rps"] * size / MIB
    else:
        res["rate"] = res["rps"]
    res["lines"] = lines if log else None
    return res


def bench_idle(cls, binary, base, docroot, args):
    server = cls(binary, docroot, new_workdir(base, f"{cls.name}-idle"))
    try:
        server.start()
        rss0, rss1, per_conn = idle_test(server, args.idle_conns)
    finally:
        server.stop()
    return {"rss0": rss0, "rss1": rss1, "per_conn": per_conn}


CASE_LABELS = {
    "small": ("1 KiB, no log", "req/s", "req/CPU-s"),
    "small_log": ("1 KiB, log", "req/s", "req/CPU-s"),
    "small_logbuf": ("1 KiB, log, nginx buffered", "req/s", "req/CPU-s"),
    "big": ("10 MiB, no log", "MiB/s", "MiB/CPU-s"),
}
BILLING_NOTE = """\
  (+wrk: per CPU-second of the whole transfer: the server's processes, wrk,
   and the ksoftirqd threads, over the same window.  For 10 MiB the goal is
   on this figure, not on the server-only one: on loopback a packet's receive
   processing (the receiver's TCP input, waking wrk) runs in the context of
   whichever task transmitted it, so the sender is billed a share of wrk's
   work that depends on timing, not on the server.  Measured on nginx alone,
   the same file: 62 us of nginx CPU per MiB with wrk -c50, 250-400 us per
   MiB with -c1.  For 1 KiB the server's own work dominates and the
   server-only figure stands.  See docs/internals/static.md, "The 10 MiB
   figure".)"""
FLUSH_WAIT_S = 1.5  # nginx flush=1s; Wharf hands batches over every 100 ms


def fmt_case(res):
    if isinstance(res, str):
        return f"FAILED: {res}"
    text = (f"{res['rate']:>10.1f} {res['p99_ms']:>8.3f}ms "
            f"{res['per_cpu']:>10.1f}/CPU-s  cpu {res['cpu_s']:.2f}s "
            f"(wrk {res['client_s']:.2f}s, ksoftirqd "
            f"{res['softirqd_s']:.2f}s)")
    if res["lines"] is not None:
        text += f"  logged {res['lines']}/{res['requests']}"
    if res["errors"]:
        text += f"  [{res['errors']}]"
    return text


def print_configs():
    print("Configurations (both: 1 worker/thread pinned to CPU 0, wrk on 1):")
    for name, _, nginx_log, wharf_log in CASES:
        print(f"  {name}:")
        print(f"    nginx: {Nginx.describe(nginx_log)}")
        print(f"    wharf: {Wharf.describe(wharf_log)}")
    print("  idle:")
    print(f"    nginx: {Nginx.describe(None)}")
    print(f"    wharf: {Wharf.describe(False)}")
    print()


def ratios_of(results, name, key):
    vals = []
    for runs in results:
        n, w = runs.get(("nginx", name)), runs.get(("wharf", name))
        if isinstance(n, dict) and isinstance(w, dict) and n[key] > 0:
            vals.append(w[key] / n[key])
    return vals


def spread(vals):
    return f"[{min(vals):.3f} .. {max(vals):.3f}]" if vals else ""


def report(results):
    """Prints the medians and the goals; returns True when all are met."""
    print()
    print("Medians of per-repetition ratios wharf/nginx "
          "(min .. max over repetitions):")
    ok_all = True
    for name, _, nginx_log, _ in CASES:
        label, rate, per_cpu = CASE_LABELS[name]
        for key, unit in (("rate", rate), ("per_cpu", per_cpu),
                          ("per_cpu_all", per_cpu + "+wrk")):
            vals = ratios_of(results, name, key)
            if not vals:
                print(f"  {label:<28} {unit:<14}      n/a")
                if (name, key) in GOALS:
                    ok_all = False
                continue
            med = statistics.median(vals)
            goal = ""
            if (name, key) in GOALS:
                op, want = GOALS[(name, key)]
                ok = med >= want if op == ">=" else med <= want
                ok_all = ok_all and ok
                goal = f"goal {op} {want:.2f}: {'met' if ok else 'NOT met'}"
            print(f"  {label:<28} {unit:<14} {med:6.3f}x  "
                  f"{spread(vals):<18} {goal}")
    print(BILLING_NOTE)
    print("  (nginx log: " + ", ".join(
        f"{n} = {lg or 'off'}" for n, _, lg, _ in CASES) + ")")
    for server in ("nginx", "wharf"):
        vals = [r[(server, "idle")]["per_conn"] for r in results
                if isinstance(r.get((server, "idle")), dict)]
        if not vals:
            print(f"  idle KiB/conn {server}: n/a")
            ok_all = ok_all and server != "wharf"
            continue
        med = statistics.median(vals)
        goal = ""
        if server == "wharf":
            ok = med <= IDLE_GOAL_KIB
            ok_all = ok_all and ok
            goal = f"goal <= {IDLE_GOAL_KIB:.2f}: {'met' if ok else 'NOT met'}"
        print(f"  idle KiB/conn {server:<6} {med:6.3f}  "
              f"{spread(vals):<18} {goal}")
    return ok_all


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def check_tools(args):
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found (make deps-bench)")
    if not os.access(args.nginx, os.X_OK):
        sys.exit(f"bench: {args.nginx} not found (make deps-bench)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs 2 CPUs (server on 0, wrk on 1)")


def routes_bench(args):
    """The --routes mode: returns the process exit status."""
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("bench: wrk and taskset are needed (make deps-bench)")
    base = tempfile.mkdtemp(prefix="wharf-bench-routes-")
    binary = os.path.abspath(args.wharf)
    targets = [("first", 0), ("last", ROUTES_N - 1)]
    ratios = []
    try:
        docroot = make_docroot(base)
        print(f"bench --routes: {ROUTES_N} steps, {args.reps} reps, wrk -t1 "
              f"-c{args.conns} -d{args.duration}s")
        for rep in range(args.reps):
            workdir = os.path.join(base, f"routes-{rep}")
            os.mkdir(workdir)
            server = WharfRoutes(binary, docroot, workdir)
            rates = {}
            try:
                server.start()
                order = targets if rep % 2 == 0 else targets[::-1]
                for label, i in order:
                    hdr = [f"Host: h{i}.example"]
                    run_wrk(server, f"p{i}", 1, args.conns, hdr)  # warm-up
                    res = run_wrk(server, f"p{i}", args.duration, args.conns,
                                  hdr)
                    if res["errors"]:
                        raise BenchError(f"{label}: {res['errors']}")
                    rates[label] = res["rps"]
            except (BenchError, OSError) as e:
                print(f"  rep {rep} FAILED: {e}")
                continue
            finally:
                server.stop()
            ratios.append(rates["last"] / rates["first"])
            print(f"  rep {rep}: first {rates['first']:.0f} req/s, last "
                  f"{rates['last']:.0f} req/s, last/first {ratios[-1]:.3f}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if not ratios:
        return 1
    med = statistics.median(ratios)
    verdict = "ok" if med >= ROUTES_GOAL else "MISSED"
    print(f"median last/first {med:.3f} (goal >= {ROUTES_GOAL}): {verdict}")
    return 0 if med >= ROUTES_GOAL else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wharf", required=True, help="path to the wharf binary")
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk")
    ap.add_argument("--conns", type=int, default=50, help="wrk connections")
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--cases", default=",".join(ALL_CASES),
                    help="comma-separated subset of " + ",".join(ALL_CASES))
    ap.add_argument("--net", choices=("lo", "veth"), default="lo",
                    help="veth: wrk in its own network namespace (root)")
    ap.add_argument("--routes", action="store_true",
                    help="first vs last of 1000 route steps, Wharf only")
    args = ap.parse_args()
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = set(args.cases) - set(ALL_CASES)
    if unknown:
        sys.exit(f"bench: unknown cases {sorted(unknown)}")
    if args.routes:
        return routes_bench(args)

    check_tools(args)
    hard = raise_nofile()
    if hard < args.idle_conns + 100:
        args.idle_conns = max(100, hard - 100)
        print(f"bench: RLIMIT_NOFILE is {hard}; idle test uses "
              f"{args.idle_conns} connections")

    servers = [(Nginx, args.nginx), (Wharf, os.path.abspath(args.wharf))]
    if args.net == "veth":
        net_veth_up()
        # Each side's receive work runs on its own CPU: the server's own
        # CPU is the figure, as for 1 KiB.
        GOALS[("big", "per_cpu")] = GOALS.pop(("big", "per_cpu_all"))
    base = tempfile.mkdtemp(prefix="wharf-bench-")
    os.chmod(base, 0o755)
    results = []
    try:
        docroot = make_docroot(base)
        print(f"bench: net {NET['name']}, {args.reps} reps, wrk -t1 -c{args.conns} "
              f"-d{args.duration}s, {args.idle_conns} idle connections, "
              f"docroot {docroot}")
        print_configs()
        for rep in range(args.reps):
            runs = {}
            for i, case in enumerate(CASES + [None]):
                name = case[0] if case else "idle"
                if name not in args.cases:
                    continue
                first = (rep + i) % 2
                for cls, binary in (servers[first], servers[1 - first]):
                    try:
                        if case:
                            res = bench_case(cls, binary, base, docroot, case,
                                             args)
                        else:
                            res = bench_idle(cls, binary, base, docroot, args)
                    except (BenchError, OSError) as e:
                        res = str(e)
                    runs[(cls.name, name)] = res
                    if case:
                        text = fmt_case(res)
                    elif isinstance(res, dict):
                        text = (f"{res['per_conn']:.3f} KiB/conn (RSS "
                                f"{res['rss0']} -> {res['rss1']} KiB)")
                    else:
                        text = f"FAILED: {res}"
                    print(f"  rep {rep} {name:<13} {cls.name:<6} {text}")
                    sys.stdout.flush()
            results.append(runs)
        report(results)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if NET["name"] == "veth":
            net_veth_down()
    # Figures, not a test: fail only when nginx, the baseline, never ran.
    return 0 if any(isinstance(v, dict) for r in results for (s, _), v in
                    r.items() if s == "nginx") else 1


if __name__ == "__main__":
    sys.exit(main())
