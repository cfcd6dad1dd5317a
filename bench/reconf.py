#!/usr/bin/python3
"""Reconfiguration figures for Wharf's control plane.

Usage: /usr/bin/python3 bench/reconf.py --wharf build/wharf [--reps 20]
           [--routes 100] [--duration 5] [--conns 50]

Figures:
  a) PUT /config -> reply time for a config of N routes (distinct uri
     literals -> return 204/205, then a catch-all), median/min/max of
     --reps PUTs; every PUT changes the config (the two variants
     alternate), so each one is validated, applied by the router and
     stored.  A 1-route config is measured the same way for comparison.
  b) the request rate a load client sees (wrk -t1 -cCONNS, GET /p{N/2}
     over keep-alive) for --duration seconds without reconfiguration, then
     for --duration seconds while a loop PUTs the two variants back to back;
     the ratio of the two, the number of reconfigurations done during the
     run and wrk's error counts.  Without /usr/bin/wrk a threaded
     http.client load is used instead (said so in the output).

Wharf runs with --threads 1 pinned to CPU 0 and wrk pinned to CPU 1 when
taskset exists and there are 2 CPUs.  Stdlib only; every subprocess has a
time bound, and the server is stopped by PID before exit.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


class BenchError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def api_put(sock_path, path, value):
    """(status, seconds from the request's first byte to the whole reply)."""
    body = json.dumps(value).encode()
    c = UnixHTTPConnection(sock_path)
    try:
        c.connect()
        t0 = time.perf_counter()
        c.request("PUT", path, body=body)
        r = c.getresponse()
        r.read()
        return r.status, time.perf_counter() - t0
    finally:
        c.close()


def routes_conf(listen, n, status):
    routes = [{"match": {"uri": "/p%d" % i}, "action": {"return": status}}
              for i in range(n)]
    routes.append({"action": {"return": 404}})
    return {"listeners": {listen: {"pass": "routes"}}, "routes": routes}


def pinned(cmd, cpu):
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)] + cmd
    return cmd


class Server:
    def __init__(self, binary, workdir, conf):
        self.binary = binary
        self.workdir = workdir
        self.sock = os.path.join(workdir, "control.sock")
        self.log = os.path.join(workdir, "wharf.log")
        self.conf_path = os.path.join(workdir, "conf.json")
        with open(self.conf_path, "w") as f:
            json.dump(conf, f)
        self.proc = None

    def start(self, port, timeout=15.0):
        cmd = pinned([self.binary, "--no-daemon", "--threads", "1",
                      "--config", self.conf_path,
                      "--statedir", os.path.join(self.workdir, "state"),
                      "--log", self.log,
                      "--pid", os.path.join(self.workdir, "wharf.pid"),
                      "--control", "unix:" + self.sock], 0)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("wharf exited:\n" + self.log_tail())
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise BenchError("wharf did not start:\n" + self.log_tail())

    def log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


# ---------------------------------------------------------------- (a)

def put_times(server, listen, nroutes, reps):
    """Times of reps successful PUTs, and the statuses of failed ones (a
    failed PUT is retried, at most 5 * reps attempts in all)."""
    confs = [routes_conf(listen, nroutes, s) for s in (204, 205)]
    times, failed = [], []
    api_put(server.sock, "/config", confs[1])   # warm-up
    i = 0
    while len(times) < reps and i < 5 * reps:
        status, secs = api_put(server.sock, "/config", confs[i % 2])
        if status == 200:
            times.append(secs)
        else:
            failed.append(status)
        i += 1
    if not times:
        raise BenchError("PUT of %d routes never succeeded: %s"
                         % (nroutes, failed))
    return times, failed


# ---------------------------------------------------------------- (b)

def run_wrk(port, path, duration, conns):
    cmd = pinned(["wrk", "-t1", "-c%d" % conns, "-d%ds" % duration,
                  "http://127.0.0.1:%d%s" % (port, path)], 1)
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=duration + 30)
    if out.returncode != 0:
        raise BenchError("wrk failed: " + out.stderr.strip())
    text = out.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise BenchError("cannot read wrk output:\n" + text)
    errors = {}
    m2 = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                   r"timeout (\d+)", text)
    if m2:
        errors = dict(zip(("connect", "read", "write", "timeout"),
                          map(int, m2.groups())))
    m3 = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors["non-2xx"] = int(m3.group(1)) if m3 else 0
    return float(m.group(1)), errors


