"""Fixtures for Wharf's integration tests.

- `docroot`: a temp directory with a few static files (and a secret file one
  level above it that must never be served).
- `wharf`: a factory that starts servers; every server is stopped by PID at
  teardown.
- An autouse check after every test: no [alert]/[crit]/sanitizer lines in the
  log, the server is still alive with the same controller and router PIDs
  (no crash and restart), and its fd count is back to the post-start
  baseline.
"""

import os
import time

import pytest

from lib.wharf import WHARF_BIN, Wharf

SECRET = b"TOP-SECRET-do-not-serve\n"

DOCROOT_FILES = {
    "index.html": b"<html>root index</html>\n",
    "a.txt": b"alpha file\n",
    "b.txt": b"bravo file, a bit longer\n",
    "hello.txt": b"0123456789abcdefghij",       # 20 bytes, for ranges
    "style.css": b"body { color: red }\n",
    "data.json": b'{"k": 1}\n',
    "pic.png": b"\x89PNG\r\n\x1a\nfake",
    "noext": b"no extension\n",
    "file.unknownext": b"unknown extension\n",
    "empty.txt": b"",
    "dir/index.html": b"<html>dir index</html>\n",
    "dir/inner.txt": b"inner file\n",
    "noindex/file.txt": b"file in a directory without index\n",
    "site1/page.txt": b"site one page\n",
    "site2/page.txt": b"site two page\n",
    "sp ace/x.txt": b"space dir\n",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long test (WordPress)")


def pytest_report_header(config):
    return "wharf binary: %s" % (WHARF_BIN or "(WHARF_BIN not set)")


@pytest.fixture
def docroot(tmp_path):
    """tmp/www with DOCROOT_FILES; tmp/secret.txt sits one level above."""
    root = tmp_path / "www"
    for name, data in DOCROOT_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return root


class WharfFactory:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.servers = []

    def __call__(self, config, **kwargs):
        """Start a server on `config` ("{port}" placeholders are replaced)."""
        if not WHARF_BIN or not os.access(WHARF_BIN, os.X_OK):
            pytest.skip("WHARF_BIN is not an executable: %r" % WHARF_BIN)
        workdir = self.tmp_path / ("wharf%d" % len(self.servers))
        server = Wharf(workdir, config, **kwargs)
        self.servers.append(server)
        server.start()
        return server

    def stop_all(self):
        for server in self.servers:
            server.stop()


@pytest.fixture
def wharf(tmp_path):
    factory = WharfFactory(tmp_path)
    yield factory
    factory.stop_all()


def children_back(server, timeout):
    """Waits until the server's children are those of its start again: an
    app process whose sockets the router closed (the fd check passed)
    may still be exiting."""
    deadline = time.monotonic() + timeout
    while sorted(server.children()) != server.child_pids:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(autouse=True)
def server_health(request, wharf):
    """After every test: each server started by the test is healthy."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.passed:
        return  # the test failed already; do not pile on
    problems = []
    for server in wharf.servers:
        if server.proc is None or server.stopped_by_test:
            continue
        if not server.alive():
            problems.append("server pid %d exited (rc %s) during the test"
                            % (server.pid, server.proc.returncode))
        elif server.fd_baseline is not None:
            count = server.wait_fds_at_most(server.fd_baseline, timeout=5.0)
            if count > server.fd_baseline:
                problems.append("server pid %d holds %d fds, baseline %d"
                                % (server.pid, count, server.fd_baseline))
        if (server.alive() and server.child_pids is not None
                and not server.log_ignore
                and not children_back(server, timeout=5.0)):
            # A test that kills a child on purpose excuses its [alert].
            problems.append("server pid %d: children %s became %s"
                            % (server.pid, server.child_pids,
                               sorted(server.children())))
        bad = server.bad_log_lines()
        if bad:
            problems.append("bad log lines:\n  " + "\n  ".join(bad[:20]))
    if problems:
        logs = "\n".join("--- log of pid %d ---\n%s" % (s.pid, s.log_text()[-4000:])
                         for s in wharf.servers if s.proc is not None)
        pytest.fail("post-test check failed:\n" + "\n".join(problems)
                    + "\n" + logs, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
