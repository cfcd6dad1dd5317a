"""main's side of applications: module discovery, app processes (user,
group, environment, working directory, stdout/stderr, title), their exit,
and that nothing outlives main or its router.

The module is tests/integration/apps/spawn/spawn_module.c, built here with
gcc: a real module (it sees only apps/app_api.h) that declares itself
"python VERSION", reports what its process looks like to the file named by
$SPAWN_REPORT and answers every request with its pid.
"""

import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from lib.wharf import (MODULESDIR, children_of, cmdline, is_app_process,
                       scaled)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
MODULE_C = os.path.join(HERE, "apps", "spawn", "spawn_module.c")


def build_module(path, version="9.9.1"):
    """gcc the spawn module into path, declaring "python VERSION"."""
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-I" + os.path.join(SRC, "src"),
                    '-DSPAWN_VERSION="%s"' % version, "-o", path, MODULE_C,
                    "-lpthread"], check=True)
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def public_dir():
    """A directory under /tmp that every user can reach (pytest's own tmp
    dirs are private to root, and apps may run as nobody)."""
    d = tempfile.mkdtemp(prefix="wf-spawn-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def modules(public_dir):
    """A world-readable modules dir with one spawn module (python 9.9.1)."""
    d = public_dir / "modules"
    d.mkdir()
    os.chmod(str(d), 0o755)
    build_module(str(d / "spawn9.9.wharf.so"))
    return d


def control(server):
    return server.api()


def listen_conf():
    return {"listeners": {"127.0.0.1:{port}": {"pass": "routes/main"}},
            "routes": {"main": [{"action": {"return": 204}}]}}


def app_conf(report, extra=None, env=None):
    """An app on the spawn module that reports to `report`."""
    environment = {"SPAWN_REPORT": str(report),
                   "SPAWN_REPORT_ENV": "FOO,HOME,SPAWN_REPORT"}
    environment.update(env or {})
    app = {"type": "python 9.9", "module": "unused", "processes": 1,
           "environment": environment}
    app.update(extra or {})
    return app


def put_app(server, name, app):
    conf = listen_conf()
    conf["listeners"] = {"127.0.0.1:%d" % server.port:
                         {"pass": "applications/%s" % name}}
    conf["applications"] = {name: app}
    return control(server).put("/config", conf)


def rebaseline(server):
    """The router holds a port to each app process: once the apps a test
    added run, their sockets are part of the baseline."""
    wait_for(lambda: server.app_pids())
    server.fd_baseline = server.settled_fd_count()


def read_report(path, timeout=10.0):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        try:
            with open(str(path)) as f:
                return dict(line.split("=", 1) for line in f.read().splitlines()
                            if "=" in line)
        except OSError:
            time.sleep(0.05)
    return None


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


# -- discovery --------------------------------------------------------------

def test_discovery_logs_each_module(wharf, tmp_path, modules):
    build_module(str(modules / "spawn9.10.wharf.so"), "9.10.0")
    # Same type and version as spawn9.9: Unit ignores the second one.
    build_module(str(modules / "spawn9.9b.wharf.so"), "9.9.1")
    (modules / "broken.wharf.so").write_bytes(b"not an ELF file")
    build_module(str(modules / "other.so"), "8.0.0")  # not *.wharf.so
    server = wharf(listen_conf(), modulesdir=str(modules))
    server.log_ignore.append(r'dlopen\(".*broken\.wharf\.so"\), failed')
    log = server.log_text()
    d = str(modules)
    assert re.search(r'\[notice\] \d+#\d+ module: python 9\.9\.1 "%s/spawn9\.9\.wharf\.so"'
                     % re.escape(d), log), log
    assert re.search(r'\[notice\] \d+#\d+ module: python 9\.10\.0 "%s/spawn9\.10\.wharf\.so"'
                     % re.escape(d), log), log
    assert "ignoring %s/spawn9.9b.wharf.so module with the same application " \
           "language version python 9.9.1 as in %s/spawn9.9.wharf.so" % (d, d) in log
    assert re.search(r'\[alert\] .*dlopen\("%s/broken\.wharf\.so"\), failed'
                     % re.escape(d), log), log
    assert "8.0.0" not in log
    assert "discovery started" in log


def test_discovery_list_reaches_the_controller(wharf, modules):
    """The controller validates "type" against the list main sent."""
    server = wharf(listen_conf(), modulesdir=str(modules))
    api = control(server)
    app = {"type": "python 9.8", "module": "m"}
    r = api.put("/config/applications", {"a": app})
    assert r.status == 400, r
    assert r.json["detail"] == ('The module to run "python 9.8" is not found '
                                'among the available application modules.'), r
    app["type"] = "python 9.9"
    r = api.put("/config/applications", {"a": app})
    assert r.status == 200, r
    rebaseline(server)


def test_discovery_list_reaches_the_router_sorted(wharf, modules):
    """The router shows main's list in /status/modules, highest version
    first (numerically: 9.10 above 9.9), as Unit sorts it."""
    for v in ("9.10.0", "9.2.0"):
        build_module(str(modules / ("spawn%s.wharf.so" % v)), v)
    server = wharf(listen_conf(), modulesdir=str(modules))
    r = control(server).get("/status/modules")
    assert r.status == 200, r
    got = [(m["version"], os.path.basename(m["lib"])) for m in r.json["python"]]
    assert got == [("9.10.0", "spawn9.10.0.wharf.so"),
                   ("9.9.1", "spawn9.9.wharf.so"),
                   ("9.2.0", "spawn9.2.0.wharf.so")], r.json


def test_discovery_without_modules(wharf, tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    server = wharf(listen_conf(), modulesdir=str(empty))
    assert 'no modules matching: "%s/*.wharf.so" found' % empty \
        in server.log_text()


def test_python_module_found_and_never_loaded_in_main(wharf):
    """build/modules has the Python module; libpython stays out of main,
    the controller and the router."""
    if not os.path.exists(os.path.join(MODULESDIR, "python3.11.wharf.so")):
        pytest.skip("no python module in %s" % MODULESDIR)
    server = wharf(listen_conf())
    assert re.search(r'module: python 3\.11\.\d+ "%s/python3\.11\.wharf\.so"'
                     % re.escape(os.path.realpath(MODULESDIR)),
                     server.log_text()), server.log_text()
    for pid in [server.pid] + server.children():
        with open("/proc/%d/maps" % pid) as f:
            maps = f.read()
        assert "libpython" not in maps and "wharf.so" not in maps, pid


# -- app processes -------------------------------------------------------------

@pytest.fixture
def shared(public_dir):
    """A directory any user can write (app processes may run as nobody)."""
    d = public_dir / "shared"
    d.mkdir()
    os.chmod(str(d), 0o1777)
    return d


def start_app(wharf, modules, shared, extra=None, env=None, name="a",
              **kwargs):
    """A server with one app on the spawn module; returns (server, report,
    the app's pid)."""
    report = shared / ("report-%s" % name)
    server = wharf(listen_conf(), modulesdir=str(modules), **kwargs)
    if env and "SPAWN_SETUP_SLEEP_MS" in env:
        # The router confirms a config once its new app is ready (as
        # Unit): this one is not for a minute, so do not wait for it.
        import threading
        threading.Thread(target=put_app, daemon=True,
                         args=(server, name, app_conf(report, extra, env))
                         ).start()
    else:
        r = put_app(server, name, app_conf(report, extra, env))
        assert r.status == 200, r
    rep = read_report(report)
    assert rep is not None, server.log_text()
    pids = wait_for(lambda: server.app_pids(name))
    assert pids, server.log_text()
    rebaseline(server)
    return server, rep, pids[0]


def get_pid(server):
    import urllib.request
    with urllib.request.urlopen(server.url("/"), timeout=scaled(10)) as r:
        return int(r.read())


def test_app_process_is_set_up_as_configured(wharf, modules, shared):
    """environment (added to the inherited one), working_directory,
    stdout/stderr appended to files with --no-daemon, title, parent, and
    the request reaches the module in that process."""
    out = shared / "out.log"
    err = shared / "err.log"
    out.write_text("before\n")
    os.chmod(str(out), 0o666)
    server, rep, pid = start_app(
        wharf, modules, shared,
        extra={"working_directory": str(shared), "stdout": str(out),
               "stderr": str(err)},
        env={"FOO": "bar"})
    assert rep["env:FOO"] == "bar"
    assert rep["env:HOME"] == os.environ.get("HOME", "(unset)")
    assert rep["cwd"] == str(shared)
    assert int(rep["ppid"]) == server.pid   # a child of main
    assert cmdline(pid).strip() == 'wharf: "a" application'
    assert rep["uid"] == "0" and rep["gid"] == "0"   # the harness's --user root
    assert wait_for(lambda: "spawn-stdout" in out.read_text())
    assert out.read_text().startswith("before\n")    # appended
    assert wait_for(lambda: "spawn-stderr" in err.read_text())
    assert get_pid(server) == pid
    with open("/proc/%d/status" % pid) as f:
        status = f.read()
    assert re.search(r"^Uid:\s+0\s+0\s+0\s+0$", status, re.M), status
    # No fd of main's (its ports, listening sockets, signalfd) in the app.
    main_socks = {t for t in (os.readlink("/proc/%d/fd/%s" % (server.pid, fd))
                              for fd in os.listdir("/proc/%d/fd" % server.pid))
                  if t.startswith("socket:") or t.startswith("anon_inode")}
    app_fds = {os.readlink("/proc/%d/fd/%s" % (pid, fd))
               for fd in os.listdir("/proc/%d/fd" % pid)}
    assert not (main_socks & app_fds), main_socks & app_fds


def test_app_runs_as_nobody_by_default(wharf, modules, shared):
    """Started as root without --user: nobody and its primary group, as
    Unit; "user"/"group" in the app override it."""
    server, rep, pid = start_app(wharf, modules, shared, user=None, group=None)
    assert (rep["uid"], rep["gid"], rep["groups"]) == ("65534", "65534", "65534")
    with open("/proc/%d/status" % pid) as f:
        assert re.search(r"^Uid:\s+65534\s+65534\s+65534\s+65534$", f.read(),
                         re.M)
    r = put_app(server, "b", app_conf(shared / "report-b",
                                      {"user": "nobody", "group": "root"}))
    assert r.status == 200, r
    rep = read_report(shared / "report-b")
    assert rep is not None, server.log_text()
    assert (rep["uid"], rep["gid"], rep["groups"]) == ("65534", "0", "0")
    rebaseline(server)


def test_unknown_user_fails_the_start(wharf, modules, shared):
    server = wharf(listen_conf(), modulesdir=str(modules))
    server.log_ignore.append(r'getpwnam\("wf-no-such-user"\) failed')
    put_app(server, "a", app_conf(shared / "r", {"user": "wf-no-such-user"}))
    assert server.wait_log(r'\[alert\] .*getpwnam\("wf-no-such-user"\) failed, '
                           r'user "wf-no-such-user" not found')
    assert server.app_pids() == []


def test_app_exit_is_logged_and_reported(wharf, modules, shared):
    """A crash is logged as Unit logs it, and the router hears of it (it
    starts a replacement)."""
    server, rep, pid = start_app(wharf, modules, shared)
    server.log_ignore.append(r"app process %d exited on signal 9" % pid)
    os.kill(pid, signal.SIGKILL)
    assert server.wait_log(r"\[alert\] .*app process %d exited on signal 9"
                           % pid)
    assert wait_for(lambda: [p for p in server.app_pids("a") if p != pid]), \
        server.log_text()


def test_router_death_kills_its_apps(wharf, modules, shared):
    server, rep, pid = start_app(wharf, modules, shared)
    router = [p for p in server.children() if "router" in cmdline(p)][0]
    server.log_ignore.append(r"process %d exited on signal 9" % router)
    server.log_ignore.append(r"app process \d+ exited on signal 9")
    os.kill(router, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(pid)), "app outlived its router"
    assert server.wait_log(r"restarting the router")
    server.child_pids = None  # the router was replaced on purpose


def _put_quietly(server, app):
    try:
        put_app(server, "a", app)
    except OSError:
        pass  # the server stopped before it answered


def test_quit_during_app_start_stops_everything(wharf, modules, shared):
    """An app still loading (its setup() sleeps a minute) when main gets
    QUIT: main, its children and the app are all gone soon after."""
    import threading
    report = shared / "report-a"
    server = wharf(listen_conf(), modulesdir=str(modules))
    # The router may answer the PUT only once the app is ready: in the
    # background, while the app still loads.
    put = threading.Thread(target=lambda: _put_quietly(
        server, app_conf(report, env={"SPAWN_SETUP_SLEEP_MS": "60000"})),
        daemon=True)
    put.start()
    assert read_report(report) is not None, server.log_text()
    pid = wait_for(lambda: server.app_pids("a"))[0]
    tree = [server.pid] + children_of(server.pid)
    server.stopped_by_test = True
    os.kill(server.pid, signal.SIGQUIT)
    server.proc.wait(scaled(40))
    assert wait_for(lambda: not any(pid_alive(p) for p in tree)), \
        [cmdline(p) for p in tree if pid_alive(p)]
    assert not pid_alive(pid)
    # Stopped, not killed after main's 15 s stop deadline (an [alert] and
    # "exited on signal 9"): a QUIT while loading is a clean exit.  Under
    # SAN=1 this also shows that the router frees the configuration it
    # was applying when it stops.
    assert not server.bad_log_lines(), server.log_text()
    assert re.search(r"app process %d exited with code 0" % pid,
                     server.log_text()), server.log_text()
    put.join(scaled(30))


def test_term_stops_apps(wharf, modules, shared):
    server, rep, pid = start_app(wharf, modules, shared)
    server.stopped_by_test = True
    os.kill(server.pid, signal.SIGTERM)
    server.proc.wait(scaled(20))
    assert wait_for(lambda: not pid_alive(pid))
    assert re.search(r"app process %d exited" % pid, server.log_text())


def test_app_title_under_unitd(wharf, modules, shared, tmp_path):
    link = tmp_path / "bin" / "unitd"
    link.parent.mkdir()
    os.symlink(os.environ["WHARF_BIN"], str(link))
    from lib.wharf import Wharf
    server = Wharf(tmp_path / "u", listen_conf(), modulesdir=str(modules))
    server.command = (lambda base=server.command: [str(link)] + base()[1:])
    wharf.servers.append(server)
    server.start()
    put_app(server, "a", app_conf(shared / "r"))
    rep = read_report(shared / "r")
    assert rep is not None, server.log_text()
    assert rep["cmdline"].strip() == 'unit: "a" application'
    assert rep["comm"].strip() == "unitd"
    rebaseline(server)


def test_quit_stops_apps_gracefully(wharf, modules, shared):
    """QUIT reaches a running app as QUIT: it stops on its own (code 0),
    and main waits for it before exiting."""
    server, rep, pid = start_app(wharf, modules, shared)
    assert get_pid(server) == pid
    server.stopped_by_test = True
    os.kill(server.pid, signal.SIGQUIT)
    server.proc.wait(scaled(30))
    assert re.search(r"\[notice\] .*app process %d exited with code 0" % pid,
                     server.log_text()), server.log_text()
    assert not pid_alive(pid)
    lines = server.log_text().splitlines()
    app_exit = [i for i, l in enumerate(lines) if "app process %d exited" % pid in l]
    main_exit = [i for i, l in enumerate(lines) if "wharf 0.1.0 exited" in l]
    assert app_exit and main_exit and app_exit[0] < main_exit[0]


BAD_MODULE_C = r"""
#include <signal.h>
#include <unistd.h>
__attribute__((constructor)) static void bad_init(void) { %s; }
"""


def build_bad_module(path, body):
    src = path + ".c"
    with open(src, "w") as f:
        f.write(BAD_MODULE_C % body)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", path, src], check=True)


def test_discovery_survives_crashing_and_hanging_modules(wharf, modules,
                                                        monkeypatch):
    """A module that crashes while loading, or never finishes loading, is
    skipped (its probe is killed after 10 s); the others are found and
    Wharf starts."""
    import lib.wharf
    build_bad_module(str(modules / "crash.wharf.so"), "raise(SIGSEGV)")
    build_bad_module(str(modules / "hang.wharf.so"), "for (;;) pause()")
    monkeypatch.setattr(lib.wharf, "START_TIMEOUT", 60.0)
    server = wharf(listen_conf(), modulesdir=str(modules))
    server.log_ignore += [r'module ".*crash\.wharf\.so" crashed its probe',
                          r'module ".*hang\.wharf\.so" did not load within']
    log = server.log_text()
    assert re.search(r'\[alert\] .*module ".*/crash\.wharf\.so" crashed its '
                     r'probe \(signal 11\)', log), log
    assert re.search(r'\[alert\] .*module ".*/hang\.wharf\.so" did not load '
                     r'within 10 s, skipped', log), log
    assert re.search(r'module: python 9\.9\.1 ".*/spawn9\.9\.wharf\.so"', log)
    r = control(server).get("/status/modules")
    assert r.json["python"]["version"] == "9.9.1", r.json  # one: an object


def test_unknown_user_option_refuses_to_start(tmp_path, modules):
    """Started as root, --user and --group must name a real user and
    group, as in Unit: main logs why and exits non-zero."""
    from lib.wharf import Wharf
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for args, why in (
            ({"user": "wf-no-such-user"},
             'getpwnam("wf-no-such-user") failed, user "wf-no-such-user" '
             'not found'),
            ({"user": "nobody", "group": "wf-no-such-group"},
             'getgrnam("wf-no-such-group") failed, group "wf-no-such-group" '
             'not found')):
        w = Wharf(tmp_path / args.get("group", args["user"]), listen_conf(),
                  modulesdir=str(modules), **args)
        w._write_config()
        os.makedirs(w.statedir, exist_ok=True)
        proc = subprocess.run(w.command(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=scaled(30))
        assert proc.returncode != 0
        assert why in w.log_text(), w.log_text()
