#!/usr/bin/python3
"""PHP applications on Wharf beside nginx + php-fpm (and NGINX Unit).

Usage: /usr/bin/python3 bench/php.py --wharf build/wharf [--unitd PATH]
           [--reps 5] [--duration 5] [--conns 32] [--cases hello,wordpress]

Cases (the same PHP code on every server, 1 PHP process each):
  hello      <?php echo "Hello, World!"; as the root's index.php, GET /;
  wordpress  the home page of Debian's WordPress (twentytwentythree) over a
             private MariaDB on a unix socket, OPcache on everywhere.
Servers:
  wharf      Wharf with 1 I/O thread and 1 app process of the PHP module;
  unit       NGINX Unit 1.35 with its PHP module (when --unitd or $UNITD
             names unitd, or /tmp/unit/sbin/unitd exists, and its modules
             directory has php.unit.so);
  fpm        nginx (1 worker, access log off) passing *.php over FastCGI on
             a unix socket to php-fpm8.2 with 1 static worker
             (pm = static, pm.max_children = 1) and Debian's fpm php.ini.

Method (as bench/apps.py): every server process is pinned to CPU 0 and
wrk (-t1, keep-alive) to CPU 1; each repetition starts every server
afresh, in an order that rotates between repetitions, warms it up for a
second, then runs wrk.  The CPU of a server is the run time of every
thread of every process of its side (Wharf's main, controller, router and
app process; nginx's master and worker plus php-fpm's master and worker),
from /proc before and after the wrk run.  Reported: the medians of each
server's figures and the medians of the per-repetition ratios
Wharf/peer, with issue 9's goal (4x nginx + php-fpm per CPU-second on the
hello world).  Every peer's configuration is printed.

Stdlib only; every server and mysqld started here is stopped by PID.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apps as app_bench  # noqa: E402  (Server, Wharf, Unit, run_one...)
import bench as static_bench  # noqa: E402

DEFAULT_UNITD = "/tmp/unit/sbin/unitd"
PHP_FPM = "/usr/sbin/php-fpm8.2"
NGINX = "/usr/sbin/nginx"
WP_SRC = "/usr/share/wordpress"
MARIADBD = "/usr/sbin/mariadbd"

HELLO = '<?php echo "Hello, World!";\n'

# case: (servers, expected fragment of GET /).  apps.py's Server.start()
# reads its module's CASES: these replace them for this run.
CASES = {
    "hello": (["wharf", "unit", "fpm"], b"Hello, World!"),
    "wordpress": (["wharf", "unit", "fpm"], b"Wharf bench blog"),
}

GOALS = {("hello", "fpm", "per_cpu"): 4.0}

WP_CONFIG = """<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'wp');
define('DB_PASSWORD', 'wp-pass');
define('DB_HOST', 'localhost:%(sock)s');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
define('AUTH_KEY', 'b1'); define('SECURE_AUTH_KEY', 'b2');
define('LOGGED_IN_KEY', 'b3'); define('NONCE_KEY', 'b4');
define('AUTH_SALT', 'b5'); define('SECURE_AUTH_SALT', 'b6');
define('LOGGED_IN_SALT', 'b7'); define('NONCE_SALT', 'b8');
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('DISABLE_WP_CRON', true);
/* Each server listens on its own port: the site follows the Host. */
$wharf_host = isset($_SERVER['HTTP_HOST']) ? $_SERVER['HTTP_HOST'] : '127.0.0.1';
define('WP_HOME', 'http://' . $wharf_host);
define('WP_SITEURL', 'http://' . $wharf_host);
$table_prefix = 'wp_';
if (!defined('ABSPATH')) {
    define('ABSPATH', __DIR__ . '/');
}
require_once ABSPATH . 'wp-settings.php';
"""

WP_INSTALL = """<?php
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = '127.0.0.1';
require_once __DIR__ . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
$r = wp_install('Wharf bench blog', 'admin', 'admin@example.com', false, '',
                'bench-Pass-1');
wp_insert_post(['post_title' => 'A bench post', 'post_status' => 'publish',
                'post_content' => str_repeat('<p>Some text.</p>', 20)]);
