"""Real PHP deployments through the PHP module: the Laravel and Satis
configs of /work/shared/unit-configs with small stand-in apps laid out as
their .md files say, and WordPress from Debian's package with a real
MariaDB (wordpress-docs.json, adjusted only in paths).  The configs are
used as they are but for their paths and listener addresses."""

import http.client
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from lib.configs import UNIT_CONFIGS_DIR
from lib.wharf import SAN, WHARF_BIN, children_of, scaled

MODULES = os.path.join(os.path.dirname(WHARF_BIN), "modules") if WHARF_BIN \
    else ""
MODULE = os.path.join(MODULES, "php8.2.wharf.so")


def load(name, replace):
    """The config name with every path prefix of replace moved, and each
    listener on 127.0.0.1 and a free port."""
    path = os.path.join(UNIT_CONFIGS_DIR, name + ".json")
    if not os.path.exists(path):
        pytest.skip("no %s" % path)
    with open(path) as f:
        text = f.read()
    for old, new in replace.items():
        text = text.replace(old, new)
    conf = json.loads(text)
    if SAN:
        # PHP's extensions do not load under ASan (RTLD_DEEPBIND).
        for app in conf.get("applications", {}).values():
            app.setdefault("environment", {})["PHP_INI_SCAN_DIR"] = ""
    conf["listeners"] = {"127.0.0.1:{port}": v
                         for v in conf["listeners"].values()}
    return conf


def tree(files):
    """A world-readable temp dir holding files {relpath: bytes}."""
    root = tempfile.mkdtemp(prefix="wharf-phpapp-")
    os.chmod(root, 0o755)
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    for d, _, names in os.walk(root):
        os.chmod(d, 0o755)
        for n in names:
            os.chmod(os.path.join(d, n), 0o644)
    return root


class Client:
    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, path, body=None, headers=None, timeout=60):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv
                                    for kv in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=scaled(timeout))
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            for k, v in resp.getheaders():
                if k.lower() == "set-cookie":
                    name, _, rest = v.partition("=")
                    value = rest.split(";")[0]
                    if "expires=Thu, 01-Jan-1970" in v or value == \
                            "deleted":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = value
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    def get(self, path, **kw):
        status, headers, body = self.request("GET", path, **kw)
        return status, dict(headers), body

    def post_form(self, path, fields, **kw):
        return self.request(
            "POST", path, body=urllib.parse.urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            **kw)


def start(wharf, conf):
    if not os.path.exists(MODULE):
        pytest.skip("the PHP module is not built (make deps: php8.2-dev)")
    tmpdir = tempfile.mkdtemp(prefix="wharf-phptmp-")
    os.chmod(tmpdir, 0o1777)
    server = wharf(conf, extra_args=["--modulesdir", MODULES,
                                     "--tmpdir", tmpdir])
    server.php_tmpdir = tmpdir
    return server


