"""Route actions beyond plain share/return: "rewrite", "response_headers",
"pass" with variables, share's "chroot", "follow_symlinks" and
"traverse_mounts", "types" and "fallback" (Unit 1.35 semantics)."""

import os
import uuid

import pytest

from lib.configs import routes_config
from lib.rawhttp import exchange, request


def ask(server, path="/", method="GET", headers=(), host="localhost"):
    with server.connect() as s:
        return exchange(s, request(method=method, path=path, host=host,
                                   headers=list(headers)
                                   + [("Connection", "close")]),
                        head_request=(method == "HEAD"))


# -- rewrite ------------------------------------------------------------------

def test_rewrite_changes_uri_seen_by_the_action(wharf):
    server = wharf(routes_config([
        {"match": {"uri": "/old"},
         "action": {"rewrite": "/new", "return": 301, "location": "$uri"}},
    ]))
    r = ask(server, "/old")
    assert r.status == 301
    assert r.header("Location") == "/new"


def test_rewrite_with_variables(wharf):
    server = wharf(routes_config([
        {"match": {"uri": "/api/*"},
         "action": {"rewrite": "/v2${uri}/$method", "return": 302,
                    "location": "$uri"}},
    ]))
    r = ask(server, "/api/items", method="DELETE")
    assert r.status == 302
    assert r.header("Location") == "/v2/api/items/DELETE"


def test_rewrite_then_share_serves_rewritten_path(wharf, docroot):
    server = wharf(routes_config([
        {"match": {"uri": "/alias/*"},
         "action": {"rewrite": "/dir/inner.txt",
                    "share": str(docroot) + "$uri"}},
        {"action": {"share": str(docroot) + "$uri"}},
    ]))
    r = ask(server, "/alias/anything")
    assert (r.status, r.body) == (200, b"inner file\n")
    r = ask(server, "/a.txt")
    assert (r.status, r.body) == (200, b"alpha file\n")


def test_rewrite_then_pass_routes_on_new_uri(wharf):
    """A pass after a rewrite routes the rewritten URI."""
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/main"}},
        "routes": {
            "main": [{"match": {"uri": "/legacy/*"},
                      "action": {"rewrite": "/modern", "pass": "routes/next"}}],
            "next": [{"match": {"uri": "/modern"}, "action": {"return": 207}},
                     {"match": {"uri": "/legacy/*"},
                      "action": {"return": 500}},
                     {"action": {"return": 404}}]}})
    assert ask(server, "/legacy/page").status == 207


def test_rewrite_keeps_original_query(wharf):
    """Unit keeps the request's arguments across a rewrite; $request_uri
    stays the target received, and the Location's second '?' is encoded,
    as Unit sends it."""
    server = wharf(routes_config([
        {"action": {"rewrite": "/new", "return": 301,
                    "location": "/r?a=$arg_a&ru=$request_uri"}},
    ]))
    r = ask(server, "/old?a=1")
    assert r.status == 301
    loc = r.header("Location")
    assert loc.startswith("/r?a=1&ru="), loc
    assert loc == "/r?a=1&ru=/old%3Fa=1", loc


def test_rewrite_percent_decoded_for_share(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"rewrite": "/sp%20ace/x.txt",
                    "share": str(docroot) + "$uri"}}]))
    r = ask(server, "/whatever")
    assert (r.status, r.body) == (200, b"space dir\n")


def test_rewrite_only_in_matching_step(wharf):
    server = wharf(routes_config([
        {"match": {"uri": "/a"}, "action": {"rewrite": "/z", "return": 301,
                                            "location": "$uri"}},
        {"action": {"return": 302, "location": "$uri"}},
    ]))
    assert ask(server, "/b").header("Location") == "/b"
    assert ask(server, "/a").header("Location") == "/z"


