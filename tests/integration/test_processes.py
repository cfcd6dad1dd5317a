"""Wharf's processes: main, controller and router with their titles; a
killed router or controller is restarted with the config kept; QUIT, TERM
and USR1; a QUIT right after start leaves no orphan; the config stored in
STATEDIR is re-applied at start (and an invalid one is ignored); --version;
daemon mode; parent directories of --control and --pid."""

import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests

from lib.configs import return_config, share_config
from lib.control import Control
from lib.wharf import (WHARF_BIN, Wharf, children_of, free_port,
                       listener_address, scaled, try_connect)

SIGKILL_LINE = r"exited on signal 9"
DONE = {"success": "Reconfiguration done."}


def need_bin():
    if not WHARF_BIN or not os.access(WHARF_BIN, os.X_OK):
        pytest.skip("WHARF_BIN is not an executable")


def read(path, default=""):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return default


def cmdline(pid):
    return read("/proc/%d/cmdline" % pid).replace("\0", " ").strip()


def comm(pid):
    return read("/proc/%d/comm" % pid).strip()


def running(pid):
    """True while pid exists and is not a zombie."""
    stat = read("/proc/%d/stat" % pid)
    if not stat:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def wait_until(check, timeout=10.0, step=0.05):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def roles(server):
    """{"controller": pid, "router": pid} from main's children's titles."""
    out = {}
    for pid in children_of(server.pid):
        title = cmdline(pid)
        if title == "wharf: controller":
            out["controller"] = pid
        elif title == "wharf: router":
            out["router"] = pid
    return out


def status_of(port, path="/"):
    try:
        return requests.get("http://127.0.0.1:%d%s" % (port, path),
                            timeout=5).status_code
    except requests.RequestException:
        return None


# -- titles -----------------------------------------------------------------

def test_three_processes_with_titles(wharf):
    server = wharf(return_config())
    main_title = cmdline(server.pid)
    assert main_title.startswith("wharf: main v0.1.0 ["), main_title
    assert WHARF_BIN in main_title and "--no-daemon" in main_title, main_title
    assert comm(server.pid).startswith("wharf: main"), comm(server.pid)
    kids = children_of(server.pid)
    assert len(kids) == 2, kids
    r = wait_until(lambda: len(roles(server)) == 2 and roles(server))
    assert r, [cmdline(p) for p in kids]
    assert comm(r["controller"]) == "wharf: controll"   # 15 bytes of it
    assert comm(r["router"]) == "wharf: router"
    # nothing below the children
    for pid in kids:
        assert children_of(pid) == [], (pid, children_of(pid))
    log = server.log_text()
    for line in ("wharf 0.1.0 started", "controller started",
                 "router started"):
        assert line in log, log


def raw_cmdline(pid):
    """The title exactly: NUL padding after it dropped, nothing else."""
    return read("/proc/%d/cmdline" % pid).rstrip("\0")


def test_wharf_title_is_whole(wharf):
    """The main title holds the whole command line, however long (it takes
    the environment's room, as Unit's does), with the closing bracket."""
    server = wharf(return_config(),
                   extra_args=["--tmpdir", "/tmp/" + "x" * 60])
    cmd = " ".join(server.command())
    assert raw_cmdline(server.pid) == "wharf: main v0.1.0 [%s]" % cmd


class UnitdNamed(Wharf):
    """A Wharf started through a symlink named unitd."""

    def __init__(self, workdir, config, link):
        super().__init__(workdir, config)
        self.link = link

    def command(self):
        return [self.link] + super().command()[1:]


