#!/usr/bin/python3
"""Python applications on Wharf beside NGINX Unit, uWSGI, gunicorn, uvicorn.

Usage: /usr/bin/python3 bench/apps.py --wharf build/wharf [--unitd PATH]
           [--reps 5] [--duration 5] [--conns 32] [--cases wsgi,asgi,django]

Cases (the same app on every server, 1 app process each):
  wsgi    a 4-line WSGI hello world: Wharf, Unit 1.35, uWSGI (1 process,
          uwsgi-plugin-python3, --http11-socket for keep-alive), gunicorn
          (1 sync worker: it closes every connection, so wrk reconnects);
  asgi    an ASGI hello world: Wharf, Unit, uvicorn (1 worker, uvloop,
          httptools);
  asgi-uvloop  the same app with `uvloop.install()` at its top: how an app
          picks uvloop under Unit (which makes its loop with
          asyncio.new_event_loop(), after the import) and Wharf alike;
          uvicorn runs uvloop in both cases (--loop uvloop);
  django  the template page of tests/integration/apps/django_site ("/"):
          Wharf, Unit, uWSGI, gunicorn.
Unit runs when --unitd (or $UNITD) names unitd, or /tmp/unit/sbin/unitd
exists; otherwise its column is skipped with a note.

Method (as bench/bench.py): every server process is pinned to CPU 0 and
wrk (-t1, keep-alive) to CPU 1.  Each repetition starts every server of a
case afresh, in an order that rotates between repetitions, warms it up for
a second, then runs wrk.  Figures per run: req/s, p99, and requests per
server CPU-second, the CPU being the run time of every thread of every
process of the server (main, router, controller and app processes alike;
/proc/PID/task/TID/schedstat of the whole process tree, before and after
the wrk run; a process whose threads came or went is counted from its
/proc/PID/stat utime+stime, which keeps exited threads, and every
process's reaped children count through its cutime+cstime).  Reported:
the medians of each server's figures and the medians of the
per-repetition ratios Wharf/peer, against the goals of issue 8.  Each server's exact configuration or command is printed beside
the figures.

Stdlib only (and the Debian packages of `make deps-bench`); every
subprocess has a time bound, and every server started here is stopped by
PID before exit.  A server that fails (Wharf before it runs applications,
say) is reported as failed; the others' figures still come out.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as static_bench  # noqa: E402  (proc_*, run_wrk, free_port)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DJANGO_SRC = os.path.join(REPO, "tests", "integration", "apps", "django_site")
SYSTEM_PYTHON = "/usr/bin/python3"
DEFAULT_UNITD = "/tmp/unit/sbin/unitd"

HELLO_WSGI = '''\
def application(environ, start_response):
    body = b"Hello, World!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

HELLO_ASGI = '''\
async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b"Hello, World!"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
'''

HELLO_ASGI_UVLOOP = "import uvloop\nuvloop.install()\n\n" + HELLO_ASGI

# case: (servers, expected body fragment of GET /)
CASES = {
    "wsgi": (["wharf", "unit", "uwsgi", "gunicorn"], b"Hello, World!"),
    "asgi": (["wharf", "unit", "uvicorn"], b"Hello, World!"),
    "asgi-uvloop": (["wharf", "unit", "uvicorn"], b"Hello, World!"),
    "django": (["wharf", "unit", "uwsgi", "gunicorn"],
               b"<h1>Hello, world!</h1>"),
}

# Issue 8's goals: (case, peer, figure) -> minimum ratio wharf/peer.
GOALS = {
    ("wsgi", "unit", "per_cpu"): 1.5,
    ("wsgi", "unit", "rps"): 1.3,
    ("wsgi", "uwsgi", "per_cpu"): 2.0,
    ("wsgi", "gunicorn", "per_cpu"): 8.0,
    ("asgi", "uvicorn", "per_cpu"): 1.5,
    ("asgi-uvloop", "uvicorn", "per_cpu"): 1.5,
}


class BenchError(Exception):
    """A server or tool failed; the message says which and why."""


# ---------------------------------------------------------------- apps


def make_apps(base):
    """Writes the hello worlds and a copy of the Django site under base
    (world-readable: Unit and Wharf started as root run apps as nobody).
    Returns {"hello": dir, "django": dir, "django_data": dir}."""
    hello = os.path.join(base, "hello")
    os.mkdir(hello)
    for name, text in (("hello.py", HELLO_WSGI),
                       ("hello_asgi.py", HELLO_ASGI),
                       ("hello_asgi_uvloop.py", HELLO_ASGI_UVLOOP)):
        with open(os.path.join(hello, name), "w") as f:
            f.write(text)
    django = os.path.join(base, "django_site")
    shutil.copytree(DJANGO_SRC, django,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    data = os.path.join(base, "django-data")
    os.mkdir(data)
    for root, dirs, files in os.walk(base):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    os.chmod(data, 0o1777)
    return {"hello": hello, "django": django, "django_data": data}


def django_env(paths):
    return {"DJANGO_SETTINGS_MODULE": "site_project.settings",
            "WHARF_DJANGO_DATA": paths["django_data"],
            "PYTHONDONTWRITEBYTECODE": "1"}


def unit_app(case, paths):
    """The `applications` entry Unit and Wharf both get."""
    if case == "django":
        return {"type": "python 3", "path": paths["django"],
                "module": "site_project.wsgi", "processes": 1,
                "environment": django_env(paths)}
    module = {"wsgi": "hello", "asgi": "hello_asgi",
              "asgi-uvloop": "hello_asgi_uvloop"}[case]
    app = {"type": "python 3", "path": paths["hello"], "processes": 1,
           "module": module}
    if case != "wsgi":
        app["protocol"] = "asgi"
    return app


def unit_config(case, paths, port):
    return {
        "listeners": {f"127.0.0.1:{port}": {"pass": "applications/bench"}},
        "applications": {"bench": unit_app(case, paths)},
    }


# ---------------------------------------------------------------- servers


def http_get_body(port, timeout=5.0):
    """GET / on a new connection: (status, body)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"Connection: close\r\n\r\n" % port)
        data = b""
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise BenchError("no response")
    return int(head.split(b" ", 2)[1]), body


