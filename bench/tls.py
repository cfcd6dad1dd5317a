#!/usr/bin/python3
"""Wharf beside nginx over TLS (issue 11's benchmarks; not a test).

Usage: /usr/bin/python3 bench/tls.py --wharf build/wharf [--reps 3]

Both servers get one worker (Wharf --threads 1, nginx worker_processes 1)
pinned to CPU 0, the same self-signed ECDSA P-256 certificate, TLS 1.3
only, no access log, session tickets on (nginx's default; Wharf
"session": {"tickets": true}) and no session cache; the clients run
pinned to CPU 1. Cases (a fresh server per repetition):

  small    1 KiB file over keep-alive TLS: wrk over https (32 connections),
           requests per server CPU-second (goal 1.3x nginx);
  hs_new   new full handshakes, one GET of the 1 KiB file each:
           `openssl s_time -new -www` (one connection at a time),
           handshakes per server CPU-second (goal 1.0x);
  hs_reuse the same with resumption (`s_time -reuse`: TLS 1.3 tickets,
           psk_dhe_ke as OpenSSL's client offers it; the count of
           resumed connections is checked), per server CPU-second (1.0x);
  big      10 MiB file over TLS: wrk over https (4 connections), MiB per
           server CPU-second (goal 1.0x). No kTLS on either side on a
           kernel without the tls module (said below).

The docroot goes under --tmpdir (default /var/tmp, not /tmp: see
quiet_tmpdir()).

Server CPU is the run time of every thread of the server's processes
(/proc/PID/task/TID/schedstat) during the run. Each repetition runs every
case on both servers, alternating which goes first; the figures reported
are the medians of the per-repetition ratios wharf/nginx, with their
spread. Stdlib only, bench/bench.py's helpers; every process started here
is stopped by PID.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

GOALS = {"small": 1.3, "hs_new": 1.0, "hs_reuse": 1.0, "big": 1.0}
UNITS = {"small": "req/CPU-s", "hs_new": "hs/CPU-s", "hs_reuse": "hs/CPU-s",
         "big": "MiB/CPU-s"}


def make_cert(base):
    """A self-signed ECDSA P-256 certificate: (crt, key, bundle) paths."""
    crt, key = os.path.join(base, "bench.crt"), os.path.join(base, "bench.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
         "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=30)
    for p in (crt, key):
        os.chmod(p, 0o644)  # nginx's master reads them as root anyway
    with open(crt, "rb") as f, open(key, "rb") as g:
        bundle = f.read() + g.read()
    return crt, key, bundle


def quiet_tmpdir():
    """A parent for the docroot that nobody else writes in: Wharf's file
    cache watches every directory of a served path (inotify) and starts
    afresh on any entry created or removed in one, so under a /tmp shared
    with other jobs it refilled dozens of times a second (each fill
    re-watching /tmp and its hundreds of entries) and the small case
    measured the neighbours.  nginx's open_file_cache is unaffected."""
    return "/var/tmp" if os.path.isdir("/var/tmp") else None


def ktls_state():
    return ("kernel TLS module present (/proc/net/tls_stat)"
            if os.path.exists("/proc/net/tls_stat")
            else "no kernel TLS module (no /proc/net/tls_stat): kTLS off for "
                 "both")


class NginxTLS(B.Nginx):
    name = "nginx"

    def __init__(self, binary, docroot, workdir, cert):
        super().__init__(binary, docroot, workdir)
        self.crt, self.key = cert[0], cert[1]
        self.tls_port = B.free_port()

    @staticmethod
    def describe():
        return ("worker_processes 1; sendfile on; open_file_cache; "
                "access_log off; listen ssl; ssl_protocols TLSv1.3; "
                "ssl_session_tickets on (default); ssl_session_cache none "
                "(default); ssl_buffer_size 16k (default)")

    def command(self):
        cmd = super().command()
        path = cmd[cmd.index("-c") + 1]
        with open(path) as f:
            conf = f.read()
        tls = f"""
    server {{
        listen 127.0.0.1:{self.tls_port} ssl;
        ssl_certificate {self.crt};
        ssl_certificate_key {self.key};
        ssl_protocols TLSv1.3;
        root {self.docroot};
        location / {{ }}
    }}
}}
"""
        conf = conf.rstrip().rstrip("}") + tls
        with open(path, "w") as f:
            f.write(conf)
        return cmd


class WharfTLS(B.Wharf):
    name = "wharf"

    def __init__(self, binary, docroot, workdir, cert):
        super().__init__(binary, docroot, workdir)
        self.bundle = cert[2]
        self.tls_port = B.free_port()
        certs = os.path.join(workdir, "certs")
        os.makedirs(certs, mode=0o700)
        with open(os.path.join(certs, "bench"), "wb") as f:
            f.write(self.bundle)
        os.chmod(os.path.join(certs, "bench"), 0o600)

    TLS = {"certificate": "bench",
           "conf_commands": {"MinProtocol": "TLSv1.3"},
           "session": {"tickets": True}}

    @staticmethod
    def describe():
        return ("--threads 1; share (keeps files open); no access_log; "
                "tls " + json.dumps(WharfTLS.TLS))

    def config(self):
        conf = super().config()
        conf["listeners"][f"127.0.0.1:{self.tls_port}"] = {
            "pass": "routes", "tls": self.TLS}
        return conf


