"""The real-world Unit configurations of /work/shared/unit-configs, run as
their .md files say, with what Wharf cannot run yet replaced:

- absolute paths in "share"/"chroot" move under a temp dir $T;
- listener ports become free ports (hosts are kept, so "0.0.0.0"/"[::]"
  pairs on one port stay pairs);
- every pass to an application becomes a "return" whose Location names the
  application and shows $remote_addr ("/app/NAME/$remote_addr"), and every
  proxy a "return" to "/proxy" (applications and proxies are not
  implemented yet), so only the route, share, variable, forwarded, settings
  and access-log parts of each config are checked;
- the "applications" object is dropped.
"""

import copy
import json
import os
import re
import socket

import pytest

from lib.configs import UNIT_CONFIGS_DIR
from lib.rawhttp import Reader, exchange, request

CONF_DIR = UNIT_CONFIGS_DIR

COMBINED = re.compile(
    r'^(\S+) - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
    r'"([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$', re.M)

ERROR_404 = b"<!DOCTYPE html><title>Error 404</title><p>Error 404.\r\n"


def load(name):
    path = os.path.join(CONF_DIR, name + ".json")
    if not os.path.exists(path):
        pytest.skip("no %s" % path)
    with open(path) as f:
        return json.load(f)


def app_action(pass_value):
    name = pass_value[len("applications/"):]
    return {"return": 302, "location": "/app/%s/$remote_addr" % name}


def _adapt_action(action, root):
    action = dict(action)
    p = action.get("pass", "")
    if p.startswith("applications/"):
        return app_action(p)
    if "proxy" in action:
        return {"return": 302, "location": "/proxy"}
    for key in ("share", "chroot"):
        if key in action:
            v = action[key]
            action[key] = ([root + s for s in v] if isinstance(v, list)
                           else root + v)
    if "fallback" in action:
        action["fallback"] = _adapt_action(action["fallback"], root)
    return action


def adapt(conf, root):
    """The config with paths under root, free ports and no applications."""
    conf = copy.deepcopy(conf)
    conf.pop("applications", None)
    ports = {}
    listeners = {}
    for addr, lconf in conf["listeners"].items():
        host, port = addr.rsplit(":", 1)
        slot = ports.setdefault(port, "{port%d}" % len(ports))
        lconf = dict(lconf)
        if lconf.get("pass", "").startswith("applications/"):
            name = lconf["pass"][len("applications/"):]
            routes = conf.setdefault("routes", {})
            assert isinstance(routes, dict)
            routes["app-" + name] = [{"action": app_action(lconf["pass"])}]
            lconf["pass"] = "routes/app-" + name
        listeners["%s:%s" % (host, slot)] = lconf
    conf["listeners"] = listeners
    routes = conf.get("routes")
    if isinstance(routes, list):
        conf["routes"] = [dict(s, action=_adapt_action(s["action"], root))
                          for s in routes]
    elif isinstance(routes, dict):
        conf["routes"] = {n: [dict(s, action=_adapt_action(s["action"], root))
                              for s in steps] for n, steps in routes.items()}
    return conf, list(ports)


def ask(server, path="/", method="GET", headers=(), port_index=0, body=b"",
        family=socket.AF_INET, host="localhost"):
    hdrs = list(headers) + [("Connection", "close")]
    if body or method == "POST":
        hdrs.append(("Content-Length", str(len(body))))
    addr = ("127.0.0.1" if family == socket.AF_INET else "::1",
            server.ports[port_index])
    with socket.create_connection(addr, timeout=10) as s:
        return exchange(s, request(method=method, path=path, host=host,
                                   headers=hdrs, body=body),
                        head_request=(method == "HEAD"))


def app_of(resp):
    """(app name, client address) if the response came from an app stub."""
    if resp.status not in (301, 302):
        return None
    m = re.match(r"^/app/([^/]+(?:/[^/]+)?)/(.*)$",
                 resp.header("Location") or "")
    if not m:
        return None
    return m.group(1), m.group(2)