def test_invoked_as_unitd_titles_as_unit(tmp_path):
    """Under the name unitd, every process is titled exactly as Unit 1.35
    titles it, and comm stays "unitd" (Unit never sets it), so tools and
    probes written for Unit (ps, pgrep unitd, Unit's own test harness
    filtering on "unit: main") find them."""
    need_bin()
    link = str(tmp_path / "bin" / "unitd")
    os.makedirs(os.path.dirname(link))
    os.symlink(WHARF_BIN, link)
    server = UnitdNamed(tmp_path / "u", return_config(), link)
    server.start()
    try:
        cmd = " ".join(server.command())
        assert raw_cmdline(server.pid) == "unit: main v1.35.0 [%s]" % cmd
        assert comm(server.pid) == "unitd"
        kids = children_of(server.pid)
        assert len(kids) == 2, kids
        titles = wait_until(lambda: sorted(raw_cmdline(p) for p in kids)
                            == ["unit: controller", "unit: router"])
        assert titles, [raw_cmdline(p) for p in kids]
        for pid in kids:
            assert comm(pid) == "unitd", comm(pid)
        # It serves as Wharf does.
        assert status_of(server.port) == 200
        assert server.bad_log_lines() == []
    finally:
        server.stop()
    for pid in kids:
        assert wait_until(lambda: not running(pid)), cmdline(pid)


def test_install_puts_wharf_and_a_unitd_link(tmp_path):
    """meson install (what make install runs) with a DESTDIR: wharf, and
    unitd a link to it, in the build's PREFIX/sbin."""
    need_bin()
    builddir = os.path.dirname(WHARF_BIN)
    if not os.path.exists(os.path.join(builddir, "build.ninja")):
        pytest.skip("WHARF_BIN is not in a meson build directory")
    dest = str(tmp_path / "dest")
    r = subprocess.run(["meson", "install", "-C", builddir, "--no-rebuild",
                        "--destdir", dest], capture_output=True, text=True,
                       timeout=scaled(120))
    assert r.returncode == 0, r.stdout + r.stderr
    found = {}
    for root, dirs, files in os.walk(dest):
        for name in files:
            found[name] = os.path.join(root, name)
    assert os.path.basename(os.path.dirname(found["wharf"])) == "sbin", found
    link = os.path.join(os.path.dirname(found["wharf"]), "unitd")
    assert os.readlink(link) == "wharf"
    assert subprocess.run([link, "--version"], capture_output=True,
                          timeout=scaled(10)).returncode == 0


# -- restarts ---------------------------------------------------------------

def test_router_killed_is_restarted_with_the_config(wharf):
    server = wharf(return_config(200))
    server.log_ignore.append(SIGKILL_LINE)
    api = server.api()
    # a change made through the API must survive the router's death too
    r = api.put("/config/routes/0/action/return", 203)
    assert r.status == 200, r
    before = roles(server)
    os.kill(before["router"], signal.SIGKILL)
    assert server.wait_log(r"process %d exited on signal 9" % before["router"])
    assert server.wait_log(r"restarting the router")
    assert wait_until(lambda: status_of(server.port) == 203), \
        server.log_text()
    after = wait_until(lambda: len(roles(server)) == 2 and roles(server))
    assert after["controller"] == before["controller"]
    assert after["router"] != before["router"]
    assert server.alive()
    assert api.config("/config/routes/0/action/return") == 203
    # and the API still changes the new router
    r = api.put("/config/routes/0/action/return", 202)
    assert r.status == 200, r
    assert status_of(server.port) == 202


def test_controller_killed_resumes_from_statedir(wharf):
    server = wharf(return_config(200))
    server.log_ignore.append(SIGKILL_LINE)
    api = server.api()
    r = api.put("/config/routes/0/action/return", 205)
    assert (r.status, r.json) == (200, DONE), r
    before = roles(server)
    os.kill(before["controller"], signal.SIGKILL)
    assert server.wait_log(r"process %d exited on signal 9"
                           % before["controller"])
    assert server.wait_log(r"restarting the controller")
    after = wait_until(lambda: len(roles(server)) == 2 and roles(server))
    assert after and after["controller"] != before["controller"], after
    assert api.wait_ready(), server.log_text()
    # from conf.json, not from --config (which says 200)
    assert api.config("/config/routes/0/action/return") == 205
    assert status_of(server.port) == 205
    assert server.alive()
    assert after["router"] == before["router"]
    # the new controller talks to the running router
    r = api.put("/config/routes/0/action/return", 206)
    assert (r.status, r.json) == (200, DONE), r
    assert status_of(server.port) == 206


