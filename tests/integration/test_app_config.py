"""The controller's side of "applications" (issue 8): validation through the
control API with Unit 1.35's messages, configs with applications kept as
they were given, and GET /control/applications/NAME/restart.

Validation needs the language modules main found (WF_MSG_MODULES): tests
that need the python module skip when main logged none; a restart that
succeeds needs the router's application manager, and skips without it.
Every expectation was checked against Unit 1.35 with its python3.11
module."""

import json
import os
import time

import pytest
import requests

from lib.wharf import require_python_module, scaled

NOT_FOUND = ('The module to run "%s" is not found among the available '
             'application modules.')
DONE = {"success": "Reconfiguration done."}


def invalid(detail):
    return {"error": "Invalid configuration.", "detail": detail}


def write_app(tmp_path, name="app"):
    """A small WSGI app under tmp_path/name (world-readable, in case app
    processes run as nobody)."""
    d = tmp_path / name
    d.mkdir(mode=0o755)
    (d / "wsgi.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'hello from ' + environ['PATH_INFO'].encode()]\n")
    (d / "other.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [('other %s %s' % (environ['SCRIPT_NAME'],\n"
        "                              environ['PATH_INFO'])).encode()]\n")
    (d / "wsgi.py").chmod(0o644)
    (d / "other.py").chmod(0o644)
    tmp_path.chmod(0o755)
    return str(d)


def need_python(server):
    return require_python_module(server)


def app_config(path, extra=None, **kw):
    """A valid application (no process started before a request), with
    extra's and kw's members set over it."""
    app = {"type": "python", "path": path, "module": "wsgi",
           "processes": {"spare": 0}}
    app.update(extra or {})
    app.update(kw)
    return app


def drop_apps(api):
    """Stop the test's app processes: the post-test check wants the fds of
    the start back."""
    assert api.put("/config", {}).status == 200


# -- refused whatever modules exist ---------------------------------------------


@pytest.mark.parametrize("apps,detail", [
    ([], 'The "applications" value must be an object, but not an array.'),
    ({"a": 1}, 'The "a" value must be an object, but not an integer number.'),
    ({"a": {}}, 'Application must have the "type" property set.'),
    ({"a": {"module": "wsgi"}},
     'Application must have the "type" property set.'),
    ({"a": {"type": 1}},
     'The "type" value must be a string, but not an integer number.'),
    ({"a": {"type": "python 2.7", "module": "wsgi"}},
     NOT_FOUND % "python 2.7"),
    ({"a": {"type": "ruby", "script": "config.ru"}}, NOT_FOUND % "ruby"),
    ({"a": {"type": "Python", "module": "wsgi"}}, NOT_FOUND % "Python"),
])
def test_refused_before_the_module_check(wharf, apps, detail):
    server = wharf(None)
    api = server.api()
    before = api.config()
    r = api.put("/config/applications", apps)
    assert r.status == 400, r
    assert r.json == invalid(detail)
    assert api.config() == before


def test_pass_to_missing_application(wharf):
    server = wharf(None)
    api = server.api()
    conf = {"listeners": {"127.0.0.1:1": {"pass": "applications/nope"}},
            "applications": {}}
    r = api.put("/config", conf)
    assert r.status == 400, r
    assert r.json == invalid('Request "pass" points to invalid location '
                             '"applications/nope".')
    r = api.put("/config", {"listeners": {"127.0.0.1:1":
                                          {"application": "nope"}}})
    assert r.json == invalid('Listening socket is assigned for a non '
                             'existing application "nope".')
    r = api.put("/config", {"listeners": {"127.0.0.1:1":
                                          {"pass": "applications/"}}})
    assert r.json == invalid('Request "pass" value "applications/" is '
                             'invalid.')


# -- a config with applications, given at start -----------------------------------


def start_with_apps(wharf, tmp_path):
    path = write_app(tmp_path)
    conf = {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [{"match": {"uri": "/t/*"},
                    "action": {"pass": "applications/tg/two"}},
                   {"action": {"pass": "applications/app"}}],
        "applications": {
            # keys deliberately unsorted: GET /config keeps the order
            "app": app_config(path, threads=2, limits={"timeout": 30},
                              environment={"B": "2", "A": "1"},
                              queue={"length": 8, "timeout": 2.5}),
            "tg": {"type": "python 3", "path": path,
                   "processes": {"spare": 0, "max": 2},
                   "targets": {"one": {"module": "wsgi"},
                               "two": {"module": "other",
                                       "callable": "application",
                                       "prefix": "/t"}}},
        },
    }
    return wharf(conf)


def need_app_manager(server, name="app"):
    r = server.api().get("/status/applications/" + name)
    assert r.status == 200, r


