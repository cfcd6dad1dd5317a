"""Static files: share templates, index, fallback, types, MIME types,
conditional requests, ranges, directories, special files and path safety."""

import os
import socket
import stat

import pytest
import requests

from conftest import SECRET
from lib.configs import routes_config, share_config
from lib.rawhttp import Reader, exchange, request, wait_closed


def get(server, path, **kw):
    return requests.get(server.url(path), timeout=10, allow_redirects=False,
                        **kw)


@pytest.fixture
def server(wharf, docroot):
    return wharf(share_config(docroot))


# -- basic serving -------------------------------------------------------------

def test_serves_file(server):
    r = get(server, "/a.txt")
    assert r.status_code == 200
    assert r.content == b"alpha file\n"
    assert r.headers["Content-Length"] == str(len(b"alpha file\n"))


def test_serves_empty_file(server):
    r = get(server, "/empty.txt")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == "0"


def test_serves_large_file_intact(server, docroot):
    data = os.urandom(1 << 16) * 48     # 3 MiB
    (docroot / "large.bin").write_bytes(data)
    r = get(server, "/large.bin")
    assert r.status_code == 200
    assert len(r.content) == len(data)
    assert r.content == data


def test_missing_file_404(server):
    assert get(server, "/nope.txt").status_code == 404
    assert get(server, "/dir/nope/deeper.txt").status_code == 404


def test_file_used_as_directory_404(server):
    assert get(server, "/a.txt/x").status_code == 404


def test_percent_encoded_path_decoded(server):
    r = get(server, "/sp%20ace/x.txt")
    assert r.status_code == 200
    assert r.content == b"space dir\n"


def test_dot_segments_inside_root_normalized(server):
    with server.connect() as s:
        resp = exchange(s, request(path="/dir/../a.txt"))
    assert resp.status == 200
    assert resp.body == b"alpha file\n"


def test_query_string_ignored_for_path(server):
    r = get(server, "/a.txt?x=1&y=2")
    assert r.status_code == 200
    assert r.content == b"alpha file\n"


def test_head_headers_only(server):
    with server.connect() as s:
        reader = Reader(s)
        s.sendall(request(method="HEAD", path="/b.txt"))
        resp = reader.read_response(head_request=True)
        assert resp.status == 200
        assert resp.header("Content-Length") == str(len(b"bravo file, a bit longer\n"))
        assert resp.header("ETag")
        assert resp.header("Last-Modified")
        # Nothing else arrives: the next response starts right away.
        s.sendall(request(path="/a.txt"))
        assert reader.read_response().body == b"alpha file\n"


def test_post_to_share_is_405(server):
    r = requests.post(server.url("/a.txt"), data=b"x", timeout=10)
    assert r.status_code == 405


# -- MIME types ----------------------------------------------------------------

@pytest.mark.parametrize("path,ctype", [
    ("/index.html", "text/html"),
    ("/a.txt", "text/plain"),
    ("/style.css", "text/css"),
    ("/data.json", "application/json"),
    ("/pic.png", "image/png"),
])
def test_mime_type_from_extension(server, path, ctype):
    r = get(server, path)
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == ctype


def test_unknown_extension_has_no_specific_type(server):
    # Unit sends no Content-Type for an unknown extension.
    for path in ("/noext", "/file.unknownext"):
        r = get(server, path)
        assert r.status_code == 200
        assert r.headers.get("Content-Type") in (None,
                                                 "application/octet-stream")


def test_custom_mime_types(wharf, docroot):
    (docroot / "thing.foo").write_bytes(b"foo\n")
    (docroot / "page.bar").write_bytes(b"bar\n")
    server = wharf(share_config(docroot, http={"static": {"mime_types": {
        "text/x-foo": ".foo",
        "application/x-bar": [".bar", ".baz"],
        "text/plain": [".txt"],
    }}}))
    assert get(server, "/thing.foo").headers["Content-Type"] == "text/x-foo"
    assert get(server, "/page.bar").headers["Content-Type"] == "application/x-bar"
    assert get(server, "/a.txt").headers["Content-Type"] == "text/plain"