class Server:
    """One server under test, in its own work directory, pinned to CPU 0.
    Subclasses give command() and describe(); configure() runs after the
    process started (Unit takes its config over the control socket)."""

    name = "?"

    def __init__(self, case, paths, workdir, args):
        self.case = case
        self.paths = paths
        self.workdir = workdir
        self.args = args
        self.port = None
        self.proc = None
        self.out = None
        self.env = None

    def command(self):
        raise NotImplementedError

    def describe(self):
        return " ".join(self.command())

    def configure(self, deadline):
        pass

    def log_tail(self):
        return ""

    def start(self, timeout=30.0):
        self.port = static_bench.free_port()
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.update(self.env or {})
        self.out = open(os.path.join(self.workdir, "output.log"), "wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0"] + self.command(), stdin=subprocess.DEVNULL,
            stdout=self.out, stderr=subprocess.STDOUT, env=env,
            cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + timeout
        self.configure(deadline)
        want = CASES[self.case][1]
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with "
                                 f"{self.proc.returncode}: {self.tail()}")
            try:
                status, body = http_get_body(self.port)
                if status == 200 and want in body:
                    return
                last = f"GET /: {status} {body[:200]!r}"
            except (OSError, BenchError, ValueError, IndexError) as e:
                last = str(e)
            time.sleep(0.1)
        raise BenchError(f"{self.name} does not serve the app on port "
                         f"{self.port} after {timeout:.0f}s ({last}): "
                         + self.tail())

    def tail(self):
        text = ""
        try:
            with open(os.path.join(self.workdir, "output.log"), "rb") as f:
                text = f.read()[-1500:].decode("utf-8", "replace")
        except OSError:
            pass
        return (text + self.log_tail()).strip() or "(no output)"

    def pids(self):
        return static_bench.proc_tree(self.proc.pid)

    def stop(self):
        """SIGTERM to the server's first process (then SIGQUIT for uWSGI's
        taste), then SIGKILL to whatever of its tree is left, by PID."""
        if self.proc is None:
            return
        pids = static_bench.proc_tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        if self.out is not None:
            self.out.close()
            self.out = None