def test_config_with_applications_is_returned_unchanged(wharf, tmp_path):
    server = start_with_apps(wharf, tmp_path)
    api = server.api()
    got = api.get("/config")
    assert got.status == 200
    assert got.json == server.config
    # same members in the same order, all the way down
    assert json.dumps(got.json) == json.dumps(server.config)
    app = api.config("/config/applications/app")
    assert list(app) == ["type", "path", "module", "processes", "threads",
                         "limits", "environment", "queue"]
    assert list(app["environment"]) == ["B", "A"]


def test_restart_of_an_unknown_application(wharf, tmp_path):
    server = start_with_apps(wharf, tmp_path)
    api = server.api()
    for path in ("/control/applications/nope/restart",
                 "/control/applications/app",
                 "/control/applications/app/restartx",
                 "/control/applications//restart",
                 "/control/applications/app/tg/restart",
                 "/control/applications/restart",
                 "/control/applications/",
                 "/control/"):
        r = api.get(path)
        assert r.status == 404, (path, r)
        assert r.json == {"error": "Value doesn't exist."}, path


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
def test_restart_other_methods(wharf, tmp_path, method):
    server = start_with_apps(wharf, tmp_path)
    r = server.api().request(method, "/control/applications/app/restart", b"")
    assert r.status == 405, r
    assert r.json == {"error": "Method isn't allowed."}


def test_stored_config_with_applications_survives_a_restart(wharf, tmp_path):
    """The stored conf.json is loaded before main sends its module list, so
    a config with applications comes back whatever was installed."""
    first = start_with_apps(wharf, tmp_path)
    api = first.api()
    conf = api.config()
    # --config seeds the state directory once the router applied it
    stored = os.path.join(first.statedir, "conf.json")
    deadline = time.monotonic() + scaled(10)
    while not os.path.exists(stored) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(stored) as f:
        assert json.load(f) == conf
    first.stopped_by_test = True
    first.stop()
    second = wharf(None, statedir=first.statedir)
    assert second.api().config() == conf


# -- with the python module --------------------------------------------------------


VALID_ROWS = [
    {"processes": 3},
    {"processes": {"max": 4, "spare": 1, "idle_timeout": 20}},
    {"limits": {"timeout": 10, "requests": 100, "shm": 1048576}},
    {"threads": 4, "protocol": "wsgi", "callable": "application",
     "factory": False, "prefix": "/app/"},
    {"queue": {"length": 1, "timeout": 0.5}},
    {"isolation": {}},
    {"user": "root", "group": "root", "working_directory": "/",
     "stdout": "/dev/null", "stderr": "/dev/null",
     "environment": {"A": "1", "EMPTY": ""}},
]


@pytest.mark.parametrize("extra", VALID_ROWS,
                         ids=[",".join(r) for r in VALID_ROWS])
def test_valid_application_accepted(wharf, tmp_path, extra):
    server = wharf(None)
    need_python(server)
    api = server.api()
    app = app_config(write_app(tmp_path), extra)
    r = api.put("/config/applications", {"a": app})
    assert r.status == 200, r
    assert r.json == DONE
    assert api.config("/config/applications/a") == app
    drop_apps(api)


def test_put_one_application_on_a_fresh_state(wharf, tmp_path):
    """A fresh state starts on Unit's default config, whose "applications"
    object exists: a PUT of one application into it works, as on Unit
    (it was a 404 when the start was {})."""
    server = wharf(None)
    need_python(server)
    api = server.api()
    app = app_config(write_app(tmp_path))
    r = api.put("/config/applications/a", app)
    assert (r.status, r.json) == (200, DONE), r
    assert api.config() == {"listeners": {}, "routes": [],
                            "applications": {"a": app}}
    drop_apps(api)


INVALID_ROWS = [
    ({"bogus": 1}, 'Unknown parameter "bogus".'),
    ({"processes": 0},
     'The "processes" number must be equal to or greater than 1.'),
    ({"processes": {"spare": 3, "max": 2}},
     'The "spare" number must be less than or equal to "max".'),
    ({"processes": {"idle_timeout": 2147484}},
     'The "idle_timeout" number must not exceed 2147483.'),
    ({"limits": {"timeout": "1"}},
     'The "timeout" value must be an integer number, but not a string.'),
    ({"environment": {"A=B": "x"}},
     "The environment name must not contain '=' character."),
    ({"environment": {"A": 1}}, 'The "A" environment value must be a string.'),
    ({"path": [1]}, 'The "path" array must contain only string values.'),
    ({"prefix": "app"}, 'The "prefix" must be a string beginning with "/".'),
    ({"protocol": "cgi"}, 'The "protocol" can either be "wsgi" or "asgi".'),
    ({"threads": 0}, 'The "threads" number must be equal to or greater '
                     'than 1.'),
    ({"thread_stack_size": 16385}, 'The "thread_stack_size" number must be a '
                                   'multiple of the system page size (4096).'),
    ({"targets": {"t": {"module": "wsgi"}}},
     'The "module" option is mutually exclusive with the "targets" object.'),
    # Wharf's own: isolation, the queue, negative limits
    ({"isolation": {"namespaces": {"credential": True}}},
     'The "isolation" option is not supported yet.'),
    ({"queue": {"length": 0}},
     'The "length" number must be equal to or greater than 1.'),
    ({"queue": {"timeout": 0}}, 'The "timeout" number must be greater than 0.'),
    ({"limits": {"requests": -1}}, 'The "requests" number must not be '
                                   'negative.'),
]