# -- share variants ----------------------------------------------------------------

def test_share_array_tries_in_order(wharf, docroot, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "only-other.txt").write_bytes(b"from other\n")
    (other / "a.txt").write_bytes(b"shadowed a\n")
    server = wharf(routes_config([{"action": {
        "share": [str(docroot) + "$uri", str(other) + "$uri"]}}]))
    assert get(server, "/a.txt").content == b"alpha file\n"
    assert get(server, "/only-other.txt").content == b"from other\n"
    assert get(server, "/in-neither.txt").status_code == 404


def test_share_host_template(wharf, docroot):
    server = wharf(routes_config([{"action": {
        "share": str(docroot) + "/$host$uri"}}]))
    r1 = get(server, "/page.txt", headers={"Host": "site1"})
    r2 = get(server, "/page.txt", headers={"Host": "site2"})
    assert (r1.status_code, r1.content) == (200, b"site one page\n")
    assert (r2.status_code, r2.content) == (200, b"site two page\n")
    assert get(server, "/page.txt", headers={"Host": "site3"}).status_code == 404


def test_share_without_variable_is_one_file(wharf, docroot):
    # Unit >= 1.26: "share" is the whole path; no $uri means one fixed file.
    server = wharf(routes_config([{"action": {
        "share": str(docroot / "a.txt")}}]))
    assert get(server, "/b.txt").content == b"alpha file\n"
    assert get(server, "/whatever").content == b"alpha file\n"


def test_fallback_when_missing(wharf, docroot):
    server = wharf(routes_config([{"action": {
        "share": str(docroot) + "$uri",
        "fallback": {"share": str(docroot / "b.txt")}}}]))
    assert get(server, "/a.txt").content == b"alpha file\n"
    r = get(server, "/missing.txt")
    assert r.status_code == 200
    assert r.content == b"bravo file, a bit longer\n"


def test_fallback_return(wharf, docroot):
    server = wharf(routes_config([{"action": {
        "share": str(docroot) + "$uri", "fallback": {"return": 410}}}]))
    assert get(server, "/missing.txt").status_code == 410


def test_types_filter_forbids_other_types(wharf, docroot):
    server = wharf(share_config(docroot, types=["text/plain", "text/css"]))
    assert get(server, "/a.txt").status_code == 200
    assert get(server, "/style.css").status_code == 200
    assert get(server, "/index.html").status_code == 403


def test_types_filter_with_fallback(wharf, docroot):
    server = wharf(share_config(docroot, types=["!text/html"],
                                fallback={"return": 204}))
    assert get(server, "/a.txt").status_code == 200
    assert get(server, "/index.html").status_code == 204


# -- directories and index --------------------------------------------------------

def test_directory_without_slash_redirects(server):
    r = get(server, "/dir")
    assert r.status_code == 301
    assert r.headers["Location"] == "/dir/"


def test_directory_redirect_keeps_query(server):
    r = get(server, "/dir?a=1")
    assert r.status_code == 301
    assert r.headers["Location"] == "/dir/?a=1"


def test_directory_with_slash_serves_index(server):
    r = get(server, "/dir/")
    assert r.status_code == 200
    assert r.content == b"<html>dir index</html>\n"
    assert r.headers["Content-Type"].startswith("text/html")
    assert get(server, "/").content == b"<html>root index</html>\n"


def test_directory_without_index_404(server):
    # Unit answers 404 when the index file is missing (no listing).
    assert get(server, "/noindex/").status_code == 404


def test_custom_index(wharf, docroot):
    (docroot / "noindex" / "main.txt").write_bytes(b"custom index\n")
    server = wharf(share_config(docroot, index="main.txt"))
    r = get(server, "/noindex/")
    assert r.status_code == 200
    assert r.content == b"custom index\n"
    assert r.headers["Content-Type"] == "text/plain"
    assert get(server, "/dir/").status_code == 404


# -- conditional requests --------------------------------------------------------------

def test_etag_and_last_modified_present(server):
    r = get(server, "/a.txt")
    assert r.headers["ETag"].startswith('"') and r.headers["ETag"].endswith('"')
    assert r.headers["Last-Modified"].endswith("GMT")


