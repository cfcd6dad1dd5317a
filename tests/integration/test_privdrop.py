"""Privileges: started as root with --user nobody --group nogroup, main
stays root while the controller and the router run as nobody, as Unit's
do.  What needs root is main's job: listening sockets (ports below 1024),
the control socket, access log files (and their reopening on USR1), the
error log's reopening, and STATEDIR/conf.json.  The router opens static
files as nobody, so a file only root may read gets 403, as in Unit.

Every server's files live in the test's temporary directory, which only
root may enter: whatever a child wrote there itself would fail."""

import grp
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest
import requests

from lib.configs import return_config
from lib.wharf import Wharf, WHARF_BIN, children_of, cmdline, scaled

USER = "nobody"
GROUP = "nogroup"
SIGKILL_LINE = r"exited on signal 9"


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        pwd.getpwnam(USER)
        grp.getgrnam(GROUP)
    except KeyError:
        pytest.skip("no user %s or group %s" % (USER, GROUP))


def nobody_ids():
    return pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid


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
        title = cmdline(pid).strip()
        if title == "wharf: controller":
            out["controller"] = pid
        elif title == "wharf: router":
            out["router"] = pid
    return out


def both_roles(server):
    return wait_until(lambda: len(roles(server)) == 2 and roles(server))


def creds(pid):
    """(uids, gids, groups) of pid from /proc/PID/status: real, effective,
    saved and file-system ids, and the supplementary groups."""
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return ([int(v) for v in fields["Uid"]], [int(v) for v in fields["Gid"]],
            sorted(int(v) for v in fields.get("Groups", [])))


def low_port():
    """A free TCP port below 1024 on 127.0.0.1 (80 or 81 first)."""
    for port in [80, 81] + list(range(900, 1024)):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


def get(port, path="/"):
    return requests.get("http://127.0.0.1:%d%s" % (port, path),
                        timeout=scaled(10))


def start(wharf, config, **kw):
    need_root()
    return wharf(config, user=USER, group=GROUP, **kw)


def read(path):
    with open(path, "rb") as f:
        return f.read().decode()


def wait_lines(path, n, timeout=10.0):
    def lines():
        try:
            got = read(path).splitlines()
        except OSError:
            return None
        return got if len(got) >= n else None
    return wait_until(lines, timeout) or []


def low_config(port, routes=None, **top):
    conf = {"listeners": {"127.0.0.1:%d" % port: {"pass": "routes"}},
            "routes": routes or [{"action": {"return": 200}}]}
    conf.update(top)
    return conf