def test_both_children_killed(wharf):
    server = wharf(return_config(200))
    server.log_ignore.append(SIGKILL_LINE)
    api = server.api()
    assert api.put("/config/routes/0/action/return", 207).status == 200
    for pid in roles(server).values():
        os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: status_of(server.port) == 207, timeout=15), \
        server.log_text()
    assert api.wait_ready()
    assert api.config("/config/routes/0/action/return") == 207


# -- signals ----------------------------------------------------------------

def test_quit_finishes_an_inflight_response(wharf, tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    size = 16 * 1024 * 1024
    data = bytes(range(256)) * (size // 256)
    (root / "big.bin").write_bytes(data)
    server = wharf(share_config(root))
    kids = children_of(server.pid)
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got or len(got) < 100000:
        chunk = sock.recv(65536)
        assert chunk, got[:200]
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    server.stopped_by_test = True
    os.kill(server.pid, signal.SIGQUIT)
    time.sleep(0.3)
    assert server.alive(), "main exited with a response in flight"
    # a graceful stop finishes what started, and accepts nothing new
    assert not try_connect(*listener_address("127.0.0.1:%d" % server.port))
    # read the rest slowly: about 1.5 s in all
    sock.settimeout(scaled(15))
    while len(body) < size:
        chunk = sock.recv(256 * 1024)
        if not chunk:
            break
        body += chunk
        time.sleep(0.02)
    sock.close()
    assert len(body) == size, "got %d of %d bytes" % (len(body), size)
    assert body == data
    server.proc.wait(scaled(15))
    assert server.proc.returncode == 0, server.log_text()
    for pid in kids:
        assert wait_until(lambda: not running(pid)), cmdline(pid)
    assert "[alert]" not in server.log_text(), server.log_text()


def test_term_stops_everything_quickly(wharf):
    server = wharf(return_config())
    kids = children_of(server.pid)
    assert len(kids) == 2
    # an idle keep-alive client does not hold a fast stop
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    server.stopped_by_test = True
    t0 = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    server.proc.wait(scaled(10))
    elapsed = time.monotonic() - t0
    sock.close()
    assert server.proc.returncode == 0
    for pid in kids:
        assert wait_until(lambda: not running(pid), timeout=5), cmdline(pid)
    assert not try_connect(*listener_address("127.0.0.1:%d" % server.port))
    assert not os.path.exists(server.control_path)
    assert not os.path.exists(server.pid_path)
    # no speed assertion beyond "well before main's 15 s kill timer"
    assert elapsed < scaled(10), elapsed
    assert "did not stop in time" not in server.log_text()


def test_int_stops_everything(wharf):
    server = wharf(return_config())
    kids = children_of(server.pid)
    server.stopped_by_test = True
    os.kill(server.pid, signal.SIGINT)
    server.proc.wait(scaled(10))
    for pid in kids:
        assert wait_until(lambda: not running(pid), timeout=5), cmdline(pid)


def test_usr1_reopens_the_log(wharf):
    server = wharf(return_config())
    os.rename(server.log_path, server.log_path + ".old")
    os.kill(server.pid, signal.SIGUSR1)
    assert wait_until(lambda: os.path.exists(server.log_path)), \
        "log not reopened"
    # the processes still work and log into the new file
    assert server.api().put("/config/routes/0/action/return", 204).status \
        == 200
    assert status_of(server.port) == 204
    server.stopped_by_test = True
    assert server.stop() == 0
    assert "exited" in read(server.log_path), read(server.log_path)


def _tagged_pids(tag):
    """PIDs whose environment carries tag (our servers and their
    children, whoever their parent is now)."""
    out = []
    needle = ("WHARF_TEST_TAG=%s" % tag).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and running(int(name)):
            out.append(int(name))
    return out


@pytest.mark.parametrize("delay", [0, 0.001, 0.005, 0.02, 0.05, 0.1])
def test_quit_right_after_start_leaves_no_orphans(tmp_path, delay):
    need_bin()
    tag = uuid.uuid4().hex
    w = Wharf(tmp_path / "w", return_config())
    os.makedirs(w.statedir, exist_ok=True)
    w._write_config()
    env = dict(os.environ, WHARF_TEST_TAG=tag)
    with open(w.out_path, "wb") as out:
        proc = subprocess.Popen(w.command(), stdout=out,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env,
                                cwd=str(tmp_path))
    try:
        if delay:
            time.sleep(delay)
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(scaled(20))
        except subprocess.TimeoutExpired:
            pytest.fail("main did not exit after an early QUIT:\n"
                        + w.log_text())
        left = wait_until(lambda: not _tagged_pids(tag), timeout=5)
        leftovers = _tagged_pids(tag)
        assert left, "orphans: %s\n%s" % (
            [(p, cmdline(p)) for p in leftovers], w.log_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in _tagged_pids(tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# -- the state directory ----------------------------------------------------

def test_stored_config_reapplied_at_start(wharf):
    first = wharf(return_config(200))
    api = first.api()
    port2 = free_port()
    assert api.put("/config/routes/0/action/return", 208).status == 200
    assert api.put("/config/listeners/127.0.0.1%%3A%d" % port2,
                   {"pass": "routes"}).status == 200
    expected = api.config()
    first.stopped_by_test = True
    assert first.stop() == 0
    with open(os.path.join(first.statedir, "conf.json"), "rb") as f:
        assert json.loads(f.read()) == expected
    # again, without --config, on the same statedir
    second = wharf(None, statedir=first.statedir)
    assert "--config" not in second.command()
    assert second.api().config() == expected
    assert wait_until(lambda: status_of(first.port) == 208), \
        second.log_text()
    assert status_of(port2) == 208


def test_config_option_overrides_the_stored_config(wharf):
    first = wharf(return_config(200))
    assert first.api().put("/config/routes/0/action/return", 208).status \
        == 200
    first.stopped_by_test = True
    first.stop()
    second = wharf(return_config(209), statedir=first.statedir)
    assert status_of(second.port) == 209
    assert second.api().config() == second.config


@pytest.mark.parametrize("content", [
    b"{not json",
    b'{"listeners": {}, "bogus": 1}',
    b"",
])
def test_invalid_stored_config_logged_and_started_empty(wharf, tmp_path,
                                                        content):
    statedir = tmp_path / "state"
    statedir.mkdir()
    (statedir / "conf.json").write_bytes(content)
    server = wharf(None, statedir=str(statedir))
    server.log_ignore.append(r"stored configuration is invalid|conf\.json")
    assert server.api().wait_ready(), server.log_text()
    # Unit's default then, as on a fresh state (nxt_controller_conf_default)
    assert server.api().config() == \
        {"listeners": {}, "routes": [], "applications": {}}
    assert server.wait_log(r"stored configuration is invalid"), \
        server.log_text()
    # and it works from there
    port = free_port()
    r = server.api().put("/config", {
        "listeners": {"127.0.0.1:%d" % port: {"pass": "routes"}},
        "routes": [{"action": {"return": 204}}]})
    assert r.status == 200, r
    assert status_of(port) == 204
    assert server.api().delete("/config").status == 200   # fds back


def test_version_file_in_statedir(wharf):
    server = wharf(return_config())
    path = os.path.join(server.statedir, "version")
    assert wait_until(lambda: os.path.exists(path))
    text = read(path).strip()
    assert text.isdigit(), text
    assert not os.path.exists(path + ".tmp")


def test_version_option():
    need_bin()
    p = subprocess.run([WHARF_BIN, "--version"], capture_output=True,
                       timeout=scaled(10))
    assert p.returncode == 0
    text = (p.stdout + p.stderr).decode()
    lines = text.splitlines()
    assert any(line.startswith("wharf version: 0.1.0") for line in lines), text
    assert any("configured as" in line for line in lines), text


# -- daemon mode and paths --------------------------------------------------

def _start_daemon(w, stderr_path):
    """Run wharf without --no-daemon; returns (CompletedProcess, main pid).
    The caller's stdout/stderr are a file: a daemon that kept them open
    must not hang the test."""
    os.makedirs(w.statedir, exist_ok=True)
    w._write_config()
    cmd = [c for c in w.command() if c != "--no-daemon"]
    with open(stderr_path, "wb") as err:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=err,
                           stderr=err, timeout=scaled(20))
    pid = None
    text = read(w.pid_path).strip()
    if text.isdigit():
        pid = int(text)
    return p, pid


def _kill_leftovers(pids):
    for victim in pids:
        if victim and running(victim):
            os.kill(victim, signal.SIGKILL)


def test_daemon_mode(tmp_path):
    need_bin()
    w = Wharf(tmp_path / "d", return_config(206))
    pid = None
    kids = []
    try:
        p, pid = _start_daemon(w, str(tmp_path / "caller.out"))
        assert p.returncode == 0, (p, read(w.log_path))
        assert pid and running(pid), read(w.log_path)
        assert cmdline(pid).startswith("wharf: main v0.1.0"), cmdline(pid)
        assert wait_until(lambda: status_of(w.port) == 206), read(w.log_path)
        assert Control(w.control).config() == w.config
        kids = children_of(pid)
        assert len(kids) == 2, kids
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: not running(pid)), cmdline(pid)
        for kid in kids:
            assert wait_until(lambda: not running(kid)), cmdline(kid)
        assert not os.path.exists(w.pid_path)
        assert not try_connect(*listener_address("127.0.0.1:%d" % w.port))
        bad = [line for line in read(w.log_path).splitlines()
               if "[alert]" in line or "[crit]" in line]
        assert not bad, read(w.log_path)
    finally:
        _kill_leftovers([pid] + kids)


def test_daemon_releases_the_callers_output(tmp_path):
    """Like unitd, a daemon with --log keeps none of the caller's stdout and
    stderr open (else `out=$(unitd ...)` or a pipe reader never ends)."""
    need_bin()
    w = Wharf(tmp_path / "d", return_config())
    caller = str(tmp_path / "caller.out")
    pid = None
    kids = []
    try:
        p, pid = _start_daemon(w, caller)
        assert p.returncode == 0 and pid, read(w.log_path)
        assert wait_until(lambda: status_of(w.port) == 200), \
            read(w.log_path)
        kids = children_of(pid)

        def held():
            out = []
            for proc in [pid] + kids:
                for fd in (0, 1, 2):
                    try:
                        target = os.readlink("/proc/%d/fd/%d" % (proc, fd))
                    except OSError:
                        continue
                    if target == caller:
                        out.append((proc, cmdline(proc)[:20], fd))
            return out

        wait_until(lambda: not held(), timeout=3)
        held = held()
        assert not held, "the caller's output is held open by %s" % held
    finally:
        if pid and running(pid):
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not running(pid))
        _kill_leftovers([pid] + kids)


def test_missing_parent_directories_created(wharf, tmp_path):
    need_bin()
    base = tmp_path / "deep"
    control = "unix:%s/run/a/b/control.sock" % base
    server = Wharf(tmp_path / "w", return_config(), control=control)
    server.pid_path = str(base / "pid" / "x" / "wharf.pid")
    wharf.servers.append(server)
    server.start()
    assert server.api().wait_ready(), server.log_text()
    assert os.path.exists(control[len("unix:"):])
    assert int(read(server.pid_path).strip()) == server.pid
    assert status_of(server.port) == 200