def test_if_none_match_304(server):
    etag = get(server, "/a.txt").headers["ETag"]
    r = get(server, "/a.txt", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    r = get(server, "/a.txt", headers={"If-None-Match": '"other", ' + etag})
    assert r.status_code == 304
    r = get(server, "/a.txt", headers={"If-None-Match": "*"})
    assert r.status_code == 304


def test_if_none_match_mismatch_200(server):
    r = get(server, "/a.txt", headers={"If-None-Match": '"nope"'})
    assert r.status_code == 200
    assert r.content == b"alpha file\n"


def test_if_modified_since_304(server):
    lm = get(server, "/a.txt").headers["Last-Modified"]
    r = get(server, "/a.txt", headers={"If-Modified-Since": lm})
    assert r.status_code == 304
    assert r.content == b""


def test_if_modified_since_older_200(server):
    r = get(server, "/a.txt",
            headers={"If-Modified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"})
    assert r.status_code == 200
    assert r.content == b"alpha file\n"


def test_etag_changes_with_content(server, docroot):
    path = docroot / "changing.txt"
    path.write_bytes(b"version one\n")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    first = get(server, "/changing.txt")
    assert first.content == b"version one\n"
    # A new file name sidesteps the per-thread 1 s open-file cache.
    path2 = docroot / "changing2.txt"
    path2.write_bytes(b"version two, longer\n")
    second = get(server, "/changing2.txt")
    assert second.headers["ETag"] != first.headers["ETag"]
    assert second.headers["Last-Modified"] != first.headers["Last-Modified"]


def test_modified_file_served_fresh_at_once(server, docroot):
    path = docroot / "fresh.txt"
    path.write_bytes(b"old\n")
    assert get(server, "/fresh.txt").content == b"old\n"
    assert get(server, "/fresh.txt").content == b"old\n"
    tmp = docroot / "fresh.txt.tmp"
    tmp.write_bytes(b"new content\n")
    os.rename(tmp, path)
    # No waiting: the open-file cache hears of the rename through inotify
    # (test_static_fresh.py covers every kind of change).
    r = get(server, "/fresh.txt")
    assert r.content == b"new content\n"


# -- ranges ------------------------------------------------------------------------------

HELLO = b"0123456789abcdefghij"


@pytest.mark.parametrize("spec,start,end", [
    ("bytes=0-4", 0, 4),
    ("bytes=5-", 5, 19),
    ("bytes=-3", 17, 19),
    ("bytes=10-10", 10, 10),
    ("bytes=15-100", 15, 19),
    ("bytes=-100", 0, 19),
])
def test_single_range_206(server, spec, start, end):
    r = get(server, "/hello.txt", headers={"Range": spec})
    assert r.status_code == 206
    assert r.content == HELLO[start:end + 1]
    assert r.headers["Content-Range"] == "bytes %d-%d/20" % (start, end)
    assert r.headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("spec", ["bytes=20-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_range_416(server, spec):
    r = get(server, "/hello.txt", headers={"Range": spec})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */20"


def test_multiple_ranges_whole_file(server):
    r = get(server, "/hello.txt", headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200
    assert r.content == HELLO


def test_invalid_range_syntax_ignored(server):
    r = get(server, "/hello.txt", headers={"Range": "items=0-3"})
    assert r.status_code == 200
    assert r.content == HELLO


def test_if_range_mismatch_whole_file(server):
    r = get(server, "/hello.txt",
            headers={"Range": "bytes=0-4", "If-Range": '"stale-etag"'})
    assert r.status_code == 200
    assert r.content == HELLO


def test_if_range_match_206(server):
    etag = get(server, "/hello.txt").headers["ETag"]
    r = get(server, "/hello.txt", headers={"Range": "bytes=0-4",
                                           "If-Range": etag})
    assert r.status_code == 206
    assert r.content == HELLO[:5]


def test_range_on_head(server):
    # RFC 9110 defines Range for GET only; a server may ignore it on HEAD.
    # Either way the headers must describe what a GET would return.
    with server.connect() as s:
        resp = exchange(s, request(method="HEAD", path="/hello.txt",
                                   headers=["Range: bytes=2-5"]),
                        head_request=True)
    assert resp.status in (200, 206)
    if resp.status == 206:
        assert resp.header("Content-Range") == "bytes 2-5/20"
        assert resp.header("Content-Length") == "4"
    else:
        assert resp.header("Content-Range") is None
        assert resp.header("Content-Length") == "20"


def test_range_in_large_file(server, docroot):
    data = bytes(range(256)) * 8192        # 2 MiB
    (docroot / "big-range.bin").write_bytes(data)
    r = get(server, "/big-range.bin", headers={"Range": "bytes=1000000-1000099"})
    assert r.status_code == 206
    assert r.content == data[1000000:1000100]


# -- special files ------------------------------------------------------------------------

def test_unix_socket_file_not_served(server, docroot):
    path = str(docroot / "sock.txt")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(path)
        r = get(server, "/sock.txt")
        assert r.status_code == 404     # as Unit (open() gives ENXIO)
    finally:
        sock.close()


def test_fifo_not_served_and_server_not_blocked(server, docroot):
    os.mkfifo(str(docroot / "fifo.txt"))
    r = get(server, "/fifo.txt")
    assert r.status_code == 404         # as Unit: not a regular file
    # The server is still responsive afterwards.
    assert get(server, "/a.txt").status_code == 200


@pytest.mark.skipif(os.geteuid() == 0,
                    reason="root bypasses permission bits; no 403 via chmod")
def test_unreadable_file_403(server, docroot):
    path = docroot / "locked.txt"
    path.write_bytes(b"locked\n")
    path.chmod(0)
    try:
        assert get(server, "/locked.txt").status_code == 403
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_symlink_inside_root_followed(server, docroot):
    os.symlink(str(docroot / "a.txt"), str(docroot / "link.txt"))
    r = get(server, "/link.txt")
    assert r.status_code == 200
    assert r.content == b"alpha file\n"


# -- path safety --------------------------------------------------------------------------

TRAVERSALS = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2e%2fsecret.txt",
    "/..%2fsecret.txt",
    "//../secret.txt",
    "/dir/../../secret.txt",
    "/dir/%2e%2e/%2e%2e/secret.txt",
    "/./../secret.txt",
    "/.%2e/secret.txt",
    "/dir/..%2F..%2Fsecret.txt",
    "/%2e%2e%5csecret.txt",
    "/..\\secret.txt",
    "/dir/.../../secret.txt",
    "/../www/../secret.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_escape_from_share_root(server, path):
    with server.connect() as s:
        s.sendall(request(path=path))
        reader = Reader(s)
        resp = reader.read_response()
    assert SECRET not in resp.body
    assert resp.status != 200, "served %r" % path


def test_no_escape_with_absolute_form(server):
    with server.connect() as s:
        resp = exchange(s, request(path="http://localhost/../secret.txt"))
    assert SECRET not in resp.body
    assert resp.status != 200


@pytest.mark.parametrize("path", ["/a.txt%00", "/a.txt%00.html",
                                  "/%00/../secret.txt"])
def test_encoded_nul_rejected(server, path):
    with server.connect() as s:
        s.sendall(request(path=path))
        reader = Reader(s)
        resp = reader.read_response()
        assert resp.status == 400
        assert SECRET not in resp.body
        assert wait_closed(s)


def test_no_escape_via_host_template(wharf, docroot):
    server = wharf(routes_config([{"action": {
        "share": str(docroot) + "/$host$uri"}}]))
    for host in ("..", "../www", "..%2f", "site1/../.."):
        with server.connect() as s:
            s.sendall(request(path="/secret.txt", host=host))
            resp = Reader(s).read_response()
        assert SECRET not in resp.body, host
        assert resp.status != 200, host


# -- Unit 1.35's rules, compared on the same requests --------------------------------

def test_device_file_404(server, docroot):
    os.symlink("/dev/null", str(docroot / "null.txt"))
    os.symlink("/dev/zero", str(docroot / "zero"))
    assert get(server, "/null.txt").status_code == 404
    assert get(server, "/zero").status_code == 404


def test_special_files_fall_through_share_array(wharf, docroot):
    os.mkfifo(str(docroot / "fifo.txt"))
    os.symlink("/dev/null", str(docroot / "null.txt"))
    server = wharf(routes_config([{"action": {
        "share": [str(docroot) + "$uri", str(docroot / "a.txt")]}}]))
    for path in ("/fifo.txt", "/null.txt"):
        r = get(server, path)
        assert r.status_code == 200
        assert r.content == b"alpha file\n"


def test_types_checked_before_existence(wharf, docroot):
    server = wharf(share_config(docroot, types=["text/plain"]))
    assert get(server, "/file.jpg").status_code == 403    # missing, excluded
    assert get(server, "/missing.txt").status_code == 404
    assert get(server, "/a.txt").status_code == 200
    assert get(server, "/dir").status_code == 403         # no type: excluded


def test_types_403_tries_next_share(wharf, docroot):
    server = wharf(routes_config([{"action": {
        "share": [str(docroot) + "$uri", str(docroot / "b.txt")],
        "types": ["text/plain"]}}]))
    r = get(server, "/pic.png")
    assert r.status_code == 200
    assert r.content == b"bravo file, a bit longer\n"


@pytest.mark.parametrize("types", [["text/plain"], ["!text/html"]])
def test_index_served_whatever_types(wharf, docroot, types):
    server = wharf(share_config(docroot, types=types))
    r = get(server, "/")
    assert r.status_code == 200
    assert r.content == b"<html>root index</html>\n"
    assert r.headers["Content-Type"].startswith("text/html")
    assert get(server, "/dir/").content == b"<html>dir index</html>\n"
    assert get(server, "/index.html").status_code == 403


def test_share_array_entry_outside_chroot_falls_through(wharf, docroot):
    inner = docroot / "dir"
    server = wharf(routes_config([{"action": {
        "share": [str(docroot) + "$uri", str(inner) + "$uri"],
        "chroot": str(inner)}}]))
    r = get(server, "/inner.txt")
    assert r.status_code == 200
    assert r.content == b"inner file\n"
    assert get(server, "/").content == b"<html>dir index</html>\n"
    assert get(server, "/a.txt").status_code == 404    # not in the chroot


def test_share_equal_to_chroot_403(wharf, docroot):
    server = wharf(routes_config([{"action": {
        "share": str(docroot / "dir"), "chroot": str(docroot / "dir")}}]))
    assert get(server, "/").status_code == 403


def test_empty_chroot_with_relative_share(wharf, docroot):
    server = wharf(share_config(docroot))
    cwd = os.readlink("/proc/%d/cwd" % server.pid)
    rel = os.path.relpath(str(docroot), cwd)
    assert not rel.startswith("/")
    reply = server.api().put("/config/routes", [{"action": {
        "share": rel + "$uri", "chroot": ""}}])
    assert reply.status == 200
    r = get(server, "/a.txt")
    assert r.status_code == 200
    assert r.content == b"alpha file\n"
    assert get(server, "/").content == b"<html>root index</html>\n"


def test_repeated_slashes_in_share_and_chroot(wharf, docroot):
    doubled = "/" + str(docroot).replace("/", "//")
    server = wharf(routes_config([{"action": {
        "share": doubled + "//$uri", "chroot": doubled + "//"}}]))
    assert get(server, "/a.txt").content == b"alpha file\n"
    assert get(server, "/").content == b"<html>root index</html>\n"
    assert get(server, "/dir/inner.txt").content == b"inner file\n"
    assert get(server, "/dir").status_code == 301
    assert get(server, "/../secret.txt").status_code in (400, 404)


def test_repeated_slashes_chroot_prefix_match(wharf, docroot):
    server = wharf(routes_config([{"action": {
        "share": str(docroot) + "//dir/$uri",
        "chroot": str(docroot).replace("/", "//") + "/dir"}}]))
    assert get(server, "/inner.txt").content == b"inner file\n"
    assert get(server, "/").content == b"<html>dir index</html>\n"