@pytest.fixture
def public_dir():
    """A directory nobody may enter (the test's tmp_path is root's only),
    removed afterwards."""
    path = tempfile.mkdtemp(prefix="wharf-privdrop-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- who runs as whom ----------------------------------------------------------

def test_controller_and_router_run_as_nobody_main_as_root(wharf):
    server = start(wharf, return_config())
    uid, gid = nobody_ids()
    r = both_roles(server)
    assert r, [cmdline(p) for p in children_of(server.pid)]
    main_uids, main_gids, _ = creds(server.pid)
    assert main_uids == [0, 0, 0, 0] and main_gids == [0, 0, 0, 0]
    for role in ("controller", "router"):
        uids, gids, groups = creds(r[role])
        assert uids == [uid] * 4, (role, uids)
        assert gids == [gid] * 4, (role, gids)
        # setgroups(): root's supplementary groups are gone
        assert groups == sorted(os.getgrouplist(USER, gid)), (role, groups)
        assert 0 not in groups, (role, groups)
    # and they still serve: the listener and the control API
    assert get(server.port).status_code == 200
    assert server.api().wait_ready()


def test_default_user_is_nobody(wharf):
    need_root()
    server = wharf(return_config(), user=None, group=None)
    uid, _ = nobody_ids()
    r = both_roles(server)
    assert r
    for role in ("controller", "router"):
        assert creds(r[role])[0] == [uid] * 4, role
    # nobody's primary group, as Unit picks it without --group
    gid = pwd.getpwnam(USER).pw_gid
    assert creds(r["router"])[1] == [gid] * 4
    assert get(server.port).status_code == 200


def test_unknown_user_refused_at_start(tmp_path):
    need_root()
    w = Wharf(tmp_path / "w", return_config(), user="wf-no-such-user-x",
              group=None)
    os.makedirs(w.statedir, exist_ok=True)
    w._write_config()
    with open(w.out_path, "wb") as out:
        proc = subprocess.Popen(w.command(), stdout=out,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        rc = proc.wait(scaled(10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert rc != 0
    assert not os.path.exists(w.control_path)   # main removed its socket
    assert ('getpwnam("wf-no-such-user-x") failed, user "wf-no-such-user-x"'
            ' not found') in w.log_text(), w.log_text()


# -- what main does for them ---------------------------------------------------

def test_listener_below_1024(wharf):
    port = low_port()
    server = start(wharf, low_config(port))
    assert get(port).status_code == 200
    # a second one added at run time, after the router dropped: main
    # opens it on the router's request
    port2 = low_port()
    api = server.api()
    r = api.put("/config/listeners/127.0.0.1:%d" % port2, {"pass": "routes"})
    assert r.status == 200, r
    assert get(port2).status_code == 200
    assert get(port).status_code == 200
    # gone again: main closes its copy (the fd baseline holds)
    r = api.delete("/config/listeners/127.0.0.1:%d" % port2)
    assert r.status == 200, r


def test_router_restart_drops_again_and_gets_its_sockets(wharf):
    port = low_port()
    server = start(wharf, low_config(port))
    server.log_ignore.append(SIGKILL_LINE)
    before = both_roles(server)
    os.kill(before["router"], signal.SIGKILL)
    assert server.wait_log(r"restarting the router")
    after = wait_until(lambda: (roles(server).get("router")
                                not in (None, before["router"]))
                       and roles(server))
    assert after, server.log_text()
    assert creds(after["router"])[0] == [nobody_ids()[0]] * 4

    def served():
        try:
            return get(port).status_code == 200
        except requests.RequestException:
            return False
    assert wait_until(served), server.log_text()


def test_controller_restart_keeps_the_control_socket(wharf):
    server = start(wharf, return_config(200))
    server.log_ignore.append(SIGKILL_LINE)
    api = server.api()
    assert api.put("/config/routes/0/action/return", 201).status == 200
    before = both_roles(server)
    sock = server.control_path
    ino = os.stat(sock).st_ino
    os.kill(before["controller"], signal.SIGKILL)
    assert server.wait_log(r"restarting the controller")
    after = wait_until(lambda: (roles(server).get("controller")
                                not in (None, before["controller"]))
                       and roles(server))
    assert after, server.log_text()
    assert creds(after["controller"])[0] == [nobody_ids()[0]] * 4
    # nobody could not have made a socket in root's directory: it is
    # main's, the same file as before
    assert api.wait_ready(), server.log_text()
    assert os.stat(sock).st_ino == ino
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == 0
    # the new controller read conf.json (root's, 0600) before it dropped
    assert api.config("/config/routes/0/action/return") == 201
    assert api.put("/config/routes/0/action/return", 202).status == 200
    assert get(server.port).status_code == 202


def test_control_socket_on_a_port_below_1024(wharf):
    port = low_port()
    server = start(wharf, return_config(200),
                   control="127.0.0.1:%d" % port)
    server.log_ignore.append(SIGKILL_LINE)
    api = server.api()
    assert api.wait_ready(), server.log_text()
    assert api.put("/config/routes/0/action/return", 203).status == 200
    before = both_roles(server)
    os.kill(before["controller"], signal.SIGKILL)
    assert server.wait_log(r"restarting the controller")
    # nobody could not bind it again: the new controller gets main's
    assert wait_until(lambda: (roles(server).get("controller")
                               not in (None, before["controller"]))), \
        server.log_text()
    assert api.wait_ready(), server.log_text()
    assert api.config("/config/routes/0/action/return") == 203
    assert get(server.port).status_code == 203


def test_config_changes_persist_across_a_restart(wharf, tmp_path):
    server = start(wharf, return_config(200))
    api = server.api()
    r = api.put("/config/routes/0/action/return", 207)
    assert r.status == 200, r
    conf = api.config()
    stored = os.path.join(server.statedir, "conf.json")
    st = os.stat(stored)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert json.loads(read(stored)) == conf
    server.stopped_by_test = True
    assert server.stop() == 0
    again = start(wharf, None, statedir=server.statedir)
    assert again.api().wait_ready()
    assert again.api().config() == conf
    port = int(list(conf["listeners"])[0].rsplit(":", 1)[1])
    assert get(port).status_code == 207


def test_access_log_written_and_reopened_on_usr1(wharf, tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir(mode=0o700)
    log = str(logdir / "access.log")
    conf = return_config()
    conf["access_log"] = {"path": log, "format": "$uri"}
    server = start(wharf, conf)
    get(server.port, "/before")
    assert wait_lines(log, 1) == ["/before"]
    assert os.stat(log).st_uid == 0      # main created it
    os.rename(log, log + ".1")
    get(server.port, "/renamed")
    assert wait_lines(log + ".1", 2) == ["/before", "/renamed"]
    os.kill(server.pid, signal.SIGUSR1)
    assert wait_until(lambda: os.path.exists(log)), server.log_text()
    get(server.port, "/after")
    assert wait_lines(log, 1) == ["/after"]
    assert read(log + ".1").splitlines() == ["/before", "/renamed"]
    # a new path at run time: main opens it too
    log2 = str(logdir / "second.log")
    r = server.api().put("/config/access_log", {"path": log2,
                                                "format": "2 $uri"})
    assert r.status == 200, r
    get(server.port, "/two")
    assert wait_lines(log2, 1) == ["2 /two"]


def test_access_log_main_cannot_open_refuses_the_config(wharf, tmp_path):
    server = start(wharf, return_config())
    api = server.api()
    before = api.config()
    r = api.put("/config/access_log", str(tmp_path / "no" / "such" / "a.log"))
    assert r.status == 500, r
    assert r.json["error"] == "Failed to apply new configuration.", r.json
    assert api.config() == before
    assert get(server.port).status_code == 200


def test_error_log_reopened_for_the_children(wharf, tmp_path):
    server = start(wharf, return_config())
    r = both_roles(server)
    os.rename(server.log_path, server.log_path + ".1")
    os.kill(server.pid, signal.SIGUSR1)
    assert wait_until(lambda: os.path.exists(server.log_path))
    # a change the router refuses: both children log about it
    api = server.api()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        name = "127.0.0.1:%d" % busy.getsockname()[1]
        resp = api.put("/config/listeners/" + name, {"pass": "routes"})
        assert resp.status == 500, resp
    finally:
        busy.close()
    def both_logged():
        text = read(server.log_path)
        return all("%d#" % r[k] in text for k in r) and text
    text = wait_until(both_logged, timeout=5)
    assert text, read(server.log_path)
    assert "reconfiguration failed" in text, text
    assert "configuration not applied" in text, text
    # nothing of it went to the renamed file
    old = read(server.log_path + ".1")
    assert "reconfiguration failed" not in old, old


# -- what the router opens as nobody ---------------------------------------------

def test_static_file_only_root_may_read_is_403(wharf, public_dir):
    with open(os.path.join(public_dir, "public.txt"), "wb") as f:
        f.write(b"for everyone\n")
    secret = os.path.join(public_dir, "secret.txt")
    with open(secret, "wb") as f:
        f.write(b"root only\n")
    os.chmod(os.path.join(public_dir, "public.txt"), 0o644)
    os.chmod(secret, 0o600)
    conf = {"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
            "routes": [{"action": {"share": public_dir + "$uri"}}]}
    server = start(wharf, conf)
    r = get(server.port, "/public.txt")
    assert (r.status_code, r.content) == (200, b"for everyone\n")
    assert get(server.port, "/secret.txt").status_code == 403


def test_share_in_a_root_only_directory_is_403(wharf, tmp_path):
    www = tmp_path / "private"
    www.mkdir(mode=0o700)
    (www / "a.txt").write_bytes(b"a\n")
    os.chmod(www / "a.txt", 0o644)
    conf = {"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
            "routes": [{"action": {"share": str(www) + "$uri"}}]}
    server = start(wharf, conf)
    assert get(server.port, "/a.txt").status_code == 403


# -- unprivileged: nothing changes -------------------------------------------------

class UnprivilegedWharf(Wharf):
    """A server started as nobody (setpriv), without --user/--group."""

    def command(self):
        return ["setpriv", "--reuid", USER, "--regid", GROUP,
                "--clear-groups"] + super().command()


def test_started_unprivileged_everyone_stays_as_is(public_dir):
    need_root()
    if not WHARF_BIN or not shutil.which("setpriv"):
        pytest.skip("needs the binary and setpriv")
    os.chmod(public_dir, 0o777)
    server = UnprivilegedWharf(os.path.join(public_dir, "w"),
                               return_config(200), user=None, group=None)
    uid, gid = nobody_ids()
    for path in (server.workdir, server.statedir):
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
    try:
        server.start()
        r = both_roles(server)
        assert r
        for pid in (server.pid, r["controller"], r["router"]):
            assert creds(pid)[0] == [uid] * 4, pid
        api = server.api()
        assert api.put("/config/routes/0/action/return", 204).status == 200
        assert get(server.port).status_code == 204
        stored = os.path.join(server.statedir, "conf.json")
        assert os.stat(stored).st_uid == uid
        assert json.loads(read(stored))["routes"][0]["action"] == {
            "return": 204}
        assert server.bad_log_lines() == [], server.log_text()
        assert ("[warn]" in server.log_text() and "Wharf is running "
                "unprivileged, then it cannot use arbitrary user and group."
                in server.log_text()), server.log_text()
    finally:
        server.stop()
