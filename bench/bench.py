#!/usr/bin/python3
"""Wharf beside nginx: static files with wrk, and idle keep-alive memory.

Usage: /usr/bin/python3 bench/bench.py --wharf build/wharf [--reps 5]
       /usr/bin/python3 bench/bench.py --wharf build/wharf --routes

--routes: Wharf alone, with 1000 route steps on distinct host/uri literals
({"host": "hN.example", "uri": "/pN"} -> return 204); wrk rates for the
first and the last step (Host set with -H), and the median ratio
last/first, which must be at least 0.8 (the route index, not a scan).

Both servers run one worker (thread) pinned to CPU 0; wrk runs pinned to
CPU 1.  They serve the same docroot: a 1 KiB and a 10 MiB file.  Each
repetition runs both servers, alternating which goes first, and the figures
reported are the medians of the per-repetition ratios wharf/nginx.

Figures:
  a) 1 KiB file, keep-alive: req/s, p99 latency, requests per server
     CPU-second (utime + stime of every process of the server, from
     /proc/PID/stat, before and after the wrk run).
  b) 10 MiB file: MiB/s and MiB per server CPU-second.
  c) idle memory: VmRSS growth of the server processes after N keep-alive
     connections that each made one request and stay open, per connection.

Stdlib only; every subprocess has a time bound, and every server started
here is stopped by PID before exit.  The Wharf half may fail (its error is
printed) without stopping the nginx half.
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

GOALS = {
    "small_req_per_cpu": (">=", 1.10),
    "big_mib_per_cpu": (">=", 0.95),
    "idle_kib_per_conn": ("<=", 1.00),
}


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


def proc_cpu_ticks(pids):
    """utime + stime of pids, in clock ticks; vanished processes count 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


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
        s.bind(("127.0.0.1", 0))
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
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        return read_response(s, deadline)


# ---------------------------------------------------------------- servers