echo "installed\\n";
"""


# ---------------------------------------------------------------- apps


class MariaDB:
    """A private mysqld on a unix socket (no TCP), stopped by PID."""

    def __init__(self, base):
        self.base = base
        self.datadir = os.path.join(base, "db")
        self.sock = os.path.join(base, "mysql.sock")
        self.proc = None

    def start(self):
        subprocess.run(
            ["mariadb-install-db", "--no-defaults",
             "--datadir=" + self.datadir, "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db",
             "--skip-name-resolve"], check=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT, timeout=180)
        self.proc = subprocess.Popen(
            ["taskset", "-c", "1", MARIADBD, "--no-defaults",
             "--datadir=" + self.datadir, "--socket=" + self.sock,
             "--skip-networking", "--user=root",
             "--pid-file=" + os.path.join(self.base, "db.pid"),
             "--log-error=" + os.path.join(self.base, "db.err"),
             "--innodb-buffer-pool-size=64M", "--skip-log-bin"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise app_bench.BenchError("mariadbd did not start")
            time.sleep(0.1)
        subprocess.run(
            ["mariadb", "--no-defaults", "-S", self.sock, "-uroot", "-e",
             "CREATE DATABASE wordpress; CREATE USER 'wp'@'localhost' "
             "IDENTIFIED BY 'wp-pass'; GRANT ALL ON wordpress.* TO "
             "'wp'@'localhost';"], check=True, timeout=60)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wordpress_setup(base, db):
    """Starts db, copies Debian's WordPress and installs it; its root."""
    db.start()
    root = os.path.join(base, "wp")
    shutil.copytree(WP_SRC, root, symlinks=True,
                    ignore=shutil.ignore_patterns(".htaccess"))
    os.unlink(os.path.join(root, "wp-config.php"))
    with open(os.path.join(root, "wp-config.php"), "w") as f:
        f.write(WP_CONFIG % {"sock": db.sock})
    with open(os.path.join(root, "bench-install.php"), "w") as f:
        f.write(WP_INSTALL)
    subprocess.run(["php8.2", os.path.join(root, "bench-install.php")],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=300)
    return root


