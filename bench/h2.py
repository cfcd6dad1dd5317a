#!/usr/bin/python3
"""Wharf beside nginx over HTTP/2 (issue 12's benchmarks; not a test).

Usage: /usr/bin/python3 bench/h2.py --wharf build/wharf [--reps 3]

Both servers get one worker (Wharf --threads 1, nginx worker_processes 1)
pinned to CPU 0, no access log, files kept open (Wharf's share caches open
files, so nginx gets open_file_cache), sendfile on; the load generator,
h2load (nghttp2-client) with one thread, runs pinned to CPU 1. Cases (a
fresh server per repetition):

  h2c      1 KiB file over h2c (prior knowledge): 100 connections x 10
           concurrent streams, requests per server CPU-second (goal 1.3x);
  h2tls    the same over TLS (ALPN h2; the same self-signed ECDSA P-256
           certificate, stored in Wharf's state directory as a /certificates
           upload leaves it (bench/tls.py), TLS 1.3 only for
           both), requests per server CPU-second (goal 1.3x);
  big      a 1 MiB file, one h2c connection with 100 concurrent streams,
           MiB per server CPU-second (goal 1.0x).

h2load's own windows are its defaults (stream and connection 2^30-1), so
the servers' DATA is not held back by the client; both servers keep their
default SETTINGS (nginx: 128 streams, 64 KiB window, 16 KiB frames;
Wharf: the same, docs/internals/h2.md).  nginx 1.22 (Debian's) spells
"http2 on" as "listen ... http2".

Server CPU is the run time of every thread of every process of the server
(/proc/PID/task/TID/schedstat) during the timed run (a 1-second warm-up run
comes first).  Each repetition runs every case on both servers, alternating
which goes first; the figures reported are the medians of the
per-repetition ratios wharf/nginx, with their spread.  Stdlib only,
bench/bench.py's and bench/tls.py's helpers; every process started here is
stopped by PID.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import tls as T  # noqa: E402

MID_NAME = "mid.bin"
MID_SIZE = 1024 * 1024
GOALS = {"h2c": 1.3, "h2tls": 1.3, "big": 1.0}
UNITS = {"h2c": "req/CPU-s", "h2tls": "req/CPU-s", "big": "MiB/CPU-s"}
# Both servers would pick another suite for the same client (Wharf prefers
# its own order, nginx the client's): the client offers one.
TLS13_CIPHER = "TLS_AES_128_GCM_SHA256"
# case: (scheme, file, connections, streams per connection)
SHAPES = {
    "h2c": ("http", B.SMALL_NAME, 100, 10),
    "h2tls": ("https", B.SMALL_NAME, 100, 10),
    "big": ("http", MID_NAME, 1, 100),
}


def make_docroot(base):
    """small.bin (1 KiB; the servers' start() checks it) and mid.bin."""
    docroot = os.path.join(base, "docroot")
    os.mkdir(docroot)
    for name, size in ((B.SMALL_NAME, B.SMALL_SIZE), (MID_NAME, MID_SIZE)):
        path = os.path.join(docroot, name)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        os.chmod(path, 0o644)
    for path in (base, docroot):
        os.chmod(path, 0o755)
    return docroot


class NginxH2(T.NginxTLS):
    name = "nginx"

    def __init__(self, binary, docroot, workdir, cert):
        super().__init__(binary, docroot, workdir, cert)
        self.h2c_port = B.free_port()

    @staticmethod
    def describe():
        return (T.NginxTLS.describe()
                + "; listen ... http2 (h2c and ssl); http2 defaults "
                  "(max_concurrent_streams 128, recv_buffer 256k) but "
                  "http2_chunk_size 16k (Wharf's DATA frame size; at the "
                  "default 8k nginx's 10000-frame limit per connection "
                  "cuts the big case off: 'http2 flood detected')")

    def command(self):
        cmd = super().command()
        path = cmd[cmd.index("-c") + 1]
        with open(path) as f:
            conf = f.read()
        conf = conf.replace("sendfile on;",
                            "sendfile on;\n    http2_chunk_size 16k;", 1)
        conf = conf.replace(f"listen 127.0.0.1:{self.tls_port} ssl;",
                            f"listen 127.0.0.1:{self.tls_port} ssl http2;")
        h2c = f"""
    server {{
        listen 127.0.0.1:{self.h2c_port} http2;
        root {self.docroot};
        location / {{ }}
    }}
}}
"""
        conf = conf.rstrip().rstrip("}") + h2c
        with open(path, "w") as f:
            f.write(conf)
        return cmd


class WharfH2(T.WharfTLS):
    """Wharf with an h2c listener beside T.WharfTLS's TLS one."""

    name = "wharf"

    def __init__(self, binary, docroot, workdir, cert):
        super().__init__(binary, docroot, workdir, cert)
        self.h2c_port = B.free_port()

    @staticmethod
    def describe():
        return T.WharfTLS.describe() + '; h2c listener {"h2c": true}'

    def config(self):
        conf = super().config()
        conf["listeners"][f"127.0.0.1:{self.h2c_port}"] = {
            "pass": "routes", "h2c": True}
        return conf


H2LOAD_RE = {
    "done": re.compile(r"^requests: \d+ total, \d+ started, (\d+) done, "
                       r"(\d+) succeeded, (\d+) failed, (\d+) errored", re.M),
    "status": re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, "
                         r"(\d+) 5xx", re.M),
}