class Server:
    """A server under test, started in its own temp dir and pinned to CPU 0."""

    name = "?"

    def __init__(self, docroot, workdir):
        self.docroot = docroot
        self.workdir = workdir
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

    def __init__(self, binary, docroot, workdir):
        super().__init__(docroot, workdir)
        self.binary = binary

    def command(self):
        w = self.workdir
        conf = f"""
worker_processes 1;
worker_rlimit_nofile 20000;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{
    worker_connections 20000;
}}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    client_body_temp_path {w}/body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
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

    def __init__(self, binary, docroot, workdir):
        super().__init__(docroot, workdir)
        self.binary = binary

    def config(self):
        return {
            "listeners": {f"127.0.0.1:{self.port}": {"pass": "routes"}},
            "routes": [{"action": {"share": self.docroot + "$uri"}}],
        }

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


def run_wrk(server, path, duration, conns, headers=()):
    """Runs wrk pinned to CPU 1 and returns its figures plus the server's
    CPU ticks used meanwhile.  headers: extra "Name: value" fields."""
    url = f"http://127.0.0.1:{server.port}/{path}"
    cmd = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
        "--latency",
    ]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    pids = server.pids()
    ticks0 = proc_cpu_ticks(pids)
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + 30
        )
    except subprocess.TimeoutExpired:
        raise BenchError("wrk timed out")
    ticks = proc_cpu_ticks(pids) - ticks0
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
    cpu_s = ticks / CLK_TCK
    return {
        "requests": int(m_req.group(1)),
        "rps": float(m_rps.group(1)),
        "p99_ms": float(m_p99.group(1)) * WRK_UNITS[m_p99.group(2)],
        "cpu_s": cpu_s,
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
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
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


def bench_one(cls, binary, base, docroot, rep, args):
    """One repetition for one server; returns its figures or raises."""
    workdir = os.path.join(base, f"{cls.name}-{rep}")
    os.mkdir(workdir)
    os.chmod(workdir, 0o755)
    res = {}
    server = cls(binary, docroot, workdir)
    try:
        server.start()
        run_wrk(server, SMALL_NAME, 1, args.conns)  # warm-up
        small = run_wrk(server, SMALL_NAME, args.duration, args.conns)
        big = run_wrk(server, BIG_NAME, args.duration, args.conns)
    finally:
        server.stop()
    res["small_rps"] = small["rps"]
    res["small_p99_ms"] = small["p99_ms"]
    res["small_req_per_cpu"] = small["requests"] / max(small["cpu_s"], 1e-9)
    res["big_mib_s"] = big["rps"] * BIG_SIZE / MIB
    res["big_mib_per_cpu"] = (
        big["requests"] * BIG_SIZE / MIB / max(big["cpu_s"], 1e-9)
    )
    res["errors"] = "; ".join(e for e in (small["errors"], big["errors"]) if e)

    server = cls(binary, docroot, workdir)
    try:
        server.start()
        rss0, rss1, per_conn = idle_test(server, args.idle_conns)
    finally:
        server.stop()
    res["idle_rss0_kib"] = rss0
    res["idle_rss1_kib"] = rss1
    res["idle_kib_per_conn"] = per_conn
    return res


METRICS = [
    # key, label, format, higher is better
    ("small_rps", "1KiB req/s", "{:>12.0f}", True),
    ("small_p99_ms", "1KiB p99 ms", "{:>12.3f}", False),
    ("small_req_per_cpu", "1KiB req/CPU-s", "{:>12.0f}", True),
    ("big_mib_s", "10MiB MiB/s", "{:>12.1f}", True),
    ("big_mib_per_cpu", "10MiB MiB/CPU-s", "{:>12.1f}", True),
    ("idle_kib_per_conn", "idle KiB/conn", "{:>12.2f}", False),
]


def print_run(rep, name, res):
    if isinstance(res, str):
        print(f"  rep {rep} {name:<6} FAILED: {res}")
        return
    cells = " ".join(fmt.format(res[k]) for k, _, fmt, _ in METRICS)
    extra = f"  [{res['errors']}]" if res["errors"] else ""
    print(f"  rep {rep} {name:<6}{cells}{extra}")


def report(results):
    print()
    print("Per-run figures:")
    header = " ".join(f"{label:>12}" for _, label, _, _ in METRICS)
    print(f"  {'':<12}{header}")
    for rep, runs in enumerate(results):
        for name in ("nginx", "wharf"):
            print_run(rep, name, runs.get(name, "not run"))

    print()
    print("Medians of per-repetition ratios wharf/nginx:")
    ratios = {}
    for key, label, _, higher in METRICS:
        vals = []
        for runs in results:
            n, w = runs.get("nginx"), runs.get("wharf")
            if isinstance(n, dict) and isinstance(w, dict) and n[key] > 0:
                vals.append(w[key] / n[key])
        if vals:
            ratios[key] = statistics.median(vals)
            better = "higher" if higher else "lower"
            print(
                f"  {label:<18} {ratios[key]:8.3f}  "
                f"({len(vals)} reps; {better} is better for wharf)"
            )
        else:
            print(f"  {label:<18}      n/a")

    print()
    print("Goals:")
    ok_all = True
    for key, (op, goal) in GOALS.items():
        label = next(lab for k, lab, _, _ in METRICS if k == key)
        if key not in ratios:
            print(f"  {label:<18} {op} {goal:.2f}x nginx: n/a")
            ok_all = False
            continue
        r = ratios[key]
        ok = r >= goal if op == ">=" else r <= goal
        ok_all = ok_all and ok
        verdict = "met" if ok else "NOT met"
        print(f"  {label:<18} {op} {goal:.2f}x nginx: {r:.3f}x  {verdict}")
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
    ap.add_argument("--routes", action="store_true",
                    help="first vs last of 1000 route steps, Wharf only")
    args = ap.parse_args()
    if args.routes:
        return routes_bench(args)

    check_tools(args)
    hard = raise_nofile()
    if hard < args.idle_conns + 100:
        args.idle_conns = max(100, hard - 100)
        print(f"bench: RLIMIT_NOFILE is {hard}; idle test uses "
              f"{args.idle_conns} connections")

    servers = [(Nginx, args.nginx), (Wharf, os.path.abspath(args.wharf))]
    base = tempfile.mkdtemp(prefix="wharf-bench-")
    results = []
    try:
        docroot = make_docroot(base)
        print(f"bench: {args.reps} reps, wrk -t1 -c{args.conns} "
              f"-d{args.duration}s, {args.idle_conns} idle connections, "
              f"docroot {docroot}")
        for rep in range(args.reps):
            runs = {}
            order = servers if rep % 2 == 0 else servers[::-1]
            for cls, binary in order:
                try:
                    runs[cls.name] = bench_one(cls, binary, base, docroot,
                                               rep, args)
                except (BenchError, OSError) as e:
                    runs[cls.name] = str(e)
                print_run(rep, cls.name, runs[cls.name])
                sys.stdout.flush()
            results.append(runs)
        report(results)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    # Figures, not a test: fail only when nginx, the baseline, never ran.
    return 0 if any(isinstance(r.get("nginx"), dict) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