def make_apps(base, cases, notes):
    """The hello world root and, for wordpress, a copy of Debian's
    WordPress installed into a private MariaDB.  Returns the paths and
    the MariaDB to stop."""
    paths = {"hello": os.path.join(base, "hello")}
    os.mkdir(paths["hello"])
    with open(os.path.join(paths["hello"], "index.php"), "w") as f:
        f.write(HELLO)
    db = None
    if "wordpress" in cases:
        if not os.path.isdir(WP_SRC) or not os.path.exists(MARIADBD):
            notes.append("wordpress: skipped (needs the wordpress and "
                         "mariadb-server packages)")
            cases.remove("wordpress")
        else:
            db = MariaDB(base)
            try:
                paths["wordpress"] = wordpress_setup(base, db)
            except BaseException:
                db.stop()  # by PID, before the error goes up
                raise
    # OPcache does not cache a file changed in the last 2 s
    # (opcache.file_update_protection): the code is a minute old for all.
    old = time.time() - 60
    for d, _, files in os.walk(base):
        os.chmod(d, 0o755)
        for name in files:
            path = os.path.join(d, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue  # Debian's links to other packages; the socket
            os.chmod(path, 0o644)
            os.utime(path, (old, old))
    if db is not None:
        os.chmod(db.sock, 0o777)
    return paths, db


def php_app(case, paths):
    """The application Wharf and Unit both get."""
    return {"type": "php", "root": paths[case], "processes": 1}


def php_config(case, paths, port):
    if case == "wordpress":
        # wordpress-docs.json's shape: PHP files direct, the rest from the
        # share with the front controller as fallback.
        app = {"type": "php", "processes": 1, "targets": {
            "direct": {"root": paths[case]},
            "index": {"root": paths[case], "script": "index.php"}}}
        return {
            "listeners": {f"127.0.0.1:{port}": {"pass": "routes"}},
            "routes": [
                {"match": {"uri": ["*.php", "*.php/*", "/wp-admin/"]},
                 "action": {"pass": "applications/bench/direct"}},
                {"action": {"share": paths[case] + "$uri",
                            "fallback": {"pass":
                                         "applications/bench/index"}}}],
            "applications": {"bench": app}}
    return {"listeners": {f"127.0.0.1:{port}":
                          {"pass": "applications/bench"}},
            "applications": {"bench": php_app(case, paths)}}


# ---------------------------------------------------------------- servers


class PhpUnitLike:
    def config(self):
        return php_config(self.case, self.paths, self.port)

    def describe(self):
        conf = php_config(self.case, self.paths, "PORT")
        return (" ".join(self.command()).replace(self.workdir, "W")
                + "\n      config: " + json.dumps(conf))


class Wharf(PhpUnitLike, app_bench.Wharf):
    name = "wharf"

    def command(self):
        return super().command() + ["--tmpdir", self.workdir]


class Unit(PhpUnitLike, app_bench.Unit):
    name = "unit"


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid %(w)s/nginx.pid;
error_log %(w)s/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    include /etc/nginx/mime.types;
    client_body_temp_path %(w)s/body;
    fastcgi_temp_path %(w)s/fastcgi;
    proxy_temp_path %(w)s/proxy;
    scgi_temp_path %(w)s/scgi;
    uwsgi_temp_path %(w)s/uwsgi;
    server {
        listen 127.0.0.1:%(port)s;
        root %(root)s;
        index index.php;
        location / { try_files $uri $uri/ /index.php?$args; }
        location ~ \\.php$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:%(w)s/fpm.sock;
        }
    }
}
"""

FPM_CONF = """\
[global]
pid = %(w)s/fpm.pid
error_log = %(w)s/fpm.log
daemonize = no
[bench]
user = www-data
group = www-data
listen = %(w)s/fpm.sock
listen.mode = 0666
pm = static
pm.max_children = 1
pm.max_requests = 0
"""


class Fpm(app_bench.Server):
    """nginx in front of php-fpm: two process trees, both pinned to CPU 0,
    both counted."""

    name = "fpm"

    def __init__(self, *a):
        super().__init__(*a)
        self.fpm = None

    def conf_text(self, port="PORT", w="W"):
        vals = {"w": w, "port": port, "root": self.paths[self.case]}
        return NGINX_CONF % vals, FPM_CONF % vals

    def command(self):
        return [NGINX, "-c", os.path.join(self.workdir, "nginx.conf"),
                "-p", self.workdir]

    def describe(self):
        nginx, fpm = self.conf_text()
        return (f"{PHP_FPM} -F -R -y W/fpm.conf (Debian's "
                f"/etc/php/8.2/fpm/php.ini, OPcache on)\n      fpm.conf:\n"
                + "".join("        " + l + "\n" for l in fpm.splitlines())
                + f"      {NGINX} -c W/nginx.conf\n      nginx.conf:\n"
                + "".join("        " + l + "\n" for l in nginx.splitlines()))

    def start(self, timeout=30.0):
        self.port = static_bench.free_port()
        nginx, fpm = self.conf_text(self.port, self.workdir)
        with open(os.path.join(self.workdir, "nginx.conf"), "w") as f:
            f.write(nginx)
        with open(os.path.join(self.workdir, "fpm.conf"), "w") as f:
            f.write(fpm)
        self.fpm_out = open(os.path.join(self.workdir, "fpm.out"), "wb")
        self.fpm = subprocess.Popen(
            ["taskset", "-c", "0", PHP_FPM, "-F", "-R", "-y",
             os.path.join(self.workdir, "fpm.conf")],
            stdin=subprocess.DEVNULL, stdout=self.fpm_out,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not os.path.exists(os.path.join(self.workdir, "fpm.sock")):
            if self.fpm.poll() is not None or time.monotonic() > deadline:
                raise app_bench.BenchError("php-fpm did not start: "
                                           + self.fpm_tail())
            time.sleep(0.05)
        self.port_saved = self.port
        super_start = app_bench.Server.start
        # Server.start() picks its own port: keep the one nginx listens on.
        static_free = static_bench.free_port
        static_bench.free_port = lambda: self.port_saved
        try:
            super_start(self, timeout)
        finally:
            static_bench.free_port = static_free

    def fpm_tail(self):
        try:
            with open(os.path.join(self.workdir, "fpm.log"), "rb") as f:
                return f.read()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""

    def pids(self):
        return (static_bench.proc_tree(self.proc.pid)
                + static_bench.proc_tree(self.fpm.pid))

    def stop(self):
        fpm_pids = static_bench.proc_tree(self.fpm.pid) if self.fpm else []
        super().stop()
        if self.fpm is not None:
            if self.fpm.poll() is None:
                self.fpm.send_signal(signal.SIGQUIT)
                try:
                    self.fpm.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            for pid in fpm_pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.fpm.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.fpm = None
            self.fpm_out.close()


SERVERS = {"wharf": Wharf, "unit": Unit, "fpm": Fpm}


# ---------------------------------------------------------------- main


def report(results, cases, servers_of):
    print()
    print("Medians over repetitions (min .. max):")
    for case in cases:
        print(f"  {case}:")
        for name in servers_of[case]:
            rps, rv = app_bench.median_of(results, case, name, "rps")
            pc, pv = app_bench.median_of(results, case, name, "per_cpu")
            if rps is None:
                print(f"    {name:<6} n/a (every run failed)")
                continue
            print(f"    {name:<6} {rps:>9.0f} req/s {app_bench.spread(rv):<22}"
                  f" {pc:>9.0f} req/CPU-s {app_bench.spread(pv)}")
    print()
    print("Medians of per-repetition ratios (issue 9's goal):")
    for case in cases:
        for peer in [n for n in servers_of[case] if n != "wharf"]:
            for key, label in (("per_cpu", "req/CPU-s"), ("rps", "req/s")):
                vals = app_bench.ratios(results, case, "wharf", peer, key)
                text = (f"{statistics.median(vals):6.2f}x "
                        f"{app_bench.spread(vals)}" if vals else "n/a")
                goal = GOALS.get((case, peer, key))
                if goal is not None and vals:
                    text += f"  goal >= {goal:.1f}x: " + (
                        "met" if statistics.median(vals) >= goal
                        else "NOT met")
                print(f"    {case:<9} wharf/{peer:<5} {label:<10} {text}")
        if "unit" in servers_of[case] and "fpm" in servers_of[case]:
            vals = app_bench.ratios(results, case, "unit", "fpm", "per_cpu")
            if vals:
                print(f"    {case:<9} unit/fpm    req/CPU-s  "
                      f"{statistics.median(vals):6.2f}x "
                      f"{app_bench.spread(vals)}  (reference)")


# A WordPress page takes ~30 ms of CPU: 32 connections would queue for
# longer than wrk's 2 s timeout, and a server would render pages that wrk
# gave up on.  4 keep the one PHP process busy without timeouts.
CASE_CONNS = {"wordpress": 4}


def case_args(args, case):
    a = argparse.Namespace(**vars(args))
    a.conns = min(args.conns, CASE_CONNS.get(case, args.conns))
    return a


def check_servers(args, wanted, notes):
    if not args.unitd and os.access(DEFAULT_UNITD, os.X_OK):
        args.unitd = DEFAULT_UNITD
    unit_php = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(args.unitd or "/x/x"))), "lib", "unit", "modules",
        "php.unit.so")
    if not args.unitd or not os.access(args.unitd, os.X_OK) or \
            not os.path.exists(unit_php):
        notes.append("unit: skipped (no unitd with php.unit.so)")
        wanted.discard("unit")
    else:
        args.unitd = os.path.abspath(args.unitd)
    if not os.access(PHP_FPM, os.X_OK) or not os.access(NGINX, os.X_OK):
        notes.append("fpm: skipped (needs nginx-light and php8.2-fpm: "
                     "make deps-bench)")
        wanted.discard("fpm")
    modules = os.path.join(os.path.dirname(args.wharf), "modules")
    if not os.path.exists(os.path.join(modules, "php8.2.wharf.so")):
        notes.append("wharf: no PHP module in " + modules)
        wanted.discard("wharf")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wharf", required=True)
    ap.add_argument("--unitd", default=os.environ.get("UNITD", ""))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--servers", default=",".join(SERVERS))
    args = ap.parse_args()
    args.wharf = os.path.abspath(args.wharf)
    cases = [c for c in args.cases.split(",") if c in CASES]
    wanted = {s for s in args.servers.split(",") if s in SERVERS}
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found (make deps-bench)")
    notes = []
    check_servers(args, wanted, notes)
    app_bench.CASES = CASES  # Server.start() checks GET / against these

    base = tempfile.mkdtemp(prefix="wharf-bench-php-")
    os.chmod(base, 0o755)
    results = []
    db = None
    try:
        paths, db = make_apps(base, cases, notes)
        servers_of = {c: [s for s in CASES[c][0] if s in wanted]
                      for c in cases}
        print(f"bench php: {args.reps} reps, wrk -t1 -c{args.conns} "
              f"(wordpress: -c{case_args(args, 'wordpress').conns}) "
              f"-d{args.duration}s (keep-alive), servers on CPU 0, wrk on "
              f"CPU 1, 1 PHP process each")
        for note in notes:
            print("  note: " + note)
        print("Configurations (W: the server's work directory):")
        for case in cases:
            print(f"  {case}:")
            for name in servers_of[case]:
                srv = SERVERS[name](case, paths, "W", args)
                print(f"    {name}: {srv.describe()}")
        print("  hello world (index.php): " + HELLO.strip())
        print()
        for rep in range(args.reps):
            runs = {}
            for case in cases:
                names = servers_of[case]
                k = rep % len(names) if names else 0
                for name in names[k:] + names[:k]:
                    try:
                        res = app_bench.run_one(SERVERS[name], case, paths,
                                                base, case_args(args, case))
                    except (app_bench.BenchError, static_bench.BenchError,
                            OSError) as e:
                        res = str(e)
                    runs[(case, name)] = res
                    print(f"  rep {rep} {case:<9} {name:<6} "
                          f"{app_bench.fmt_run(res)}")
                    sys.stdout.flush()
            results.append(runs)
        report(results, cases, servers_of)
    finally:
        if db is not None:
            db.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0 if any(isinstance(v, dict) for r in results
                    for v in r.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