def test_rewrite_logged_with_log_route(wharf):
    server = wharf(routes_config(
        [{"action": {"rewrite": "/rewritten-target", "return": 204}}],
        http={"log_route": True}))
    assert ask(server, "/src").status == 204
    assert server.wait_log(r'URI rewritten to "/rewritten-target"',
                           timeout=10), server.log_text()[-2000:]


# -- response_headers ---------------------------------------------------------

def test_response_headers_set_on_return(wharf):
    server = wharf(routes_config([
        {"action": {"return": 200, "response_headers": {
            "X-Static": "yes", "Cache-Control": "max-age=60"}}}]))
    r = ask(server)
    assert r.status == 200
    assert r.header("X-Static") == "yes"
    assert r.header("Cache-Control") == "max-age=60"


def test_response_headers_with_variables(wharf):
    server = wharf(routes_config([
        {"action": {"return": 204, "response_headers": {
            "X-Uri": "$uri", "X-Arg": "${arg_a}", "X-Method": "$method",
            "X-Host": "$host", "X-Hdr": "$header_x_in",
            "X-Cookie": "$cookie_c", "X-Dollar": "a${dollar}b"}}}]))
    r = ask(server, "/p%61th?a=one", host="h.test:9",
            headers=[("X-In", "in-value"), ("Cookie", "c=choc")])
    assert r.status == 204
    assert r.header("X-Uri") == "/path"
    assert r.header("X-Arg") == "one"
    assert r.header("X-Method") == "GET"
    assert r.header("X-Host") == "h.test"
    assert r.header("X-Hdr") == "in-value"
    assert r.header("X-Cookie") == "choc"
    assert r.header("X-Dollar") == "a$b"


def test_response_headers_on_share_replace_and_remove(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri", "response_headers": {
            "Content-Type": "text/x-custom", "ETag": None,
            "Last-Modified": None, "X-Served": "share"}}}]))
    r = ask(server, "/a.txt")
    assert r.status == 200
    assert r.body == b"alpha file\n"
    assert r.header_all("Content-Type") == ["text/x-custom"]
    assert r.header("ETag") is None
    assert r.header("Last-Modified") is None
    assert r.header("X-Served") == "share"


def test_response_headers_case_insensitive_replace(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri", "response_headers": {
            "content-type": "application/x-lower"}}}]))
    r = ask(server, "/a.txt")
    assert r.header_all("Content-Type") == ["application/x-lower"]


def test_response_headers_removing_absent_header_is_harmless(wharf):
    server = wharf(routes_config([
        {"action": {"return": 200, "response_headers": {"X-Nope": None}}}]))
    r = ask(server)
    assert r.status == 200
    assert r.header("X-Nope") is None


def test_response_headers_on_redirect(wharf):
    server = wharf(routes_config([
        {"action": {"return": 301, "location": "/elsewhere",
                    "response_headers": {"X-Redirect": "$uri"}}}]))
    r = ask(server, "/from")
    assert r.status == 301
    assert r.header("Location") == "/elsewhere"
    assert r.header("X-Redirect") == "/from"


def test_response_headers_on_share_directory_redirect(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri",
                    "response_headers": {"X-Dir": "1"}}}]))
    r = ask(server, "/dir")
    assert r.status == 301
    assert r.header("X-Dir") == "1"


def test_response_headers_not_on_error_responses(wharf, docroot):
    """Unit applies response_headers only to 2xx/3xx responses
    (nxt_http_set_headers skips status < 200 or >= 400): a 404 from the
    share, a 403 from "types" and a returned 403 carry none of them."""
    server = wharf(routes_config([
        {"match": {"uri": "/deny"},
         "action": {"return": 403, "response_headers": {"X-Err": "1"}}},
        {"match": {"uri": "/typed/*"},
         "action": {"share": str(docroot) + "/index.html",
                    "types": ["image/*"],
                    "response_headers": {"X-Err": "1"}}},
        {"action": {"share": str(docroot) + "$uri",
                    "response_headers": {"X-Err": "1"}}}]))
    for path, status in (("/missing.txt", 404), ("/deny", 403),
                         ("/typed/x", 403)):
        r = ask(server, path)
        assert r.status == status, path
        assert r.header("X-Err") is None, path
    r = ask(server, "/a.txt")
    assert r.status == 200
    assert r.header("X-Err") == "1"


