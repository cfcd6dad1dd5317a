"""Static files are never stale and never mis-framed (issue 7 section 2).

Each test first serves a file twice on one keep-alive connection (so the
I/O thread has it in its open-file cache), changes it on disk, and asks
again at once, on the same connection and on a new one: the answer must be
the new file, with a Content-Length, ETag and Last-Modified that match the
bytes sent, and the connection must still frame the next response."""

import os
import socket
import time

import pytest

from lib.configs import routes_config, share_config
from lib.rawhttp import Reader, request


def connect(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def get_on(sock, path, headers=()):
    sock.sendall(request(path=path, headers=headers))
    return Reader(sock).read_response()


def etag_of(st):
    return '"%x-%x"' % (int(st.st_mtime), st.st_size)


class Client:
    """One keep-alive connection plus a fresh connection per check."""

    def __init__(self, server):
        self.server = server
        self.sock = connect(server)

    def close(self):
        self.sock.close()

    def expect(self, path, body, disk_path=None, status=200):
        """Both the kept connection and a new one answer body, framed
        exactly; disk_path's stat() must match ETag and size."""
        fresh = connect(self.server)
        try:
            for sock in (self.sock, fresh):
                r = get_on(sock, path)
                assert r.status == status, (r.status, r.raw_head)
                if status != 200:
                    continue
                assert r.body == body
                assert r.header("Content-Length") == str(len(body))
                if disk_path is not None:
                    assert r.header("ETag") == etag_of(os.stat(disk_path))
                # The connection still frames: a second response follows.
                again = get_on(sock, path)
                assert again.status == status
                assert again.body == body
        finally:
            fresh.close()

    def warm(self, path, body, disk_path=None):
        self.expect(path, body, disk_path)
        self.expect(path, body, disk_path)


@pytest.fixture
def server(wharf, docroot):
    return wharf(share_config(docroot))


@pytest.fixture
def client(server):
    c = Client(server)
    yield c
    c.close()


def test_in_place_rewrite_shorter(client, docroot):
    path = docroot / "index.html"
    path.write_bytes(b"0123456789")
    client.warm("/index.html", b"0123456789", path)
    with open(path, "r+b") as f:      # same inode, truncated in place
        f.truncate(0)
        f.write(b"abcd")
    client.expect("/index.html", b"abcd", path)
    client.expect("/", b"abcd", path)


def test_in_place_rewrite_longer(client, docroot):
    path = docroot / "grow.txt"
    path.write_bytes(b"short")
    client.warm("/grow.txt", b"short", path)
    with open(path, "ab") as f:
        f.write(b" and then much longer")
    client.expect("/grow.txt", b"short and then much longer", path)


@pytest.mark.parametrize("size", [8, 8192, 8193, 70000])
def test_in_place_rewrite_same_size(client, docroot, size):
    """Small files are sent from memory: their bytes must not outlive a
    rewrite that keeps the size (and perhaps the second)."""
    path = docroot / "same.bin"
    path.write_bytes(b"A" * size)
    client.warm("/same.bin", b"A" * size, path)
    with open(path, "r+b") as f:
        f.write(b"B" * size)
    client.expect("/same.bin", b"B" * size, path)
    r = get_on(client.sock, "/same.bin", [("Range", "bytes=2-5")])
    assert r.status == 206
    assert r.body == b"BBBB"
    r = get_on(client.sock, "/same.bin", [("Range", "bytes=-3")])
    assert r.body == b"BBB"


def test_head_of_cached_small_file(client, docroot):
    path = docroot / "head.txt"
    path.write_bytes(b"head me\n")
    client.warm("/head.txt", b"head me\n", path)
    client.sock.sendall(request(method="HEAD", path="/head.txt"))
    r = Reader(client.sock).read_response(head_request=True)
    assert r.status == 200
    assert r.header("Content-Length") == "8"
    client.expect("/head.txt", b"head me\n", path)


def test_metadata_change_updates_etag(client, docroot):
    path = docroot / "meta.txt"
    path.write_bytes(b"same bytes")
    client.warm("/meta.txt", b"same bytes", path)
    os.utime(path, (1000000000, 1000000000))
    client.expect("/meta.txt", b"same bytes", path)
    r = get_on(client.sock, "/meta.txt")
    assert r.header("Last-Modified") == "Sun, 09 Sep 2001 01:46:40 GMT"


def test_many_rewrites_stay_framed(client, docroot):
    path = docroot / "churn.txt"
    for i in range(30):
        data = b"x" * ((i * 7) % 23) + b"%d\n" % i
        path.write_bytes(data)
        client.expect("/churn.txt", data, path)


def test_rename_over(client, docroot):
    path = docroot / "renamed.txt"
    path.write_bytes(b"old version\n")
    client.warm("/renamed.txt", b"old version\n", path)
    tmp = docroot / ".renamed.tmp"
    tmp.write_bytes(b"new\n")
    os.rename(tmp, path)
    client.expect("/renamed.txt", b"new\n", path)


def test_unlink_then_create(client, docroot):
    path = docroot / "recreated.txt"
    path.write_bytes(b"first life\n")
    client.warm("/recreated.txt", b"first life\n", path)
    os.unlink(path)
    client.expect("/recreated.txt", None, status=404)
    path.write_bytes(b"second life, longer\n")
    client.expect("/recreated.txt", b"second life, longer\n", path)


def test_unlink_answers_404(client, docroot):
    path = docroot / "gone.txt"
    path.write_bytes(b"here\n")
    client.warm("/gone.txt", b"here\n", path)
    os.unlink(path)
    client.expect("/gone.txt", None, status=404)


def swap_symlink(link, target):
    tmp = str(link) + ".new"
    os.symlink(str(target), tmp)
    os.rename(tmp, str(link))


def test_symlink_swap_followed(client, docroot):
    (docroot / "v1.txt").write_bytes(b"version 1\n")
    (docroot / "v2.txt").write_bytes(b"version two\n")
    link = docroot / "current.txt"
    os.symlink("v1.txt", str(link))
    client.warm("/current.txt", b"version 1\n", link)
    swap_symlink(link, "v2.txt")
    client.expect("/current.txt", b"version two\n", link)


def test_symlink_target_outside_path_changes(client, docroot, tmp_path):
    """The link leads out of the share's directories: the file's own watch
    and its real directory's watch still see a change."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = outside / "t.txt"
    target.write_bytes(b"outside one\n")
    link = docroot / "out.txt"
    os.symlink(str(target), str(link))
    client.warm("/out.txt", b"outside one\n", link)
    tmp = outside / "t.tmp"
    tmp.write_bytes(b"outside two, renamed over\n")
    os.rename(tmp, target)
    client.expect("/out.txt", b"outside two, renamed over\n", link)
    target.write_bytes(b"3\n")
    client.expect("/out.txt", b"3\n", link)


def test_symlink_chain_middle_link_swapped(client, docroot, tmp_path):
    """entry -> ../hop/mid -> ../rel1: the middle link lives in a directory
    on neither the requested path nor the file's real path."""
    for name, data in (("rel1", b"chain one\n"), ("rel2", b"chain two!\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.txt").write_bytes(data)
    (tmp_path / "hop").mkdir()
    os.symlink("../rel1", str(tmp_path / "hop" / "mid"))
    os.symlink("../hop/mid", str(docroot / "entry"))
    client.warm("/entry/f.txt", b"chain one\n")
    swap_symlink(tmp_path / "hop" / "mid", "../rel2")
    client.expect("/entry/f.txt", b"chain two!\n")


def test_chroot_absolute_symlink_swapped(wharf, docroot):
    """Under a chroot an absolute link resolves below the chroot."""
    for name, data in (("v1", b"jailed one\n"), ("v2", b"jailed two\n")):
        (docroot / name).mkdir()
        (docroot / name / "f.txt").write_bytes(data)
    os.symlink("/v1", str(docroot / "cur"))
    server = wharf(share_config(docroot, chroot=str(docroot)))
    c = Client(server)
    try:
        c.warm("/cur/f.txt", b"jailed one\n")
        swap_symlink(docroot / "cur", "/v2")
        c.expect("/cur/f.txt", b"jailed two\n")
        (docroot / "v2" / "f.txt").write_bytes(b"rewritten\n")
        c.expect("/cur/f.txt", b"rewritten\n")
    finally:
        c.close()


def test_chroot_parent_swapped(wharf, tmp_path):
    """The chroot is opened by name: a swap above it is seen too."""
    base = tmp_path / "jails"
    (base / "j").mkdir(parents=True)
    (base / "j" / "f.txt").write_bytes(b"jail A\n")
    server = wharf(routes_config([{"action": {
        "share": str(base) + "/j$uri", "chroot": str(base) + "/j"}}]))
    c = Client(server)
    try:
        c.warm("/f.txt", b"jail A\n")
        other = tmp_path / "jails2"
        (other / "j").mkdir(parents=True)
        (other / "j" / "f.txt").write_bytes(b"jail B!\n")
        os.rename(base, tmp_path / "jails.old")
        os.rename(other, base)
        c.expect("/f.txt", b"jail B!\n")
    finally:
        c.close()


def test_symlinked_directory_swap(client, docroot):
    for name, data in (("rel1", b"release one\n"), ("rel2", b"release 2\n")):
        (docroot / name).mkdir()
        (docroot / name / "app.js").write_bytes(data)
    link = docroot / "live"
    os.symlink("rel1", str(link))
    client.warm("/live/app.js", b"release one\n")
    swap_symlink(link, "rel2")
    client.expect("/live/app.js", b"release 2\n")


def test_directory_component_swapped(client, docroot):
    d = docroot / "site"
    d.mkdir()
    (d / "page.txt").write_bytes(b"old tree\n")
    client.warm("/site/page.txt", b"old tree\n")
    new = docroot / "site.new"
    new.mkdir()
    (new / "page.txt").write_bytes(b"the new tree\n")
    os.rename(d, docroot / "site.old")
    os.rename(new, d)
    client.expect("/site/page.txt", b"the new tree\n")


def test_parent_of_docroot_swapped(wharf, tmp_path):
    """A component above the share's own directory changes too."""
    base = tmp_path / "srv"
    (base / "www").mkdir(parents=True)
    (base / "www" / "f.txt").write_bytes(b"first srv\n")
    server = wharf(routes_config([{"action": {
        "share": str(base) + "/www$uri"}}]))
    c = Client(server)
    try:
        c.warm("/f.txt", b"first srv\n")
        other = tmp_path / "srv2"
        (other / "www").mkdir(parents=True)
        (other / "www" / "f.txt").write_bytes(b"second srv!\n")
        os.rename(base, tmp_path / "srv.old")
        os.rename(other, base)
        c.expect("/f.txt", b"second srv!\n")
    finally:
        c.close()


@pytest.fixture
def nofollow(wharf, docroot):
    server = wharf(share_config(docroot, follow_symlinks=False))
    c = Client(server)
    yield c
    c.close()


def test_nofollow_file_replaced_by_symlink(nofollow, docroot):
    path = docroot / "plain.txt"
    path.write_bytes(b"plain file\n")
    nofollow.warm("/plain.txt", b"plain file\n", path)
    swap_symlink(path, docroot / "a.txt")
    nofollow.expect("/plain.txt", None, status=403)


def test_nofollow_symlink_replaced_by_file(nofollow, docroot):
    link = docroot / "was-link.txt"
    os.symlink("a.txt", str(link))
    nofollow.expect("/was-link.txt", None, status=403)
    tmp = docroot / "was-link.tmp"
    tmp.write_bytes(b"now a file\n")
    os.rename(tmp, link)
    nofollow.expect("/was-link.txt", b"now a file\n", link)


def test_nofollow_directory_replaced_by_symlink(nofollow, docroot):
    d = docroot / "pages"
    d.mkdir()
    (d / "p.txt").write_bytes(b"real dir\n")
    nofollow.warm("/pages/p.txt", b"real dir\n")
    (docroot / "other").mkdir()
    (docroot / "other" / "p.txt").write_bytes(b"through a link\n")
    os.rename(d, docroot / "pages.old")
    os.symlink("other", str(d))
    nofollow.expect("/pages/p.txt", None, status=403)


def test_chroot_file_replaced(wharf, docroot):
    server = wharf(share_config(docroot, chroot=str(docroot)))
    c = Client(server)
    try:
        path = docroot / "jail.txt"
        path.write_bytes(b"in the jail\n")
        c.warm("/jail.txt", b"in the jail\n", path)
        path.write_bytes(b"jail, v2\n")
        c.expect("/jail.txt", b"jail, v2\n", path)
    finally:
        c.close()


def test_conditional_after_change(client, docroot):
    """An ETag from before a change no longer earns a 304."""
    path = docroot / "cond.txt"
    path.write_bytes(b"v1\n")
    client.warm("/cond.txt", b"v1\n", path)
    old = etag_of(os.stat(path))
    r = get_on(client.sock, "/cond.txt", [("If-None-Match", old)])
    assert r.status == 304
    path.write_bytes(b"version 2\n")
    r = get_on(client.sock, "/cond.txt", [("If-None-Match", old)])
    assert r.status == 200
    assert r.body == b"version 2\n"


def test_file_shrinking_mid_send_closes(wharf, docroot):
    """A file truncated while it is sent ends the connection: it is not
    padded and no other response follows (the pipelined one is not
    answered)."""
    size = 64 << 20
    path = docroot / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(size)
    server = wharf(share_config(docroot))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(("127.0.0.1", server.port))
    try:
        s.sendall(request(path="/huge.bin") + request(path="/a.txt"))
        reader = Reader(s, timeout=30)
        head = reader.read_until(b"\r\n\r\n", time.monotonic() + 30)
        assert b"Content-Length: %d\r\n" % size in head
        got = len(reader.buf)
        while got < 65536:             # the send is under way
            got += len(s.recv(65536))
        with open(path, "r+b") as f:
            f.truncate(1000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            data = s.recv(1 << 20)
            if not data:
                break
            got += len(data)
        else:
            pytest.fail("connection still open")
        assert got < size
    except ConnectionResetError:
        pass                            # closed with unread input: fine
    finally:
        s.close()
    assert "file shrank while being sent" in server.log_text()