def app_pids(server):
    pids = []
    for pid in children_of(server.pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"application" in f.read():
                    pids.append(pid)
        except OSError:
            pass
    return pids


def wait_until(pred, timeout):
    deadline = time.monotonic() + scaled(timeout)
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pred()


def stop_apps(server):
    """Remove the applications so the fd check finds the baseline."""
    if not server.alive():
        return
    pids = app_pids(server)
    server.api().put("/config", {"listeners": {}, "applications": {}})
    wait_until(lambda: not set(pids) & set(children_of(server.pid)), 30)


# ---- Laravel (laravel-fly.json) ----------------------------------------------


LARAVEL_INDEX = b"""<?php
header("Content-Type: application/json");
echo json_encode(["uri" => $_SERVER["REQUEST_URI"],
                  "method" => $_SERVER["REQUEST_METHOD"],
                  "script_name" => $_SERVER["SCRIPT_NAME"],
                  "script_filename" => $_SERVER["SCRIPT_FILENAME"]]);
"""


def test_laravel_fly(wharf):
    root = tree({"var/www/html/public/index.php": LARAVEL_INDEX,
                 "var/www/html/public/css/app.css": b"body{}\n"})
    try:
        conf = load("laravel-fly", {"/var/www/html": root + "/var/www/html"})
        server = start(wharf, conf)
        c = Client(server.port)
        # "processes": {}: no process until the first request.
        assert app_pids(server) == []
        status, headers, body = c.get("/css/app.css")
        assert status == 200 and body == b"body{}\n"
        assert headers["Content-Type"] == "text/css"
        status, _, body = c.get("/any/route?x=1")
        assert status == 200, body
        got = json.loads(body)
        pub = os.path.join(root, "var/www/html/public")
        assert got == {"uri": "/any/route?x=1", "method": "GET",
                       "script_name": "/index.php",
                       "script_filename": os.path.join(pub, "index.php")}
        # A POST to a static path falls back to PHP.
        status, _, body = c.request("POST", "/css/app.css", body=b"a=1",
                                    headers={"Content-Type":
                                             "application/x-www-form-"
                                             "urlencoded"})
        assert status == 200 and json.loads(body)["method"] == "POST"
        # The front controller itself matches no step: Unit's 404 page.
        status, _, body = c.get("/index.php")
        assert status == 404
        assert body.startswith(b"<!DOCTYPE html><title>Error 404</title>")
        stop_apps(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- Satis (satisfy-php-targets.json) ------------------------------------------


SATIS_INFO = b"""<?php
preg_match('/^Uid:\\s+\\d+\\s+(\\d+)/m', file_get_contents("/proc/self/status"), $m);
echo "direct ", $_SERVER["SCRIPT_NAME"], " ", $_SERVER["PATH_INFO"] ?? "-",
     " ", $m[1], " ", getcwd();
"""
SATIS_INDEX = b"""<?php
echo "index ", $_SERVER["REQUEST_URI"], " ", $_SERVER["SCRIPT_FILENAME"];
"""


def test_satisfy_php_targets(wharf):
    try:
        pwd.getpwnam("www-data")
    except KeyError:
        pytest.skip("no www-data user")
    root = tree({"var/www/html/info.php": SATIS_INFO,
                 "var/www/html/public/index.php": SATIS_INDEX,
                 "var/www/html/public/app.js": b"let a = 1;\n"})
    try:
        # Unit ignores "stdout"/"stderr" under --no-daemon; Wharf opens
        # them as the app's user, who cannot open the harness's
        # /dev/stdout (a root-owned file): they move to files as well.
        out = os.path.join(root, "out")
        os.mkdir(out)
        os.chmod(out, 0o777)
        conf = load("satisfy-php-targets",
                    {"/var/www/html": root + "/var/www/html",
                     "/dev/stdout": out + "/stdout",
                     "/dev/stderr": out + "/stderr"})
        server = start(wharf, conf)
        html = os.path.join(root, "var/www/html")
        # spare 1: a process is there right after the config applied.
        assert wait_until(lambda: len(app_pids(server)) == 1, 20)
        c = Client(server.port)
        status, _, body = c.get("/info.php")
        assert status == 200
        # Unit changes to the script's directory for a script found by
        # its URI.
        uid = pwd.getpwnam("www-data").pw_uid
        assert body.decode() == "direct /info.php - %d %s" % (uid, html)
        assert c.get("/info.php/extra")[2].decode() == \
            "direct /info.php /extra %d %s" % (uid, html)
        status, headers, body = c.get("/app.js")
        assert status == 200 and body == b"let a = 1;\n"
        assert headers["Content-Type"] == "application/javascript"
        status, _, body = c.get("/packages.json")
        assert status == 200
        assert body.decode() == "index /packages.json " + os.path.join(
            html, "public", "index.php")
        stop_apps(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- WordPress (wordpress-docs.json) -------------------------------------------


WP_SRC = "/usr/share/wordpress"
MARIADBD = "/usr/sbin/mariadbd"
WP_TITLE = "Wharf test blog"
WP_USER, WP_PASS = "admin", "wharf-Test-pass-42"

WP_CONFIG = """<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'wp');
define('DB_PASSWORD', 'wp-pass');
define('DB_HOST', 'localhost:%(sock)s');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
define('AUTH_KEY', 'a1'); define('SECURE_AUTH_KEY', 'a2');
define('LOGGED_IN_KEY', 'a3'); define('NONCE_KEY', 'a4');
define('AUTH_SALT', 'a5'); define('SECURE_AUTH_SALT', 'a6');
define('LOGGED_IN_SALT', 'a7'); define('NONCE_SALT', 'a8');
/* No traffic leaves the machine: no update checks, no cron loopback. */
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('DISABLE_WP_CRON', true);
$table_prefix = 'wp_';
if (!defined('ABSPATH')) {
    define('ABSPATH', __DIR__ . '/');
}
require_once ABSPATH . 'wp-settings.php';
"""


class MariaDB:
    """A private mysqld: its own datadir and unix socket, no TCP; stopped
    by PID."""

    def __init__(self, base):
        self.base = base
        self.datadir = os.path.join(base, "db")
        self.sock = os.path.join(base, "mysql.sock")
        self.proc = None

    def start(self):
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", "--datadir=" + self.datadir,
             "--user=root", "--auth-root-authentication-method=normal",
             "--skip-test-db", "--skip-name-resolve"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            timeout=scaled(120))
        self.proc = subprocess.Popen(
            [MARIADBD, "--no-defaults", "--datadir=" + self.datadir,
             "--socket=" + self.sock, "--skip-networking", "--user=root",
             "--pid-file=" + os.path.join(self.base, "db.pid"),
             "--log-error=" + os.path.join(self.base, "db.err"),
             "--innodb-buffer-pool-size=32M", "--skip-log-bin",
             "--innodb-log-file-size=8M"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        assert wait_until(lambda: os.path.exists(self.sock)
                          or self.proc.poll() is not None, 60), "no socket"
        assert self.proc.poll() is None, open(
            os.path.join(self.base, "db.err")).read()[-2000:]
        self.sql("CREATE DATABASE wordpress; "
                 "CREATE USER 'wp'@'localhost' IDENTIFIED BY 'wp-pass'; "
                 "GRANT ALL ON wordpress.* TO 'wp'@'localhost';")

    def sql(self, text):
        return subprocess.run(
            ["mariadb", "--no-defaults", "-S", self.sock, "-uroot", "-N",
             "-e", text], check=True, capture_output=True, text=True,
            timeout=scaled(60)).stdout

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(30))
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wordpress_tree(base, sock):
    """A copy of Debian's WordPress with a wp-config.php of its own (the
    package's reads /etc/wordpress/config-HOST.php; PHP resolves __FILE__
    through symlinks, so the PHP files are copied, not linked)."""
    root = os.path.join(base, "wp")
    shutil.copytree(WP_SRC, root, symlinks=True,
                    ignore=shutil.ignore_patterns(".htaccess"))
    os.unlink(os.path.join(root, "wp-config.php"))
    with open(os.path.join(root, "wp-config.php"), "w") as f:
        f.write(WP_CONFIG % {"sock": sock})
    os.makedirs(os.path.join(root, "wp-content", "uploads"), exist_ok=True)
    return root


@pytest.mark.slow
def test_wordpress(wharf):
    if SAN:
        pytest.skip("PHP's mysqli does not load under ASan (RTLD_DEEPBIND)")
    if not os.path.isdir(WP_SRC) or not os.path.exists(MARIADBD):
        pytest.skip("needs Debian's wordpress and mariadb-server")
    if not os.path.isdir(os.path.join(WP_SRC, "wp-content", "themes",
                                      "twentytwentythree")):
        pytest.skip("needs wordpress-theme-twentytwentythree")
    base = tempfile.mkdtemp(prefix="wharf-wp-")
    os.chmod(base, 0o755)
    db = MariaDB(base)
    try:
        db.start()
        root = wordpress_tree(base, db.sock)
        conf = load("wordpress-docs", {"/path/to/app": root})
        server = start(wharf, conf)
        wordpress_flow(server, root, db)
        stop_apps(server)
    finally:
        db.stop()
        shutil.rmtree(base, ignore_errors=True)


def wordpress_flow(server, root, db):
    port = server.port
    site = "http://127.0.0.1:%d" % port
    c = Client(port)

    # The installer (direct target), then its second step.
    status, _, body = c.get("/wp-admin/install.php")
    assert status == 200 and b"Welcome" in body, body[:2000]
    status, _, body = c.post_form("/wp-admin/install.php?step=2", {
        "weblog_title": WP_TITLE, "user_name": WP_USER,
        "admin_password": WP_PASS, "admin_password2": WP_PASS,
        "pw_weak": "on", "admin_email": "admin@example.com",
        "blog_public": "0", "Submit": "Install WordPress", "language": ""},
        timeout=120)
    assert status == 200 and b"Success!" in body, body[-3000:]
    assert db.sql("SELECT option_value FROM wordpress.wp_options "
                  "WHERE option_name = 'siteurl'").strip() == site

    # The home page (the index target renders it).
    status, _, body = c.get("/")
    assert status == 200 and WP_TITLE.encode() in body, body[:2000]

    # /wp-admin without '/' is the share's directory redirect.
    status, headers, _ = c.get("/wp-admin")
    assert status == 301 and headers["Location"].endswith("/wp-admin/")

    # Log in.
    c.get("/wp-login.php")
    assert "wordpress_test_cookie" in c.cookies
    status, headers, body = c.post_form("/wp-login.php", {
        "log": WP_USER, "pwd": WP_PASS, "wp-submit": "Log In",
        "redirect_to": site + "/wp-admin/", "testcookie": "1"})
    assert status == 302, body[-2000:]
    assert any(k.startswith("wordpress_logged_in_") for k in c.cookies)
    status, _, body = c.get("/wp-admin/")
    assert status == 200 and b"Dashboard" in body

    # Publish a post from the editor's session: its REST nonce.
    status, _, body = c.get("/wp-admin/post-new.php")
    assert status == 200
    m = re.search(rb'wpApiSettings = \{.*?"nonce":"([0-9a-f]+)"', body) or \
        re.search(rb'createNonceMiddleware\( "([0-9a-f]+)" \)', body)
    assert m, body[:3000]
    post = {"title": "Served by Wharf", "status": "publish",
            "content": "<p>A post published through the PHP module.</p>"}
    status, headers, body = c.request(
        "POST", "/?rest_route=/wp/v2/posts", body=json.dumps(post).encode(),
        headers={"Content-Type": "application/json",
                 "X-WP-Nonce": m.group(1).decode()})
    assert status == 201, body[:2000]
    created = json.loads(body)
    link = created["link"]
    assert link.startswith(site)

    # The post is served, and listed on the home page.
    status, _, body = c.get(link[len(site):])
    assert status == 200
    assert b"Served by Wharf" in body
    assert b"A post published through the PHP module." in body
    status, _, body = c.get("/")
    assert status == 200 and b"Served by Wharf" in body

    # Static assets come from the share, byte for byte.
    rel = "wp-includes/css/dashicons.min.css"
    status, headers, body = c.get("/" + rel)
    assert status == 200 and headers["Content-Type"] == "text/css"
    with open(os.path.join(root, rel), "rb") as f:
        assert body == f.read()
    assert "ETag" in headers or "Last-Modified" in headers