@pytest.mark.parametrize("extra,detail", INVALID_ROWS,
                         ids=[",".join(r[0]) for r in INVALID_ROWS])
def test_invalid_application_refused(wharf, tmp_path, extra, detail):
    server = wharf(None)
    need_python(server)
    api = server.api()
    before = api.config()
    r = api.put("/config/applications",
                {"a": app_config(write_app(tmp_path), extra)})
    assert r.status == 400, r
    assert r.json == invalid(detail)
    assert api.config() == before


def test_module_versions(wharf, tmp_path):
    """"python", "python 3", "python 3.11" and "python3.11" pick the
    module; a version it does not have is refused."""
    server = wharf(None)
    version = need_python(server)
    major, minor, _ = version.split(".")
    api = server.api()
    path = write_app(tmp_path)
    for t in ("python", "python " + major, "python %s." % major,
              "python %s.%s" % (major, minor), "python%s.%s" % (major, minor),
              "python " + version):
        r = api.put("/config/applications", {"a": app_config(path, type=t)})
        assert r.status == 200, (t, r)
    refused = ["python %s.%s" % (major, int(minor) + 1), "python 2",
               "python  3", "Python"]
    if len(minor) > 1:
        refused.append("python %s.%s" % (major, minor[:-1]))
    for t in refused:
        r = api.put("/config/applications", {"a": app_config(path, type=t)})
        assert r.status == 400, (t, r)
        assert r.json == invalid(NOT_FOUND % t)


def test_passes_to_targets(wharf, tmp_path):
    server = wharf(None)
    need_python(server)
    api = server.api()
    path = write_app(tmp_path)
    apps = {"tg": {"type": "python", "path": path,
                   "processes": {"spare": 0},
                   "targets": {"one": {"module": "wsgi"},
                               "two words": {"module": "wsgi"}}},
            "plain": app_config(path)}
    for p in ("applications/tg", "applications/tg/one",
              "applications/tg/two%20words", "applications/plain"):
        conf = {"routes": [{"action": {"pass": p}}], "applications": apps}
        r = api.put("/config", conf)
        assert r.status == 200, (p, r)
    for p in ("applications/tg/three", "applications/plain/one"):
        conf = {"routes": [{"action": {"pass": p}}], "applications": apps}
        r = api.put("/config", conf)
        assert r.status == 400, (p, r)
        assert r.json == invalid('Request "pass" points to invalid location '
                                 '"%s".' % p)


def test_restart_answers_ok(wharf, tmp_path):
    server = start_with_apps(wharf, tmp_path)
    need_python(server)
    need_app_manager(server)
    api = server.api()
    r = api.get("/control/applications/app/restart")
    assert r.status == 200, r
    assert r.json == {"success": "Ok"}
    r = api.get("/control/applications/tg/restart/?x=1")
    assert r.json == {"success": "Ok"}, r
    drop_apps(api)


def test_requests_reach_the_compiled_targets(wharf, tmp_path):
    """The router's action and the module agree on what a target index
    means: "applications/tg/two" runs other.py with its prefix, the
    listener's pass runs the plain application."""
    server = start_with_apps(wharf, tmp_path)
    need_python(server)
    need_app_manager(server)
    r = requests.get(server.url("/hello"), timeout=scaled(30))
    assert r.status_code == 200, r.text
    assert r.text == "hello from /hello"
    r = requests.get(server.url("/t/x"), timeout=scaled(30))
    assert r.status_code == 200, r.text
    assert r.text == "other /t /x"
    drop_apps(server.api())


def test_pass_with_variables_to_applications(wharf, tmp_path):
    """A "pass" with variables is resolved per request against the
    snapshot's applications; one that names none answers 404."""
    path = write_app(tmp_path)
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "applications/$arg_a"}},
        "applications": {
            "app": app_config(path),
            "tg": {"type": "python", "path": path,
                   "processes": {"spare": 0},
                   "targets": {"one": {"module": "wsgi"},
                               "two": {"module": "other"}}}}})
    need_python(server)
    need_app_manager(server)
    for query, status, text in (("a=app", 200, "hello from /p"),
                                ("a=tg%2Ftwo", 200, "other  /p"),
                                ("a=tg", 200, "hello from /p"),
                                ("a=tg%2Fthree", 404, None),
                                ("a=nope", 404, None),
                                ("a=", 404, None)):
        r = requests.get(server.url("/p?" + query), timeout=scaled(30))
        assert r.status_code == status, (query, r.status_code, r.text)
        if text is not None:
            assert r.text == text, query
    drop_apps(server.api())