class UnitLike(Server):
    """Wharf and Unit: the same `applications` config."""

    def config(self):
        return unit_config(self.case, self.paths, self.port)

    def describe(self):
        conf = unit_config(self.case, self.paths, "PORT")
        return (" ".join(self.command()).replace(self.workdir, "W")
                + "\n      config: " + json.dumps(conf))

    def log_tail(self):
        for name in ("wharf.log", "unit.log"):
            try:
                with open(os.path.join(self.workdir, name), "rb") as f:
                    return "\n" + f.read()[-1500:].decode("utf-8", "replace")
            except OSError:
                continue
        return ""


class Wharf(UnitLike):
    name = "wharf"

    def command(self):
        w = self.workdir
        path = os.path.join(w, "conf.json")
        if self.port is not None:
            with open(path, "w") as f:
                json.dump(self.config(), f)
        cmd = [self.args.wharf, "--no-daemon", "--threads", "1",
               "--config", path, "--statedir", w,
               "--control", f"unix:{w}/control.sock",
               "--log", os.path.join(w, "wharf.log"),
               "--pid", os.path.join(w, "wharf.pid")]
        modules = os.path.join(os.path.dirname(self.args.wharf), "modules")
        if os.path.isdir(modules):
            cmd += ["--modulesdir", modules]
        return cmd