def write(root, rel, data):
    path = os.path.join(root, rel.lstrip("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def combined_lines(server):
    return COMBINED.findall(server.log_text())


def wait_combined(server, request_line, timeout=10):
    return server.wait_log(r'(?m)^\S+ - - \[[^\]]+\] "%s" \d{3} \d+ "[^"]*" '
                           r'"[^"]*"$' % re.escape(request_line),
                           timeout=timeout)


# -- django-asgi-docs -------------------------------------------------------------

def test_django_asgi_docs(wharf, tmp_path):
    root = str(tmp_path / "T")
    conf, _ = adapt(load("django-asgi-docs"), root)
    write(root, "/path/to/app/static/x.css", b"a { }\n")
    server = wharf(conf)
    r = ask(server, "/static/x.css")
    assert (r.status, r.body) == (200, b"a { }\n")
    assert r.header("Content-Type", "").startswith("text/css")
    assert ask(server, "/static/missing.css").status == 404
    assert app_of(ask(server, "/admin/")) == ("django", "127.0.0.1")


# -- django-forwarded-kantine ---------------------------------------------------

def kantine(tmp_path, source=None):
    root = str(tmp_path / "T")
    raw = load("django-forwarded-kantine")
    if source is not None:
        raw["listeners"]["0.0.0.0:8000"]["forwarded"]["source"] = source
    conf, _ = adapt(raw, root)
    # the app stub tells https from http by scheme matching
    main = conf["routes"]["main"]
    main.insert(len(main) - 1, {"match": {"scheme": "https"}, "action": {
        "return": 301, "location": "/app/app/$remote_addr"}})
    write(root, "/opt/static/static/k.css", b"k\n")
    write(root, "/opt/static/favicon.ico", b"ico")
    return conf


def test_kantine_untrusted_local_client_not_rewritten(wharf, tmp_path):
    server = wharf(kantine(tmp_path))
    r = ask(server, "/page", headers=[("X-Forwarded-For", "1.2.3.4"),
                                      ("X-Forwarded-Proto", "https")])
    assert r.status == 302          # http: X-Forwarded-Proto ignored
    assert app_of(r) == ("app", "127.0.0.1")
    assert r.header("Server") == "Wharf"        # server_version: false
    assert ask(server, "/static/k.css").body == b"k\n"
    assert ask(server, "/favicon.ico").body == b"ico"
    assert app_of(ask(server, "/favicon.ico.bak")) is not None
    assert wait_combined(server, "GET /page HTTP/1.1"), server.log_text()
    assert "127.0.0.1 - - [" in server.log_text()


def test_kantine_trusted_proxy_variant(wharf, tmp_path):
    """Variant: the test client (127.0.0.1) added to "source", since the
    test cannot connect from 172.16.0.0/12 without changing the host's
    network; the 172.16/12 entry stays."""
    server = wharf(kantine(tmp_path, source=["172.16.0.0/12", "127.0.0.1"]))
    r = ask(server, "/page", headers=[("X-Forwarded-For", "1.2.3.4"),
                                      ("X-Forwarded-Proto", "https")])
    assert r.status == 301          # scheme https
    assert app_of(r) == ("app", "1.2.3.4")
    # rightmost address of the last X-Forwarded-For wins (recursive false)
    r = ask(server, "/page", headers=[("X-Forwarded-For", "9.9.9.9"),
                                      ("X-Forwarded-For", "5.5.5.5, 1.2.3.4")])
    assert app_of(r) == ("app", "1.2.3.4")
    assert wait_combined(server, "GET /page HTTP/1.1")
    assert re.search(r'(?m)^1\.2\.3\.4 - - \[', server.log_text())


def test_kantine_lenient_trailing_commas(wharf, tmp_path):
    """The original heredoc has trailing commas after "share" and "pass"."""
    conf = kantine(tmp_path)
    text = json.dumps(conf, indent=1)
    text = re.sub(r'("share": "[^"]*")', r"\1,", text)
    text = re.sub(r'("pass": "[^"]*")(\s*})', r"\1,\2", text)
    assert '$uri",' in text
    server = wharf(text)
    assert ask(server, "/static/k.css").body == b"k\n"


# -- laravel-fly --------------------------------------------------------------------

@pytest.fixture
def laravel(wharf, tmp_path):
    root = str(tmp_path / "T")
    conf, _ = adapt(load("laravel-fly"), root)
    write(root, "/var/www/html/public/index.php", b"<?php echo 1;\n")
    write(root, "/var/www/html/public/css/app.css", b"body{}\n")
    return wharf(conf)


def test_laravel_static_and_front_controller(laravel):
    r = ask(laravel, "/css/app.css")
    assert (r.status, r.body) == (200, b"body{}\n")
    assert app_of(ask(laravel, "/any/route?x=1")) == ("laravel", "127.0.0.1")
    assert app_of(ask(laravel, "/css/")) is not None     # dir without index


def test_laravel_index_php_matches_no_step(laravel):
    r = ask(laravel, "/index.php")
    assert r.status == 404
    assert r.body == ERROR_404


def test_laravel_post_to_static_path_goes_to_app(laravel):
    """Share answers only GET/HEAD; other methods take the fallback."""
    r = ask(laravel, "/css/app.css", method="POST")
    assert app_of(r) == ("laravel", "127.0.0.1"), r


# -- netbox-docker ----------------------------------------------------------------

@pytest.fixture
def netbox(wharf, tmp_path):
    if not ipv6_available():
        pytest.skip("no IPv6 loopback: the config has [::] listeners")
    root = str(tmp_path / "T")
    conf, ports = adapt(load("netbox-docker"), root)
    assert ports == ["8080", "8081"]
    write(root, "/opt/netbox/netbox/static/x.css", b"x{}\n")
    return wharf(conf)


def test_netbox_static_share(netbox):
    r = ask(netbox, "/static/x.css")
    assert (r.status, r.body) == (200, b"x{}\n")
    assert r.header("Content-Type", "").startswith("text/css")
    assert r.header("ETag") and r.header("Last-Modified")
    assert ask(netbox, "/static/missing").status == 404
    assert app_of(ask(netbox, "/login/")) == ("netbox", "127.0.0.1")


def test_netbox_ipv4_and_ipv6_on_same_port(netbox):
    r = ask(netbox, "/static/x.css", family=socket.AF_INET6)
    assert (r.status, r.body) == (200, b"x{}\n")
    assert app_of(ask(netbox, "/login/", family=socket.AF_INET6)) == (
        "netbox", "::1")


def test_netbox_status_listener_routes(netbox):
    r = ask(netbox, "/status/connections", port_index=1)
    assert (r.status, r.header("Location")) == (302, "/proxy")
    assert ask(netbox, "/other", port_index=1).status == 404
    assert ask(netbox, "/status", port_index=1).status == 404


def test_netbox_access_log_combined_on_stdout(netbox):
    ask(netbox, "/static/x.css?v=1", headers=[("User-Agent", "probe/1")])
    assert wait_combined(netbox, "GET /static/x.css?v=1 HTTP/1.1"), \
        netbox.log_text()[-2000:]
    lines = [l for l in combined_lines(netbox) if l[1].startswith(
        "GET /static/x.css?v=1 ")]
    assert lines[0][0] == "127.0.0.1"
    assert lines[0][2] == "200" and lines[0][3] == "4"
    assert lines[0][5] == "probe/1"


# -- peering-manager-legacy-share ---------------------------------------------------

def test_peering_manager_legacy_share_stays_broken(wharf, tmp_path):
    """share "/opt/peering-manager/" has no $uri: every /static/* request
    is the directory's index.html (404 without one), never the file the URI
    names."""
    root = str(tmp_path / "T")
    conf, _ = adapt(load("peering-manager-legacy-share"), root)
    write(root, "/opt/peering-manager/static/x.css", b"real css\n")
    server = wharf(conf)
    r = ask(server, "/static/x.css")
    assert r.status == 404
    assert b"real css" not in r.body
    write(root, "/opt/peering-manager/index.html", b"<p>index</p>\n")
    for path in ("/static/x.css", "/static/other/deep.js"):
        r = ask(server, path)
        assert (r.status, r.body) == (200, b"<p>index</p>\n"), path
    assert app_of(ask(server, "/login/")) == ("peeringmanager", "127.0.0.1")
    assert wait_combined(server, "GET /static/x.css HTTP/1.1")


# -- posthog (WSGI and ASGI variants) ---------------------------------------------

@pytest.mark.parametrize("name", ["posthog", "posthog-asgi"])
def test_posthog(wharf, tmp_path, name):
    conf, ports = adapt(load(name), str(tmp_path / "T"))
    assert conf["settings"]["http"]["max_body_size"] == 22020096
    assert ports == ["8000", "8001", "8181"]
    server = wharf(conf)
    assert app_of(ask(server, "/")) == ("posthog", "127.0.0.1")
    r = ask(server, "/e/", method="POST", body=b"x" * 1000)
    assert app_of(r) == ("posthog", "127.0.0.1")
    # over 21 MiB: 413 (the server may answer before the body is sent)
    with server.connect() as s:
        s.sendall(request(method="POST", path="/e/", headers=[
            ("Content-Length", "22020097"), ("Connection", "close")]))
        resp = Reader(s, timeout=30).read_response()
    assert resp.status == 413
    assert app_of(ask(server, "/metrics", port_index=1)) == (
        "metrics", "127.0.0.1")
    assert ask(server, "/metrics/x", port_index=1).status == 404
    r = ask(server, "/status", port_index=2)
    assert r.header("Location") == "/proxy"
    assert ask(server, "/status/x", port_index=2).status == 404


def test_posthog_body_at_limit_accepted(wharf, tmp_path):
    conf, _ = adapt(load("posthog"), str(tmp_path / "T"))
    server = wharf(conf)
    r = ask(server, "/e/", method="POST", body=b"y" * 22020096)
    assert app_of(r) == ("posthog", "127.0.0.1")


# -- satisfy-php-targets ----------------------------------------------------------

def test_satisfy_php_targets(wharf, tmp_path):
    root = str(tmp_path / "T")
    conf, _ = adapt(load("satisfy-php-targets"), root)
    write(root, "/var/www/html/info.php", b"<?php phpinfo();\n")
    write(root, "/var/www/html/public/index.php", b"<?php\n")
    write(root, "/var/www/html/public/app.js", b"js();\n")
    server = wharf(conf)
    assert app_of(ask(server, "/info.php"))[0] == "satisfy/direct"
    assert app_of(ask(server, "/info.php/extra"))[0] == "satisfy/direct"
    assert app_of(ask(server, "/index.php"))[0] == "satisfy/direct"
    r = ask(server, "/app.js")
    assert (r.status, r.body) == (200, b"js();\n")
    assert app_of(ask(server, "/packages.json"))[0] == "satisfy/index"


def test_satisfy_post_to_static_file_goes_to_index_target(wharf, tmp_path):
    root = str(tmp_path / "T")
    conf, _ = adapt(load("satisfy-php-targets"), root)
    write(root, "/var/www/html/public/app.js", b"js();\n")
    server = wharf(conf)
    r = ask(server, "/app.js", method="POST")
    assert app_of(r) == ("satisfy/index", "127.0.0.1"), r


# -- techempower-litestar -----------------------------------------------------------

def test_techempower_litestar(wharf, tmp_path):
    conf, _ = adapt(load("techempower-litestar"), str(tmp_path / "T"))
    assert conf["access_log"] == "/dev/null"
    server = wharf(conf)
    with server.connect() as s:         # keep-alive + pipelining
        s.sendall(request(path="/plaintext") + request(path="/json"))
        reader = Reader(s)
        for _ in range(2):
            assert app_of(reader.read_response()) == ("litestar", "127.0.0.1")
    assert "GET /plaintext" not in server.log_text()


def test_techempower_lenient_payload(wharf, tmp_path):
    """The benchmark's payload is not strict JSON (trailing commas); the same
    text with the application replaced as everywhere here."""
    text = ('{"listeners":{"127.0.0.1:{port}":{"pass":"routes/app-litestar"}},'
            '"routes":{"app-litestar":[{"action":{"return":302,"location":'
            '"/app/litestar/$remote_addr",}}],},"access_log":"/dev/null",}')
    server = wharf(text)
    assert app_of(ask(server, "/")) == ("litestar", "127.0.0.1")


# -- unit-docker-welcome ------------------------------------------------------------

def test_unit_docker_welcome(wharf, tmp_path):
    root = str(tmp_path / "T")
    conf, _ = adapt(load("unit-docker-welcome"), root)
    assert "applications" not in load("unit-docker-welcome")
    write(root, "/usr/share/unit/welcome/welcome.html", b"<h1>hi</h1>\n")
    write(root, "/usr/share/unit/welcome/welcome.md", b"# hi\n")
    server = wharf(conf)
    r = ask(server, "/anything", headers=[("Accept", "text/html,*/*")])
    assert (r.status, r.body) == (200, b"<h1>hi</h1>\n")
    assert r.header("Content-Type", "").startswith("text/html")
    r = ask(server, "/", headers=[("ACCEPT", "TEXT/HTML")])
    assert r.body == b"<h1>hi</h1>\n"
    r = ask(server, "/")
    assert (r.status, r.body) == (200, b"# hi\n")
    assert r.header("Content-Type", "").startswith("text/markdown")
    r = ask(server, "/x", headers=[("Accept", "application/json")])
    assert r.body == b"# hi\n"


# -- wordpress-docs ----------------------------------------------------------------

def test_wordpress_docs(wharf, tmp_path):
    root = str(tmp_path / "T")
    conf, _ = adapt(load("wordpress-docs"), root)
    for rel in ("/path/to/app/index.php", "/path/to/app/wp-admin/index.php",
                "/path/to/app/wp-login.php"):
        write(root, rel, b"<?php\n")
    write(root, "/path/to/app/wp-content/a.png", b"\x89PNG\r\n\x1a\n")
    server = wharf(conf)
    r = ask(server, "/wp-admin")
    assert r.status == 301
    assert r.header("Location") == "/wp-admin/"
    assert app_of(ask(server, "/wp-admin/"))[0] == "wordpress/direct"
    assert app_of(ask(server, "/wp-login.php"))[0] == "wordpress/direct"
    assert app_of(ask(server, "/wp-admin/x.php/p"))[0] == "wordpress/direct"
    assert app_of(ask(server, "/2024/01/post/"))[0] == "wordpress/index"
    r = ask(server, "/wp-content/a.png")
    assert r.status == 200
    assert r.header("Content-Type") == "image/png"


# -- every config starts -------------------------------------------------------------

ALL = sorted(n[:-5] for n in os.listdir(CONF_DIR) if n.endswith(".json")) \
    if os.path.isdir(CONF_DIR) else []


@pytest.mark.parametrize("name", ALL)
def test_adapted_config_starts(wharf, tmp_path, name):
    conf, _ = adapt(load(name), str(tmp_path / "T"))
    if any(l.startswith("[") for l in conf["listeners"]) and \
            not ipv6_available():
        pytest.skip("no IPv6")
    server = wharf(conf)
    assert server.alive()