def run_h2load(server, case, duration):
    """h2load pinned to CPU 1 for duration seconds; returns its counts and
    the server's CPU time meanwhile."""
    scheme, path, conns, streams = SHAPES[case]
    port = server.tls_port if scheme == "https" else server.h2c_port
    cmd = ["taskset", "-c", "1", "h2load", "-t", "1", "-c", str(conns),
           "-m", str(streams), "-D", str(duration),
           "--tls13-ciphers=" + TLS13_CIPHER,
           f"{scheme}://127.0.0.1:{port}/{path}"]
    pids = server.pids()
    cpu0 = B.proc_cpu_seconds(pids)
    t0 = time.monotonic()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise B.BenchError("h2load timed out")
    wall = time.monotonic() - t0
    cpu_s = B.proc_cpu_seconds(pids) - cpu0
    m = H2LOAD_RE["done"].search(out.stdout)
    st = H2LOAD_RE["status"].search(out.stdout)
    if out.returncode != 0 or m is None or st is None:
        raise B.BenchError("h2load failed: "
                           + (out.stdout + out.stderr)[-800:])
    # With -D, 2xx counts the answers whose head came; succeeded those
    # whose body ended within the duration: the latter counts.
    ok = int(m.group(2))
    errors = ""
    bad = int(m.group(3)) + int(m.group(4))
    non2xx = sum(int(st.group(i)) for i in (2, 3, 4))
    if bad or non2xx:
        errors = f"{bad} failed/errored, {non2xx} not 2xx"
    if ok == 0:
        raise B.BenchError("h2load: no 2xx answer:\n" + out.stdout[-800:])
    r = {"requests": ok, "cpu_s": cpu_s, "errors": errors,
         "rate": ok / duration, "wall": wall}
    r["per_cpu"] = ok / max(cpu_s, 1e-9)
    if case == "big":
        r["per_cpu"] *= MID_SIZE / B.MIB
        r["rate"] *= MID_SIZE / B.MIB
    return r


def run_case(server, case, args):
    run_h2load(server, case, 1)  # warm-up: caches, TLS session state
    return run_h2load(server, case, args.duration)


def fmt(case, r):
    text = (f"{r['rate']:10.1f}/s  {r['per_cpu']:10.1f} {UNITS[case]}  "
            f"cpu {r['cpu_s']:.2f}s")
    if r.get("errors"):
        text += f"  [{r['errors']}]"
    return text


def negotiated(server):
    """What h2load says it negotiated on the TLS port."""
    out = subprocess.run(
        ["h2load", "-n", "1", "-c", "1", "--tls13-ciphers=" + TLS13_CIPHER,
         f"https://127.0.0.1:{server.tls_port}/{B.SMALL_NAME}"],
        capture_output=True, text=True, timeout=30)
    keep = ("TLS Protocol", "Cipher", "Server Temp Key",
            "Application protocol")
    return "; ".join(ln.strip() for ln in out.stdout.splitlines()
                     if ln.startswith(keep))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wharf", required=True)
    ap.add_argument("--nginx", default=shutil.which("nginx") or "nginx")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--cases", default="h2c,h2tls,big")
    ap.add_argument("--tmpdir", default=T.quiet_tmpdir(),
                    help="where the docroot goes (default: /var/tmp)")
    args = ap.parse_args()
    cases = args.cases.split(",")
    if shutil.which("h2load") is None:
        sys.exit("h2load not found (Debian package nghttp2-client)")
    B.raise_nofile()
    base = tempfile.mkdtemp(prefix="wharf-h2-bench-", dir=args.tmpdir)
    os.chmod(base, 0o755)
    docroot = make_docroot(base)
    cert = T.make_cert(base)
    print("Configurations (1 worker pinned to CPU 0, h2load -t 1 on CPU 1):")
    print("  nginx: " + NginxH2.describe())
    print("  wharf: " + WharfH2.describe())
    print("  shapes: " + json.dumps(SHAPES))
    makers = [("wharf", lambda w: WharfH2(args.wharf, docroot, w, cert)),
              ("nginx", lambda w: NginxH2(args.nginx, docroot, w, cert))]
    results = {}
    try:
        for rep in range(args.reps):
            order = makers if rep % 2 == 0 else makers[::-1]
            for name, make in order:
                server = make(B.new_workdir(base, f"{name}-{rep}"))
                try:
                    server.start()
                    if rep == 0:
                        print(f"  {name} negotiates: {negotiated(server)}")
                    for case in cases:
                        r = run_case(server, case, args)
                        results[(rep, case, name)] = r
                        print(f"rep {rep} {case:6} {name:6} {fmt(case, r)}",
                              flush=True)
                except B.BenchError as e:
                    print(f"rep {rep} {name}: {e}", flush=True)
                finally:
                    server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(results, cases, args.reps)


def report(results, cases, reps):
    print("\nMedians of per-repetition ratios wharf/nginx (min .. max):")
    for case in cases:
        for key in ("per_cpu", "rate"):
            vals = [results[(r, case, "wharf")][key]
                    / results[(r, case, "nginx")][key]
                    for r in range(reps)
                    if (r, case, "wharf") in results
                    and (r, case, "nginx") in results
                    and results[(r, case, "nginx")][key] > 0]
            if not vals:
                print(f"  {case:6} {key:8} n/a")
                continue
            med = statistics.median(vals)
            goal = ""
            if key == "per_cpu":
                goal = (f"goal >= {GOALS[case]:.1f}: "
                        + ("met" if med >= GOALS[case] else "NOT met"))
            unit = UNITS[case] if key == "per_cpu" else "rate"
            print(f"  {case:6} {unit:10} {med:6.3f}x  "
                  f"[{min(vals):.3f} .. {max(vals):.3f}]  {goal}")


if __name__ == "__main__":
    main()