def run_s_time(server, mode, duration):
    """openssl s_time pinned to CPU 1; returns handshakes, the resumed
    ones and the server's CPU time."""
    cmd = ["taskset", "-c", "1", "openssl", "s_time", "-connect",
           f"127.0.0.1:{server.tls_port}", mode, "-time", str(duration),
           "-www", "/" + B.SMALL_NAME]
    pids = server.pids()
    cpu0 = B.proc_cpu_seconds(pids)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise B.BenchError("s_time timed out")
    cpu_s = B.proc_cpu_seconds(pids) - cpu0
    m = re.search(r"^(\d+) connections in [\d.]+s", out.stdout, re.M)
    if out.returncode != 0 or m is None:
        raise B.BenchError("s_time failed: " + (out.stdout + out.stderr)[-800:])
    n = int(m.group(1))
    # -reuse prints "*" for a full handshake and "r" for a resumed one
    marks = "".join(ln for ln in out.stdout.splitlines()
                    if ln and set(ln) <= {"r", "*"}) if mode == "-reuse" else ""
    return {"count": n, "resumed": marks.count("r"),
            "full": marks.count("*"), "cpu_s": cpu_s,
            "per_cpu": n / max(cpu_s, 1e-9), "rate": n / duration}


def run_case(server, case, args):
    base = f"https://127.0.0.1:{server.tls_port}"
    if case in ("hs_new", "hs_reuse"):
        return run_s_time(server, "-new" if case == "hs_new" else "-reuse",
                          args.duration)
    path, conns = ((B.SMALL_NAME, args.conns) if case == "small"
                   else (B.BIG_NAME, 4))
    B.run_wrk(server, path, 1, conns, base_url=base)  # warm-up
    r = B.run_wrk(server, path, args.duration, conns, base_url=base)
    r["per_cpu"] = r["requests"] / max(r["cpu_s"], 1e-9)
    r["rate"] = r["rps"]
    if case == "big":
        r["per_cpu"] *= B.BIG_SIZE / B.MIB
        r["rate"] *= B.BIG_SIZE / B.MIB
    return r


def fmt(case, r):
    text = (f"{r['rate']:10.1f}/s  {r['per_cpu']:10.1f} {UNITS[case]}  "
            f"cpu {r['cpu_s']:.2f}s")
    if case == "hs_reuse":
        text += f"  (resumed {r['resumed']}, full {r['full']})"
    if r.get("errors"):
        text += f"  [{r['errors']}]"
    return text


def negotiated(server):
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.tls_port}",
         "-brief"], input=b"", capture_output=True, timeout=30)
    text = (out.stdout + out.stderr).decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines()
             if ln.startswith(("Protocol version", "Ciphersuite",
                               "Peer signature type", "Server Temp Key"))]
    return "; ".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wharf", required=True)
    ap.add_argument("--nginx", default=shutil.which("nginx") or "nginx")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--cases", default="small,hs_new,hs_reuse,big")
    ap.add_argument("--tmpdir", default=quiet_tmpdir(),
                    help="where the docroot goes (default: /var/tmp)")
    args = ap.parse_args()
    cases = args.cases.split(",")
    B.raise_nofile()
    base = tempfile.mkdtemp(prefix="wharf-tls-bench-", dir=args.tmpdir)
    os.chmod(base, 0o755)
    docroot = B.make_docroot(base)
    cert = make_cert(base)
    print("Configurations (1 worker pinned to CPU 0, clients on CPU 1):")
    print("  nginx: " + NginxTLS.describe())
    print("  wharf: " + WharfTLS.describe())
    print("  " + ktls_state())
    makers = [("wharf", lambda w: WharfTLS(args.wharf, docroot, w, cert)),
              ("nginx", lambda w: NginxTLS(args.nginx, docroot, w, cert))]
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
                        print(f"rep {rep} {case:8} {name:6} {fmt(case, r)}",
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
                print(f"  {case:8} {key:8} n/a")
                continue
            med = statistics.median(vals)
            goal = ""
            if key == "per_cpu":
                goal = (f"goal >= {GOALS[case]:.1f}: "
                        + ("met" if med >= GOALS[case] else "NOT met"))
            unit = UNITS[case] if key == "per_cpu" else "rate"
            print(f"  {case:8} {unit:10} {med:6.3f}x  "
                  f"[{min(vals):.3f} .. {max(vals):.3f}]  {goal}")


if __name__ == "__main__":
    main()
