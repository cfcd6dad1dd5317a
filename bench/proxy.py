#!/usr/bin/python3
"""Wharf's proxy beside nginx (proxy_pass with upstream keepalive) and
Debian's HAProxy, in front of the same keep-alive backend (not a test).

Usage: /usr/bin/python3 bench/proxy.py --wharf build/wharf [--reps 3]

The backend is an nginx serving a 1 KiB and a 100 KiB file, pinned to CPU
1 with wrk; each proxy gets one thread (Wharf --threads 1, nginx
worker_processes 1, HAProxy nbthread 1), no access log, keep-alive to the
backend (Wharf "idle_connections", nginx "keepalive", HAProxy "http-reuse
always"), pinned to CPU 0.  A machine with more cores would pin the
backend apart from wrk too; here the figure that matters is the proxy's
own CPU: requests per proxy CPU-second (the run time of every thread of
the proxy, from schedstat), with req/s and p99 beside it.  Each repetition
runs every case on every proxy in a rotating order; the figures reported
are the medians of the per-repetition ratios wharf/nginx and
wharf/haproxy (issue 10's goal: per CPU-second at least 1.3x both).

Stdlib only, and bench/bench.py's helpers; every process started here is
stopped by PID before exit.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

SMALL = ("small.bin", 1024)
BIG = ("big100k.bin", 100 * 1024)
CASES = [("1k", SMALL[0]), ("100k", BIG[0])]
GOAL = 1.3


def make_docroot(base):
    root = os.path.join(base, "www")
    os.makedirs(root)
    for name, size in (SMALL, BIG):
        with open(os.path.join(root, name), "wb") as f:
            f.write(os.urandom(size))
        os.chmod(os.path.join(root, name), 0o644)
    # nginx workers run as nobody when started by root.
    for path in (base, root):
        os.chmod(path, 0o755)
    return root


class Backend(B.Nginx):
    """nginx serving the docroot, pinned to CPU 1 (beside wrk)."""

    name = "backend"

    def command(self):
        return ["taskset", "-c", "1"] + super().command()


class WharfProxy(B.Wharf):
    name = "wharf"

    def __init__(self, binary, backend_port, workdir):
        super().__init__(binary, "/nonexistent", workdir)
        self.backend_port = backend_port

    def config(self):
        return {
            "listeners": {f"127.0.0.1:{self.port}": {"pass": "routes"}},
            "routes": [{"action": {
                "proxy": f"http://127.0.0.1:{self.backend_port}",
                "proxy_settings": {"idle_connections": 64,
                                   "idle_timeout": 60}}}],
        }


class NginxProxy(B.Nginx):
    name = "nginx"

    def __init__(self, binary, backend_port, workdir):
        super().__init__(binary, "/nonexistent", workdir)
        self.backend_port = backend_port

    def command(self):
        w = self.workdir
        conf = f"""
worker_processes 1;
worker_rlimit_nofile 20000;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    client_body_temp_path {w}/body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    upstream backend {{
        server 127.0.0.1:{self.backend_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
        path = os.path.join(w, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return [self.binary, "-p", w, "-c", path, "-g", "daemon off;"]


class HAProxy(B.Server):
    name = "haproxy"

    def __init__(self, binary, backend_port, workdir):
        super().__init__("/nonexistent", workdir)
        self.binary = binary
        self.backend_port = backend_port

    def command(self):
        conf = f"""
global
    nbthread 1
    maxconn 5000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fe
    bind 127.0.0.1:{self.port}
    default_backend be
backend be
    server s1 127.0.0.1:{self.backend_port} maxconn 1000
"""
        path = os.path.join(self.workdir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        return [self.binary, "-db", "-f", path]


def run_case(proxy, path, args):
    B.run_wrk(proxy, path, 1, args.conns)  # warm-up: fill the pools
    r = B.run_wrk(proxy, path, args.duration, args.conns)
    r["per_cpu"] = r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else 0.0
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wharf", required=True)
    ap.add_argument("--nginx", default=shutil.which("nginx") or "nginx")
    ap.add_argument("--haproxy",
                    default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args()
    B.raise_nofile()
    base = tempfile.mkdtemp(prefix="wharf-proxy-bench-")
    docroot = make_docroot(base)
    backend = Backend(args.nginx, docroot, B.new_workdir(base, "backend"))
    makers = [
        ("wharf", lambda w: WharfProxy(args.wharf, backend.port, w)),
        ("nginx", lambda w: NginxProxy(args.nginx, backend.port, w)),
        ("haproxy", lambda w: HAProxy(args.haproxy, backend.port, w)),
    ]
    results = {}  # (rep, case, proxy) -> figures
    try:
        backend.start()
        for rep in range(args.reps):
            order = makers[rep % 3:] + makers[:rep % 3]
            for name, make in order:
                proxy = make(B.new_workdir(base, f"{name}-{rep}"))
                try:
                    proxy.start()
                    for case, path in CASES:
                        r = run_case(proxy, path, args)
                        results[(rep, case, name)] = r
                        print(f"rep {rep} {case:5} {name:8} "
                              f"{r['rps']:9.0f} req/s  "
                              f"{r['per_cpu']:9.0f} req/cpu-s  "
                              f"p99 {r['p99_ms']:6.2f} ms  "
                              f"cpu {r['cpu_s']:.2f}s {r['errors']}",
                              flush=True)
                except B.BenchError as e:
                    print(f"rep {rep} {name}: {e}", flush=True)
                finally:
                    proxy.stop()
    finally:
        backend.stop()
        shutil.rmtree(base, ignore_errors=True)
    report(results, args.reps)


def report(results, reps):
    print("\nmedians of per-repetition ratios (goal: per_cpu >= "
          f"{GOAL}x both)")
    for case, _ in CASES:
        for other in ("nginx", "haproxy"):
            for key in ("per_cpu", "rps", "p99_ms"):
                vals = [results[(rep, case, "wharf")][key]
                        / results[(rep, case, other)][key]
                        for rep in range(reps)
                        if (rep, case, "wharf") in results
                        and (rep, case, other) in results
                        and results[(rep, case, other)][key] > 0]
                if not vals:
                    continue
                med = statistics.median(vals)
                mark = ""
                if key == "per_cpu":
                    mark = "ok" if med >= GOAL else "BELOW GOAL"
                print(f"  {case:5} wharf/{other:8} {key:8} {med:6.2f} "
                      f"(spread {min(vals):.2f}..{max(vals):.2f}) {mark}")
        for name in ("wharf", "nginx", "haproxy"):
            p99 = [results[(rep, case, name)]["p99_ms"] for rep in range(reps)
                   if (rep, case, name) in results]
            if p99:
                print(f"  {case:5} {name:8} p99 median "
                      f"{statistics.median(p99):.2f} ms")


if __name__ == "__main__":
    main()
