"""The connection engine: I/O threads with their own epoll instances,
--maxconn, --maxaccept, concurrency."""

import concurrent.futures
import contextlib
import os
import time

import pytest
import requests

from lib.configs import return_config, share_config
from lib.rawhttp import Reader, readable, request
from lib.wharf import fd_targets, process_tree, scaled


# -- looking inside the server from /proc ---------------------------------------------

def server_side_inodes(server_port, client_ports):
    """Socket inodes of the server's end of our TCP connections."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            established = cols[3] == "01"
            if established and local_port == server_port \
                    and remote_port in client_ports:
                inodes.add(cols[9])
    return inodes


def epoll_registrations(pid):
    """{(pid, epoll fd): [registered fds]} for every epoll in the process."""
    out = {}
    for fd, target in fd_targets(pid).items():
        if target != "anon_inode:[eventpoll]":
            continue
        try:
            with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
                info = f.read()
        except OSError:
            continue
        out[(pid, fd)] = [int(line.split()[1]) for line in info.splitlines()
                          if line.startswith("tfd:")]
    return out


def clients_per_epoll(server, client_socks):
    """How many of our client connections each server epoll watches."""
    client_ports = {s.getsockname()[1] for s in client_socks}
    inodes = server_side_inodes(server.port, client_ports)
    counts = {}
    for pid in process_tree(server.pid):
        targets = fd_targets(pid)
        ours = {fd for fd, t in targets.items()
                if t.startswith("socket:[") and t[8:-1] in inodes}
        for key, tfds in epoll_registrations(pid).items():
            n = len(ours.intersection(tfds))
            if n:
                counts[key] = n
    return counts


def open_keepalive_clients(server, n):
    """n connections, each with one completed request (so it was accepted
    and is registered in some thread's epoll)."""
    socks = []
    try:
        for _ in range(n):
            s = server.connect()
            socks.append(s)
        for s in socks:
            s.sendall(request(path="/"))
        for s in socks:
            resp = Reader(s).read_response()
            assert resp.status == 204
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


# -- tests ---------------------------------------------------------------------------------

def test_connections_spread_over_threads(wharf):
    server = wharf(return_config(204), threads=2)
    socks = open_keepalive_clients(server, 100)
    try:
        deadline = time.monotonic() + scaled(5)
        counts = clients_per_epoll(server, socks)
        while sum(counts.values()) < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
            counts = clients_per_epoll(server, socks)
        assert sum(counts.values()) == 100, counts
        assert len(counts) == 2, "expected two I/O thread epolls: %r" % counts
        for key, n in counts.items():
            assert 30 <= n <= 70, "unbalanced threads: %r" % counts
    finally:
        for s in socks:
            s.close()


def test_threads_flag_one_thread_serves_all(wharf):
    server = wharf(return_config(204), threads=1)
    socks = open_keepalive_clients(server, 20)
    try:
        counts = clients_per_epoll(server, socks)
        assert list(counts.values()) == [20], counts
    finally:
        for s in socks:
            s.close()


def test_maxconn_queues_extra_connection(wharf):
    server = wharf(return_config(204), threads=2, maxconn=3)
    socks = open_keepalive_clients(server, 3)
    try:
        for cycle in range(3):
            extra = server.connect()
            socks.append(extra)
            extra.sendall(request(path="/"))
            # At the limit the listener stops accepting: no answer, no reset.
            assert not readable(extra, scaled(1.0)), \
                "cycle %d: connection over --maxconn was served or reset" % cycle
            # Connections already accepted keep working.
            socks[0].sendall(request(path="/"))
            try:
                assert Reader(socks[0]).read_response().status == 204
            except OSError as e:
                pytest.fail("cycle %d: accepted connection not served at the "
                            "limit: %r" % (cycle, e))
            # Free a slot: the waiting connection is accepted and served.
            socks.pop(0).close()
            try:
                resp = Reader(extra, timeout=10).read_response()
            except OSError as e:
                pytest.fail("cycle %d: waiting connection not served after a "
                            "slot was freed: %r\n%s"
                            % (cycle, e, server.log_text()[-2000:]))
            assert resp.status == 204
    finally:
        for s in socks:
            s.close()


def test_maxconn_many_waiting_clients_all_served(wharf):
    server = wharf(return_config(204), threads=2, maxconn=2)

    def one_request(_):
        return requests.get(server.url("/"), timeout=30,
                            headers={"Connection": "close"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one_request, range(40)))
    assert codes == [204] * 40


def test_maxaccept_one(wharf):
    server = wharf(return_config(204), threads=1, maxaccept=1)
    socks = open_keepalive_clients(server, 30)
    for s in socks:
        s.close()


def test_concurrent_requests_all_correct(wharf, docroot):
    server = wharf(share_config(docroot), threads=2)
    files = {"/a.txt": b"alpha file\n", "/b.txt": b"bravo file, a bit longer\n",
             "/hello.txt": b"0123456789abcdefghij"}
    names = sorted(files) * 40

    def fetch(name):
        with requests.Session() as session:
            r = session.get(server.url(name), timeout=30)
            return name, r.status_code, r.content

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(fetch, names))
    for name, code, body in results:
        assert code == 200, name
        assert body == files[name], name


def test_many_short_connections_no_fd_leak(wharf):
    server = wharf(return_config(204), threads=2)
    for _ in range(200):
        with server.connect() as s:
            s.sendall(request(path="/", headers=["Connection: close"]))
            assert Reader(s).read_response().status == 204
    count = server.wait_fds_at_most(server.fd_baseline, timeout=5)
    assert count <= server.fd_baseline


def test_abrupt_client_resets_harmless(wharf, docroot):
    import socket
    import struct
    big = docroot / "big.bin"
    with open(big, "wb") as f:
        f.truncate(8 << 20)
    server = wharf(share_config(docroot), threads=2)
    for _ in range(20):
        s = server.connect()
        s.sendall(request(path="/big.bin"))
        s.recv(1000)
        # RST instead of FIN, with most of the response unread.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        s.close()
    assert requests.get(server.url("/a.txt"), timeout=10).status_code == 200