def run_pyload(port, path, duration, conns):
    """Fallback load: threads of keep-alive http.client connections."""
    stop = time.monotonic() + duration
    counts = [0] * min(conns, 16)
    errors = {"errors": 0, "non-2xx": 0}
    lock = threading.Lock()

    def worker(k):
        c = None
        while time.monotonic() < stop:
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", port,
                                                   timeout=10)
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                counts[k] += 1
                if r.status >= 400:
                    with lock:
                        errors["non-2xx"] += 1
            except (OSError, http.client.HTTPException):
                with lock:
                    errors["errors"] += 1
                c = None
        if c is not None:
            c.close()

    threads = [threading.Thread(target=worker, args=(k,))
               for k in range(len(counts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 30)
    return sum(counts) / float(duration), errors


def reconf_loop(server, confs, stop, done):
    """done: [successful PUTs, failed PUTs]."""
    i = 0
    while not stop.is_set():
        status, _ = api_put(server.sock, "/config", confs[i % 2])
        done[0 if status == 200 else 1] += 1
        i += 1


def load_rates(server, listen, port, nroutes, duration, conns):
    path = "/p%d" % (nroutes // 2)
    use_wrk = shutil.which("wrk") is not None
    load = run_wrk if use_wrk else run_pyload
    load(port, path, 1, conns)                      # warm-up
    quiet, quiet_err = load(port, path, duration, conns)
    confs = [routes_conf(listen, nroutes, s) for s in (204, 205)]
    stop = threading.Event()
    done = [0, 0]
    t = threading.Thread(target=reconf_loop, args=(server, confs, stop, done))
    t.start()
    try:
        busy, busy_err = load(port, path, duration, conns)
    finally:
        stop.set()
        t.join(60)
    return {"tool": "wrk" if use_wrk else "python http.client threads",
            "quiet": quiet, "quiet_err": quiet_err, "busy": busy,
            "busy_err": busy_err, "reconfs": done[0],
            "reconf_failed": done[1]}


# ---------------------------------------------------------------- main

def fmt_ms(times):
    ms = [t * 1000.0 for t in times]
    return "median %.2f ms (min %.2f, max %.2f, n=%d)" % (
        statistics.median(ms), min(ms), max(ms), len(ms))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wharf", default="build/wharf")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--routes", type=int, default=100)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    args = ap.parse_args()
    binary = os.path.abspath(args.wharf)
    if not os.access(binary, os.X_OK):
        sys.exit("reconf: %s is not an executable" % binary)

    port = free_port()
    listen = "127.0.0.1:%d" % port
    with tempfile.TemporaryDirectory(prefix="wharf-reconf-") as workdir:
        server = Server(binary, workdir, routes_conf(listen, 1, 204))
        try:
            server.start(port)
            one, one_failed = put_times(server, listen, 1, args.reps)
            many, many_failed = put_times(server, listen, args.routes,
                                          args.reps)
            rates = load_rates(server, listen, port, args.routes,
                               args.duration, args.conns)
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            print("reconf: %s" % e)
            print(server.log_tail())
            return 1
        finally:
            server.stop()

    print("Wharf reconfiguration (%s, --threads 1)" % binary)
    print("a) PUT /config -> reply, config of %d routes: %s"
          % (args.routes, fmt_ms(many)))
    print("   for comparison, 1 route:            %s" % fmt_ms(one))
    for n, failed in ((args.routes, many_failed), (1, one_failed)):
        if failed:
            print("   !! %d failed PUTs of the %d-route config (statuses %s),"
                  " retried" % (len(failed), n, sorted(set(failed))))
    print("b) load: %s, %d connections, GET /p%d, %d s each"
          % (rates["tool"], args.conns, args.routes // 2, args.duration))
    print("   no reconfiguration:   %10.0f req/s  errors %s"
          % (rates["quiet"], rates["quiet_err"]))
    print("   reconfiguration loop: %10.0f req/s  errors %s  (%d PUTs, "
          "%.1f/s)" % (rates["busy"], rates["busy_err"], rates["reconfs"],
                       rates["reconfs"] / float(args.duration)))
    if rates["quiet"] > 0:
        print("   ratio loop/quiet:     %10.2f" % (rates["busy"]
                                                   / rates["quiet"]))
    if rates["reconf_failed"]:
        print("   !! %d PUTs of the loop failed" % rates["reconf_failed"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
