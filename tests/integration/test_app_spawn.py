"""main's side of applications: module discovery, app processes (user,
group, environment, working directory, stdout/stderr, title), their exit,
and that nothing outlives main or its router.

The module is tests/integration/apps/spawn/spawn_module.c, built here with
gcc: a real module (it sees only apps/app_api.h) that declares itself
"python VERSION", reports what its process looks like to the file named by
$SPAWN_REPORT and answers every request with its pid.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
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
def modules(tmp_path):
    """A world-readable modules dir with one spawn module (python 9.9.1)."""
    d = tmp_path / "modules"
    d.mkdir()
    os.chmod(str(tmp_path), 0o755)
    os.chmod(str(d), 0o755)
    build_module(str(d / "spawn9.9.wharf.so"))
    return d


def control(server):
    return server.api()


def listen_conf():
    return {"listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
            "routes": [{"action": {"return": 204}}]}


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