def test_response_headers_of_fallback_action(wharf, docroot):
    """The action that produced the response supplies the headers."""
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri",
                    "response_headers": {"X-From": "share"},
                    "fallback": {"return": 200,
                                 "response_headers": {"X-From": "fallback"}}}}]))
    assert ask(server, "/a.txt").header("X-From") == "share"
    assert ask(server, "/missing").header("X-From") == "fallback"


def test_response_headers_on_head_and_304(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri",
                    "response_headers": {"X-H": "v"}}}]))
    r = ask(server, "/a.txt", method="HEAD")
    assert r.status == 200 and r.header("X-H") == "v"
    etag = r.header("ETag")
    r = ask(server, "/a.txt", headers=[("If-None-Match", etag)])
    assert r.status == 304
    assert r.header("X-H") == "v"


# -- pass with variables -------------------------------------------------------

def test_pass_with_method_variable(wharf):
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/$method"}},
        "routes": {"GET": [{"action": {"return": 201}}],
                   "POST": [{"action": {"return": 202}}]}})
    assert ask(server).status == 201
    assert ask(server, method="POST").status == 202
    assert ask(server, method="PUT").status == 404      # no such route


def test_pass_with_variables_in_action(wharf):
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/main"}},
        "routes": {
            "main": [{"match": {"uri": "/go"},
                      "action": {"pass": "routes/${arg_to}"}},
                     {"action": {"pass": "routes/h-$header_x_r"}}],
            "one": [{"action": {"return": 211}}],
            "two": [{"action": {"return": 212}}],
            "h-x": [{"action": {"return": 213}}]}})
    assert ask(server, "/go?to=one").status == 211
    assert ask(server, "/go?to=two").status == 212
    assert ask(server, "/go?to=none").status == 404
    assert ask(server, "/go").status == 404              # "routes/"
    assert ask(server, "/go?to=one/extra").status == 404
    assert ask(server, "/other", headers=[("X-R", "x")]).status == 213
    assert ask(server, "/other").status == 404


def test_pass_variable_decoded_segment(wharf):
    """Unit percent-decodes each segment of a rendered pass."""
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/$header_x_r"}},
        "routes": {"a b": [{"action": {"return": 214}}]}})
    assert ask(server, headers=[("X-R", "a%20b")]).status == 214


def test_pass_variable_in_fallback(wharf, docroot):
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/main"}},
        "routes": {
            "main": [{"action": {"share": str(docroot) + "$uri",
                                 "fallback": {"pass": "routes/$arg_f"}}}],
            "fb": [{"action": {"return": 215}}]}})
    assert ask(server, "/a.txt").status == 200
    assert ask(server, "/missing?f=fb").status == 215


# -- chroot ---------------------------------------------------------------------

@pytest.fixture
def chrooted(wharf, docroot):
    return wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri",
                    "chroot": str(docroot / "dir")}}]))


def test_chroot_inside_served(chrooted):
    r = ask(chrooted, "/dir/inner.txt")
    assert (r.status, r.body) == (200, b"inner file\n")


def test_chroot_outside_forbidden(chrooted):
    assert ask(chrooted, "/a.txt").status == 403
    assert ask(chrooted, "/site1/page.txt").status == 403