class Unit(UnitLike):
    name = "unit"

    def command(self):
        w = self.workdir
        cmd = [self.args.unitd, "--no-daemon",
               "--control", f"unix:{w}/control.sock",
               "--statedir", os.path.join(w, "state"),
               "--pid", os.path.join(w, "unit.pid"),
               "--log", os.path.join(w, "unit.log"), "--tmpdir", w]
        modules = os.path.join(os.path.dirname(os.path.dirname(
            self.args.unitd)), "lib", "unit", "modules")
        if os.path.isdir(modules):
            cmd += ["--modulesdir", modules]
        return cmd

    def configure(self, deadline):
        os.makedirs(os.path.join(self.workdir, "state"), exist_ok=True)
        sock_path = os.path.join(self.workdir, "control.sock")
        body = json.dumps(self.config()).encode()
        request = (b"PUT /config HTTP/1.1\r\nHost: localhost\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                   % len(body)) + body
        last = None
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(max(1.0, deadline - time.monotonic()))
                    s.connect(sock_path)
                    s.sendall(request)
                    reply = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        reply += chunk
                if b" 200 " in reply.split(b"\r\n", 1)[0]:
                    return
                raise BenchError("unit refused the config: "
                                 + reply.decode("utf-8", "replace"))
            except OSError as e:
                last = e
                time.sleep(0.1)
        raise BenchError(f"unit's control socket: {last}")


class Uwsgi(Server):
    name = "uwsgi"

    def command(self):
        cmd = ["uwsgi", "--plugin", "python3",
               "--http11-socket", f"127.0.0.1:{self.port or 'PORT'}",
               "--processes", "1", "--disable-logging", "--need-app",
               "--die-on-term", "--listen", "1024"]
        if self.case == "django":
            env = django_env(self.paths)
            cmd += ["--chdir", self.paths["django"],
                    "--module", "site_project.wsgi:application"]
            for k in sorted(env):
                cmd += ["--env", f"{k}={env[k]}"]
        else:
            cmd += ["--wsgi-file", os.path.join(self.paths["hello"],
                                                "hello.py")]
        return cmd


class Gunicorn(Server):
    name = "gunicorn"

    def command(self):
        if self.case == "django":
            self.env = django_env(self.paths)
            chdir, app = self.paths["django"], "site_project.wsgi:application"
        else:
            chdir, app = self.paths["hello"], "hello:application"
        return [SYSTEM_PYTHON, "-m", "gunicorn", "--workers", "1",
                "--worker-class", "sync", "--backlog", "1024",
                "--bind", f"127.0.0.1:{self.port or 'PORT'}",
                "--chdir", chdir, app]

    def describe(self):
        text = super().describe()
        if self.case == "django":
            text += "  (env " + " ".join(
                f"{k}={v}" for k, v in sorted(django_env(self.paths).items())
            ) + ")"
        return text


class Uvicorn(Server):
    name = "uvicorn"

    def command(self):
        return [SYSTEM_PYTHON, "-m", "uvicorn", "--workers", "1",
                "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--backlog", "1024",
                "--host", "127.0.0.1", "--port", str(self.port or "PORT"),
                "--app-dir", self.paths["hello"],
                ("hello_asgi_uvloop" if self.case == "asgi-uvloop"
                 else "hello_asgi") + ":application"]


SERVERS = {"wharf": Wharf, "unit": Unit, "uwsgi": Uwsgi,
           "gunicorn": Gunicorn, "uvicorn": Uvicorn}


# ---------------------------------------------------------------- runs


def run_one(cls, case, paths, base, args):
    """One server, one case: start, warm up, measure, stop."""
    workdir = tempfile.mkdtemp(prefix=f"{cls.name}-{case}-", dir=base)
    os.chmod(workdir, 0o755)
    server = cls(case, paths, workdir, args)
    try:
        server.start()
        static_bench.run_wrk(server, "", 1, args.conns)  # warm-up
        pids = server.pids()
        before = cpu_snapshot(pids)
        res = static_bench.run_wrk(server, "", args.duration, args.conns)
        after_pids = server.pids()
        after = cpu_snapshot(sorted(set(pids) | set(after_pids)))
        res["split"] = cpu_split(before, after)
        res["cpu_s"] = sum(sec for _, sec in res["split"])
        if set(after_pids) != set(pids):
            res["errors"] = ((res["errors"] + ", ") if res["errors"] else "") \
                + (f"process set changed during the run ({len(pids)} -> "
                   f"{len(after_pids)}; counted from /proc/PID/stat)")
    finally:
        server.stop()
    res["per_cpu"] = res["requests"] / max(res["cpu_s"], 1e-9)
    return res


def process_role(pid):
    """A short name for a server process, from its title: "router",
    "app", "main", "controller", "prototype", "worker"..."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return "?"
    for word in ("router", "controller", "prototype", "application",
                 "main"):
        if word in title:
            return "app" if word == "application" else word
    return os.path.basename(title.split(" ", 1)[0]) or "?"


def cpu_snapshot(pids):
    """{pid: (role, {tid: run ns}, ticks, child ticks)} for the pids that
    exist: each live thread's run time (schedstat, nanoseconds), and the
    process's utime + stime (which keep the threads that exited) and
    cutime + cstime (its reaped children), in clock ticks."""
    snap = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        tids = {}
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    tids[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        snap[pid] = (process_role(pid), tids,
                     int(fields[11]) + int(fields[12]),
                     int(fields[13]) + int(fields[14]))
    return snap


def cpu_used(b, a):
    """CPU seconds of one process between snapshots b (None: it started
    during the run) and a.  The exact per-thread figure when no thread
    came or went (and the process's own counter agrees within 2 ticks);
    otherwise the process's counter, which also holds the threads that
    exited (10 ms steps).  Reaped children (their cutime/cstime) count
    too, so a process that exited during the run is counted by its
    parent."""
    tick = static_bench.CLK_TCK
    if b is None:
        return max(sum(a[1].values()) / 1e9, a[2] / tick) + a[3] / tick
    children = (a[3] - b[3]) / tick
    ticks = max(a[2] - b[2], 0) / tick
    if a[1] and set(a[1]) == set(b[1]):
        live = max(sum(a[1][t] - b[1][t] for t in a[1]) / 1e9, 0.0)
        if ticks <= live + 2 / tick:
            return live + children
    return ticks + children


def cpu_split(before, after):
    """CPU seconds per process role over the run, largest first: where the
    server spends its CPU (Wharf's and Unit's router against their app
    process, say).  A process gone by the end (not a zombie) is counted by
    its parent's cutime/cstime if the parent reaped it."""
    split = {}
    for pid, a in after.items():
        used = cpu_used(before.get(pid), a)
        split[a[0]] = split.get(a[0], 0.0) + used
    return sorted(split.items(), key=lambda kv: -kv[1])


def fmt_run(res):
    if isinstance(res, str):
        return "FAILED: " + res.replace("\n", "\n      ")[:1500]
    text = (f"{res['rps']:>9.0f} req/s {res['p99_ms']:>8.3f}ms p99 "
            f"{res['per_cpu']:>9.0f} req/CPU-s  cpu {res['cpu_s']:.2f}s "
            f"(wrk {res['client_s']:.2f}s)")
    split = [f"{role} {sec:.2f}s" for role, sec in res.get("split", ())
             if sec >= 0.01]
    if len(split) > 1:
        text += "  (" + ", ".join(split) + ")"
    if res["errors"]:
        text += f"  [{res['errors']}]"
    return text


def median_of(results, case, server, key):
    vals = [r[(case, server)][key] for r in results
            if isinstance(r.get((case, server)), dict)]
    return (statistics.median(vals), vals) if vals else (None, [])


def ratios(results, case, num, den, key):
    vals = []
    for r in results:
        a, b = r.get((case, num)), r.get((case, den))
        if isinstance(a, dict) and isinstance(b, dict) and b[key] > 0:
            vals.append(a[key] / b[key])
    return vals


def spread(vals):
    if not vals:
        return ""
    digits = 0 if max(vals) >= 100 else 2
    return f"[{min(vals):.{digits}f} .. {max(vals):.{digits}f}]"


def report(results, cases, servers_of):
    print()
    print("Medians over repetitions (min .. max):")
    for case in cases:
        print(f"  {case}:")
        for name in servers_of[case]:
            rps, rv = median_of(results, case, name, "rps")
            pc, pv = median_of(results, case, name, "per_cpu")
            if rps is None:
                print(f"    {name:<9} n/a (every run failed or was skipped)")
                continue
            print(f"    {name:<9} {rps:>9.0f} req/s {spread(rv):<22} "
                  f"{pc:>9.0f} req/CPU-s {spread(pv)}")
    print()
    print("Medians of per-repetition ratios (goals from issue 8):")
    for case in cases:
        names = servers_of[case]
        num = "wharf" if "wharf" in names else None
        have_wharf = num and any(isinstance(r.get((case, "wharf")), dict)
                                 for r in results)
        if not have_wharf:
            # No Wharf figures: the peers against the first that ran, for
            # reference (issue 8 quotes Unit against uWSGI and gunicorn).
            ran = [n for n in names if n != "wharf" and any(
                isinstance(r.get((case, n)), dict) for r in results)]
            print(f"  {case}: no Wharf figures; peers against {ran[0]}:"
                  if ran else f"  {case}: no figures")
            if not ran:
                continue
            num, peers = ran[0], ran[1:]
        else:
            peers = [n for n in names if n != "wharf"]
        for peer in peers:
            for key, label in (("per_cpu", "req/CPU-s"), ("rps", "req/s")):
                vals = ratios(results, case, num, peer, key)
                goal = GOALS.get((case, peer, key)) if num == "wharf" else None
                if not vals:
                    text = "n/a"
                else:
                    text = f"{statistics.median(vals):6.2f}x {spread(vals)}"
                if goal is not None:
                    met = vals and statistics.median(vals) >= goal
                    text += f"  goal >= {goal:.1f}x: " + (
                        "met" if met else "NOT met")
                print(f"    {case:<11} {num}/{peer:<9} {label:<10} {text}")
    missing = [k for k in GOALS if k[0] in cases and not ratios(
        results, k[0], "wharf", k[1], k[2])]
    if missing:
        print("  goals without figures: " + ", ".join(
            f"{c} vs {p} ({k})" for c, p, k in missing))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wharf", required=True, help="path to the wharf binary")
    ap.add_argument("--unitd", default=os.environ.get("UNITD", ""),
                    help="unitd of NGINX Unit 1.35 (default $UNITD, else "
                    + DEFAULT_UNITD + " if it exists)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk")
    ap.add_argument("--conns", type=int, default=32, help="wrk connections")
    ap.add_argument("--cases", default=",".join(CASES),
                    help="comma-separated subset of " + ",".join(CASES))
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help="comma-separated subset of " + ",".join(SERVERS))
    args = ap.parse_args()
    args.wharf = os.path.abspath(args.wharf)
    cases = [c for c in args.cases.split(",") if c]
    wanted = [s for s in args.servers.split(",") if s]
    for c in cases:
        if c not in CASES:
            sys.exit(f"bench: unknown case {c}")
    for s in wanted:
        if s not in SERVERS:
            sys.exit(f"bench: unknown server {s}")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found (make deps-bench)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs 2 CPUs (servers on 0, wrk on 1)")

    notes = []
    if not args.unitd and os.access(DEFAULT_UNITD, os.X_OK):
        args.unitd = DEFAULT_UNITD
    if not args.unitd or not os.access(args.unitd, os.X_OK):
        notes.append("unit: skipped (no unitd: give --unitd or UNITD=)")
        wanted = [s for s in wanted if s != "unit"]
    else:
        args.unitd = os.path.abspath(args.unitd)
    tools = {"uwsgi": ["uwsgi", "--version"],
             "gunicorn": [SYSTEM_PYTHON, "-m", "gunicorn", "--version"],
             "uvicorn": [SYSTEM_PYTHON, "-c",
                         "import uvicorn, uvloop, httptools"]}
    for name, cmd in tools.items():
        if name not in wanted:
            continue
        try:
            ok = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if not ok:
            notes.append(f"{name}: skipped (not installed: make deps-bench)")
            wanted.remove(name)
    if "django" in cases:
        rc = subprocess.run([SYSTEM_PYTHON, "-c", "import django"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=30).returncode
        if rc != 0:
            notes.append("django: skipped (python3-django not installed)")
            cases.remove("django")
    servers_of = {c: [s for s in CASES[c][0] if s in wanted] for c in cases}

    base = tempfile.mkdtemp(prefix="wharf-bench-apps-")
    os.chmod(base, 0o755)
    results = []
    try:
        paths = make_apps(base)
        print(f"bench apps: {args.reps} reps, wrk -t1 -c{args.conns} "
              f"-d{args.duration}s (keep-alive), servers on CPU 0, wrk on "
              f"CPU 1, 1 app process each")
        for note in notes:
            print("  note: " + note)
        print("Configurations (W: the server's work directory):")
        for case in cases:
            print(f"  {case}:")
            for name in servers_of[case]:
                srv = SERVERS[name](case, paths, "W", args)
                print(f"    {name}: {srv.describe()}")
        print("  the WSGI hello world (hello.py):")
        print("    " + HELLO_WSGI.rstrip().replace("\n", "\n    "))
        print("  the ASGI hello world (hello_asgi.py): HTTP part as above, "
              "plus lifespan startup/shutdown")
        print("  the Django page: GET / of tests/integration/apps/"
              "django_site (a template render, DEBUG off)")
        print()
        for rep in range(args.reps):
            runs = {}
            for case in cases:
                names = servers_of[case]
                k = rep % len(names) if names else 0
                for name in names[k:] + names[:k]:
                    try:
                        res = run_one(SERVERS[name], case, paths, base, args)
                    except (BenchError, static_bench.BenchError,
                            OSError) as e:
                        res = str(e)
                    runs[(case, name)] = res
                    print(f"  rep {rep} {case:<11} {name:<9} {fmt_run(res)}")
                    sys.stdout.flush()
            results.append(runs)
        report(results, cases, servers_of)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    # Figures, not a test: fail only when no peer ran at all.
    return 0 if any(isinstance(v, dict) for r in results
                    for (_, s), v in r.items() if s != "wharf") else 1


if __name__ == "__main__":
    sys.exit(main())