def test_chroot_absolute_symlink_resolved_inside_chroot(chrooted, docroot):
    """As in Unit (test_static_symlink_chroot), an absolute symlink target is
    resolved below the chroot, so a link pointing outside finds nothing
    (404) rather than the outside file; a relative link inside works."""
    os.symlink(str(docroot / "a.txt"), str(docroot / "dir" / "out.txt"))
    os.symlink("inner.txt", str(docroot / "dir" / "in.txt"))
    r = ask(chrooted, "/dir/out.txt")
    assert r.status == 404
    assert b"alpha" not in r.body
    r = ask(chrooted, "/dir/in.txt")
    assert (r.status, r.body) == (200, b"inner file\n")


def test_chroot_variable_share_escape_forbidden(wharf, docroot):
    """A variable with "../" may not leave the chroot."""
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "/dir/$arg_f",
                    "chroot": str(docroot / "dir")}}]))
    r = ask(server, "/?f=inner.txt")
    assert (r.status, r.body) == (200, b"inner file\n")
    r = ask(server, "/?f=../../secret.txt")
    assert r.status in (403, 404)
    assert b"TOP-SECRET" not in r.body


def test_chroot_with_variable(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri",
                    "chroot": str(docroot) + "/$arg_root"}}]))
    assert ask(server, "/site1/page.txt?root=site1").status == 200
    assert ask(server, "/site1/page.txt?root=site2").status == 403


# -- follow_symlinks ----------------------------------------------------------

def _no_symlinks_above(path):
    return os.path.realpath(str(path)) == str(path)


def test_follow_symlinks_false(wharf, docroot):
    if not _no_symlinks_above(docroot):
        pytest.skip("the temp directory itself is under a symlink")
    os.symlink(str(docroot / "dir"), str(docroot / "ldir"))
    os.symlink(str(docroot / "a.txt"), str(docroot / "la.txt"))
    server = wharf(routes_config([
        {"match": {"uri": "/on/*"},
         "action": {"share": str(docroot) + "/${arg_p}"}},
        {"action": {"share": str(docroot) + "$uri",
                    "follow_symlinks": False}}]))
    assert ask(server, "/a.txt").status == 200
    assert ask(server, "/dir/inner.txt").status == 200
    assert ask(server, "/la.txt").status == 403
    assert ask(server, "/ldir/inner.txt").status == 403
    # the default is true
    r = ask(server, "/on/x?p=ldir/inner.txt")
    assert (r.status, r.body) == (200, b"inner file\n")


def test_follow_symlinks_false_with_chroot_checks_below_chroot(wharf,
                                                              tmp_path):
    """Above the chroot, symlinks do not count."""
    real = tmp_path / "real"
    (real / "d").mkdir(parents=True)
    (real / "d" / "f.txt").write_bytes(b"f\n")
    os.symlink("f.txt", str(real / "d" / "lf.txt"))
    os.symlink(str(real), str(tmp_path / "linkroot"))
    root = str(tmp_path / "linkroot")
    server = wharf(routes_config([
        {"action": {"share": root + "$uri", "chroot": root,
                    "follow_symlinks": False}}]))
    r = ask(server, "/d/f.txt")
    assert (r.status, r.body) == (200, b"f\n")
    assert ask(server, "/d/lf.txt").status == 403


# -- traverse_mounts ------------------------------------------------------------

@pytest.fixture
def shm_file():
    if not os.path.ismount("/dev/shm"):
        pytest.skip("/dev/shm is not a mount point")
    name = "wharf-test-%s" % uuid.uuid4().hex
    path = os.path.join("/dev/shm", name)
    try:
        with open(path, "wb") as f:
            f.write(b"on another mount\n")
    except OSError as e:
        pytest.skip("cannot write /dev/shm: %s" % e)
    yield name
    os.unlink(path)


def test_traverse_mounts_false(wharf, docroot, shm_file):
    if not _no_symlinks_above(docroot):
        pytest.skip("the temp directory itself is under a symlink")
    if os.stat(str(docroot)).st_dev != os.stat("/").st_dev:
        pytest.skip("the temp directory is on another mount than /")
    os.symlink("/dev/shm", str(docroot / "shm"))
    server = wharf(routes_config([
        {"match": {"uri": "/yes/*"},
         "action": {"share": str(docroot) + "/shm/$arg_f",
                    "traverse_mounts": True}},
        {"action": {"share": str(docroot) + "$uri",
                    "traverse_mounts": False}}]))
    assert ask(server, "/a.txt").status == 200
    assert ask(server, "/shm/" + shm_file).status == 403
    r = ask(server, "/yes/x?f=" + shm_file)
    assert (r.status, r.body) == (200, b"on another mount\n")


# -- types ------------------------------------------------------------------------

def test_types_patterns(wharf, docroot):
    server = wharf(routes_config([
        {"match": {"uri": "/w/*"}, "action": {
            "rewrite": "/pic.png", "share": str(docroot) + "$uri",
            "types": ["image/*"]}},
        {"match": {"uri": "/re/*"}, "action": {
            "rewrite": "/style.css", "share": str(docroot) + "$uri",
            "types": ["~text/(plain|css)"]}},
        {"action": {"share": str(docroot) + "$uri",
                    "types": ["text/plain", "!text/html"]}}]))
    assert ask(server, "/a.txt").status == 200
    assert ask(server, "/index.html").status == 403
    assert ask(server, "/pic.png").status == 403
    assert ask(server, "/w/x").status == 200
    assert ask(server, "/re/x").status == 200


def test_types_wildcard_and_regex_without_rewrite(wharf, docroot):
    server = wharf(routes_config([
        {"match": {"uri": "*.png"}, "action": {
            "share": str(docroot) + "$uri", "types": ["image/*"]}},
        {"action": {"share": str(docroot) + "$uri",
                    "types": ["~^text/(plain|css)$"]}}]))
    assert ask(server, "/pic.png").status == 200
    assert ask(server, "/style.css").status == 200
    assert ask(server, "/a.txt").status == 200
    assert ask(server, "/index.html").status == 403
    assert ask(server, "/data.json").status == 403


def test_types_missing_file_is_404(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri",
                    "types": ["text/plain"]}}]))
    assert ask(server, "/missing.txt").status == 404


# -- fallback -------------------------------------------------------------------

def test_fallback_chain_and_pass(wharf, docroot):
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "routes/main"}},
        "routes": {
            "main": [{"action": {
                "share": str(docroot) + "/site1$uri",
                "fallback": {
                    "share": str(docroot) + "/site2$uri",
                    "fallback": {"pass": "routes/last"}}}}],
            "last": [{"action": {"return": 299}}]}})
    assert ask(server, "/page.txt").body == b"site one page\n"
    (docroot / "site2" / "only2.txt").write_bytes(b"two only\n")
    assert ask(server, "/only2.txt").body == b"two only\n"
    assert ask(server, "/nowhere").status == 299


def test_fallback_on_non_get_method(wharf, docroot):
    """A share answers only GET and HEAD; others go to the fallback."""
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri",
                    "fallback": {"return": 207}}}]))
    assert ask(server, "/a.txt").status == 200
    assert ask(server, "/a.txt", method="HEAD").status == 200
    with server.connect() as s:
        r = exchange(s, request(method="POST", path="/a.txt",
                                headers=[("Content-Length", "0"),
                                         ("Connection", "close")]))
    assert r.status == 207


def test_fallback_on_chroot_denial(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri",
                    "chroot": str(docroot / "dir"),
                    "fallback": {"return": 208}}}]))
    assert ask(server, "/a.txt").status == 208
    assert ask(server, "/dir/inner.txt").status == 200


def test_fallback_on_types_mismatch(wharf, docroot):
    server = wharf(routes_config([
        {"action": {"share": str(docroot) + "$uri", "types": ["text/css"],
                    "fallback": {"share": str(docroot) + "/a.txt"}}}]))
    assert ask(server, "/style.css").body == b"body { color: red }\n"
    assert ask(server, "/index.html").body == b"alpha file\n"
