"""Listener "tls" with real clients (Python's ssl, curl, openssl s_client):
a request served by return and by share (files through the TLS writer),
$scheme and "scheme" matching, the access log, SNI picking among several
certificates (names, wildcards, the first as default), conf_commands, Unit's
validation messages, DELETE of a certificate in use, a stalled handshake
cut off by header_read_timeout, a plain-HTTP client on a TLS port, a
reconfiguration that keeps an open TLS connection, and a restart from the
state directory."""

import os
import socket
import ssl
import subprocess
import time

import pytest

from lib.certs import CertSet
from lib.configs import return_config
from lib.wharf import free_port, scaled

def make_routes(docroot):
    return [
        {"match": {"uri": "/static/*"},
         "action": {"share": docroot + "$uri"}},
        {"match": {"scheme": "https"},
         "action": {"return": 301, "location": "/is/$scheme/$host"}},
        {"action": {"return": 302, "location": "/is/$scheme"}},
    ]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return CertSet(tmp_path_factory.mktemp("certs"))


def upload(api, certs, *names):
    for name in names:
        c = getattr(certs, name)
        chain = (certs.ca,) if name in ("rsa", "ec", "wild") else ()
        r = api.request("PUT", "/certificates/" + name, c.bundle(*chain))
        assert r.status == 200, r


def tls_conf(port, tls, routes=None, plain_port=None, **extra):
    listeners = {"127.0.0.1:%d" % port: {"pass": "routes", "tls": tls}}
    if plain_port is not None:
        listeners["127.0.0.1:%d" % plain_port] = {"pass": "routes"}
    conf = {"listeners": listeners,
            "routes": routes if routes is not None else make_routes("/nowhere")}
    conf.update(extra)
    return conf


@pytest.fixture
def tls_server(wharf, certs, tmp_path):
    """A server with every certificate stored and a TLS listener on
    .tls_port serving make_routes() with certificate rsa."""
    server = wharf(return_config(200))
    api = server.api()
    upload(api, certs, "rsa", "ec", "wild", "expired")
    docroot = tmp_path / "www"
    (docroot / "static").mkdir(parents=True)
    (docroot / "static" / "a.txt").write_bytes(b"alpha over tls\n")
    big = os.urandom(3 * 1024 * 1024 + 123)
    (docroot / "static" / "big.bin").write_bytes(big)
    server.big = big
    server.docroot = str(docroot)
    server.tls_port = free_port()
    apply_tls(server, {"certificate": "rsa"})
    # the TLS listener's socket (main's copy and the router's) is the new
    # baseline: what connections leave behind is checked against it
    server.fd_baseline = server.settled_fd_count()
    return server


def routes_for(server):
    return make_routes(server.docroot)


def apply_tls(server, tls, **extra):
    conf = tls_conf(server.tls_port, tls, routes_for(server),
                    plain_port=server.port, **extra)
    r = server.api().request("PUT", "/config", conf)
    assert r.status == 200, r
    return r


def client_ctx(certs, verify=True, **kw):
    if verify:
        ctx = ssl.create_default_context(cafile=certs.ca.crt)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_connect(port, ctx, sni):
    raw = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    return ctx.wrap_socket(raw, server_hostname=sni)


def http_get(sock, path, host="example.com", close=True):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                  % (path, host, "Connection: close\r\n" if close else ""))
                 .encode())
    return read_response(sock)


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("closed before the head: %r" % data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def peer_cn(sock):
    der = sock.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout",
                          "-subject", "-nameopt", "multiline"],
                         input=der, capture_output=True, check=True).stdout
    for line in out.decode().splitlines():
        if "commonName" in line:
            return line.split("=", 1)[1].strip()
    return None


def test_https_return_scheme_and_verification(tls_server, certs):
    ctx = client_ctx(certs)
    with tls_connect(tls_server.tls_port, ctx, "example.com") as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        status, headers, _ = http_get(s, "/")
    # "scheme" matched https, and $scheme says so
    assert status == 301
    assert headers["location"] == "/is/https/example.com"
    # the plain listener still says http
    with socket.create_connection(("127.0.0.1", tls_server.port),
                                  timeout=scaled(10)) as s:
        status, headers, _ = http_get(s, "/x")
    assert status == 302 and headers["location"] == "/is/http"


def test_curl_and_s_client(tls_server, certs):
    port = tls_server.tls_port
    out = subprocess.run(
        ["curl", "-sS", "--cacert", certs.ca.crt, "--resolve",
         "www.example.com:%d:127.0.0.1" % port, "-o", "-",
         "https://www.example.com:%d/static/a.txt" % port],
        capture_output=True, timeout=scaled(30))
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"alpha over tls\n"
    sc = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
         "-servername", "example.com", "-CAfile", certs.ca.crt,
         "-verify_return_error", "-brief", "-ign_eof"],
        input=b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        capture_output=True, timeout=scaled(30))
    text = sc.stdout.decode() + sc.stderr.decode()
    assert "Verification: OK" in text, text
    assert "HTTP/1.1 301" in text, text


def test_big_file_over_tls(tls_server, certs):
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "example.com") as s:
        status, headers, body = http_get(s, "/static/big.bin")
    assert status == 200
    assert int(headers["content-length"]) == len(tls_server.big)
    assert body == tls_server.big


def test_keep_alive_many_requests(tls_server, certs):
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "example.com") as s:
        for i in range(20):
            status, _, body = http_get(s, "/static/a.txt", close=False)
            assert status == 200 and body == b"alpha over tls\n"
        # pipelined: two requests in one record
        s.sendall(b"GET /static/a.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"GET /static/a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(s)[2] == b"alpha over tls\n"
        assert read_response(s)[2] == b"alpha over tls\n"


@pytest.mark.parametrize("sni,cn", [
    ("example.com", "example.com"),
    ("WWW.Example.com", "example.com"),
    ("ec.test", "ec.test"),
    ("a.wild.test", "*.wild.test"),
    ("a.b.wild.test", "example.com"),    # a wildcard covers one label
    ("unknown.test", "example.com"),     # the first is the default
    (None, "example.com"),
])
def test_sni_picks_the_certificate(tls_server, certs, sni, cn):
    apply_tls(tls_server, {"certificate": ["rsa", "ec", "wild"]})
    with tls_connect(tls_server.tls_port, client_ctx(certs, verify=False),
                     sni) as s:
        assert peer_cn(s) == cn
        status, _, _ = http_get(s, "/")
        assert status == 301


def test_sni_verified_by_s_client(tls_server, certs):
    apply_tls(tls_server, {"certificate": ["rsa", "ec"]})
    sc = subprocess.run(
        ["openssl", "s_client", "-connect",
         "127.0.0.1:%d" % tls_server.tls_port, "-servername", "ec.test",
         "-verify_hostname", "ec.test", "-CAfile", certs.ca.crt,
         "-verify_return_error", "-brief"],
        input=b"", capture_output=True, timeout=scaled(30))
    text = sc.stdout.decode() + sc.stderr.decode()
    assert "Verification: OK" in text, text
    assert "CN = ec.test" in text or "CN=ec.test" in text, text


def test_access_log_sees_https(tls_server, certs, tmp_path):
    log = tmp_path / "access.log"
    apply_tls(tls_server, {"certificate": "rsa"},
              access_log={"path": str(log), "format": "$scheme $uri $status"})
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "example.com") as s:
        http_get(s, "/static/a.txt")
    deadline = time.monotonic() + scaled(10)
    while time.monotonic() < deadline:
        if log.exists() and b"https /static/a.txt 200" in log.read_bytes():
            break
        time.sleep(0.05)
    assert log.read_bytes().splitlines()[-1] == b"https /static/a.txt 200"
    apply_tls(tls_server, {"certificate": "rsa"})  # the log's fd goes


def test_conf_commands(tls_server, certs):
    apply_tls(tls_server, {"certificate": "rsa",
                           "conf_commands": {"MinProtocol": "TLSv1.3"}})
    ctx = client_ctx(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with tls_connect(tls_server.tls_port, ctx, "example.com") as s:
            http_get(s, "/")
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "example.com") as s:
        assert s.version() == "TLSv1.3"
    # a command OpenSSL refuses refuses the config
    conf = tls_conf(tls_server.tls_port,
                    {"certificate": "rsa",
                     "conf_commands": {"NoSuchCommand": "x"}})
    r = tls_server.api().request("PUT", "/config", conf)
    assert r.status == 400, r
    assert r.json["detail"] == \
        'SSL_CONF_cmd("NoSuchCommand", "x") failed.'


@pytest.mark.parametrize("tls,detail", [
    ({"certificate": "nope"}, 'Certificate "nope" is not found.'),
    ({"certificate": []},
     'The "certificate" array must contain at least one element.'),
    ({}, 'Required parameter "certificate" is missing.'),
    ({"certificate": "rsa", "session": {"timeout": 0}},
     'The "timeout" number must be greater than zero.'),
    ({"certificate": "rsa", "session": {"cache_size": -5}},
     'The "cache_size" number must not be negative.'),
])
def test_validation(tls_server, tls, detail):
    r = tls_server.api().request("PUT", "/config",
                                 tls_conf(tls_server.tls_port, tls))
    assert r.status == 400, r
    assert r.json == {"error": "Invalid configuration.", "detail": detail}


def test_delete_in_use_is_refused(tls_server, certs):
    api = tls_server.api()
    r = api.delete("/certificates/rsa")
    assert r.status == 400
    assert r.json == {"error": "Certificate is used in the configuration."}
    assert api.delete("/certificates/ec").status == 200


def test_stalled_handshake_is_cut_off(tls_server, certs):
    apply_tls(tls_server, {"certificate": "rsa"},
              settings={"http": {"header_read_timeout": 1}})
    hello_part = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    for data in (b"", hello_part):
        s = socket.create_connection(("127.0.0.1", tls_server.tls_port),
                                     timeout=scaled(15))
        start = time.monotonic()
        try:
            s.sendall(data)
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        finally:
            s.close()
        assert time.monotonic() - start < scaled(10)
    # the listener still serves
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "example.com") as s:
        assert http_get(s, "/")[0] == 301


def test_plain_http_on_a_tls_port(tls_server, certs):
    with socket.create_connection(("127.0.0.1", tls_server.tls_port),
                                  timeout=scaled(10)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1" not in data
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "example.com") as s:
        assert http_get(s, "/")[0] == 301


def test_reconfiguration_keeps_an_open_tls_connection(tls_server, certs):
    s = tls_connect(tls_server.tls_port, client_ctx(certs, verify=False),
                    "example.com")
    with s:
        assert http_get(s, "/", close=False)[0] == 301
        # new routes and a new certificate list on the same address
        routes = [{"action": {"return": 204}}]
        r = tls_server.api().request(
            "PUT", "/config",
            tls_conf(tls_server.tls_port, {"certificate": ["ec", "rsa"]},
                     routes))
        assert r.status == 200, r
        # the open connection serves on, under the new routes
        assert http_get(s, "/", close=False)[0] == 204
        assert peer_cn(s) == "example.com"
    with tls_connect(tls_server.tls_port, client_ctx(certs, verify=False),
                     "other.name") as s2:
        assert peer_cn(s2) == "ec.test"   # the new default
        assert http_get(s2, "/")[0] == 204


def test_tls_listener_after_restart(wharf, tls_server, certs):
    conf = tls_server.api().config()
    tls_server.stopped_by_test = True
    assert tls_server.stop() == 0
    again = wharf(None, statedir=tls_server.statedir)
    assert again.api().wait_ready()
    assert again.api().config() == conf
    deadline = time.monotonic() + scaled(10)
    while True:
        try:
            s = tls_connect(tls_server.tls_port, client_ctx(certs),
                            "example.com")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with s:
        assert http_get(s, "/")[0] == 301


def test_expired_certificate_is_served(tls_server, certs):
    """Unit serves what it is given; clients decide about validity."""
    apply_tls(tls_server, {"certificate": "expired"})
    with tls_connect(tls_server.tls_port, client_ctx(certs, verify=False),
                     "old.test") as s:
        assert peer_cn(s) == "old.test"
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(tls_server.tls_port, client_ctx(certs), "old.test")


def resumed(port, certs, version, sni="example.com"):
    """Connects twice with one client context; whether the second
    handshake resumed the first one's session."""
    ctx = client_ctx(certs, minimum_version=version, maximum_version=version)
    with tls_connect(port, ctx, sni) as s:
        # TLS 1.3 sends its tickets after the handshake: a request reads them
        assert http_get(s, "/", close=False)[0] == 301
        session = s.session
    raw = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s2:
        assert http_get(s2, "/")[0] == 301
        return s2.session_reused


VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.mark.parametrize("version", VERSIONS, ids=["1.2", "1.3"])
@pytest.mark.parametrize("session,expect", [
    (None, False),                                  # Unit's defaults
    ({"cache_size": 100}, True),                    # the server's cache
    ({"tickets": True}, True),                      # OpenSSL's ticket keys
    ({"tickets": False, "cache_size": 0}, False),
], ids=["default", "cache", "tickets", "off"])
def test_session_resumption(tls_server, certs, version, session, expect):
    tls = {"certificate": "rsa"}
    if session is not None:
        tls["session"] = session
    apply_tls(tls_server, tls)
    assert resumed(tls_server.tls_port, certs, version) is expect


def test_session_timeout_expires(tls_server, certs):
    apply_tls(tls_server, {"certificate": "rsa",
                           "session": {"cache_size": 100, "timeout": 1}})
    ctx = client_ctx(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    with tls_connect(tls_server.tls_port, ctx, "example.com") as s:
        http_get(s, "/", close=False)
        session = s.session
    time.sleep(2.5)
    raw = socket.create_connection(("127.0.0.1", tls_server.tls_port),
                                   timeout=scaled(10))
    with ctx.wrap_socket(raw, server_hostname="example.com",
                         session=session) as s2:
        assert http_get(s2, "/")[0] == 301
        assert not s2.session_reused


def new_session(port, ctx, sni="example.com"):
    with tls_connect(port, ctx, sni) as s:
        assert http_get(s, "/", close=False)[0] == 301
        return s.session


def resumes(port, ctx, session, sni="example.com"):
    raw = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
        assert http_get(s, "/", close=False)[0] == 301
        return s.session_reused


@pytest.mark.parametrize("version", VERSIONS, ids=["1.2", "1.3"])
def test_ticket_keys_survive_reconfiguration_and_rotate(tls_server, certs,
                                                        version):
    import base64
    k1 = base64.b64encode(os.urandom(48)).decode()
    k2 = base64.b64encode(os.urandom(80)).decode()
    port = tls_server.tls_port
    ctx = client_ctx(certs, minimum_version=version, maximum_version=version)

    def use(tickets):
        apply_tls(tls_server, {"certificate": "rsa",
                               "session": {"tickets": tickets}})

    # OpenSSL's own keys die with the configuration that made them
    use(True)
    old = new_session(port, ctx)
    assert resumes(port, ctx, old)
    apply_tls(tls_server, {"certificate": ["rsa", "ec"],
                           "session": {"tickets": True}})
    assert not resumes(port, ctx, old)
    # a key of the config's own survives a reconfiguration
    use(k1)
    s1 = new_session(port, ctx)
    apply_tls(tls_server, {"certificate": ["rsa", "ec"],
                           "session": {"tickets": k1}})
    assert resumes(port, ctx, s1)
    # rotation: the last key encrypts, the others still decrypt
    use([k1, k2])
    assert resumes(port, ctx, s1)
    s2 = new_session(port, ctx)
    use([k2])
    assert resumes(port, ctx, s2)
    assert not resumes(port, ctx, s1)
    use(False)
    assert not resumes(port, ctx, s2)


def test_forwarded_protocol_over_tls(tls_server, certs):
    """A trusted proxy's X-Forwarded-Proto wins; without it, https."""
    apply_tls(tls_server, {"certificate": "rsa"})
    conf = tls_server.api().config()
    listener = conf["listeners"]["127.0.0.1:%d" % tls_server.tls_port]
    listener["forwarded"] = {"protocol": "X-Forwarded-Proto",
                             "source": ["127.0.0.1"]}
    assert tls_server.api().request("PUT", "/config", conf).status == 200
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "example.com") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n"
                  b"X-Forwarded-Proto: http\r\n\r\n")
        status, headers, _ = read_response(s)
        assert status == 302 and headers["location"] == "/is/http"
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, headers, _ = read_response(s)
        assert status == 301 and headers["location"] == "/is/https/a"


APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps",
                    "wsgi")
MODULES = os.path.join(os.path.dirname(os.environ.get("WHARF_BIN", "")),
                       "modules")


def test_wsgi_app_sees_https(wharf, certs):
    if not os.path.exists(os.path.join(MODULES, "python3.11.wharf.so")):
        pytest.skip("the Python module is not built")
    server = wharf(return_config(200), extra_args=["--modulesdir", MODULES])
    api = server.api()
    upload(api, certs, "rsa")
    port = free_port()
    conf = {"listeners": {
                "127.0.0.1:%d" % server.port: {"pass": "routes"},
                "127.0.0.1:%d" % port: {"pass": "applications/app",
                                        "tls": {"certificate": "rsa"}}},
            "routes": [{"action": {"return": 200}}],
            "applications": {"app": {"type": "python 3", "path": APPS,
                                     "module": "environ"}}}
    r = api.request("PUT", "/config", conf)
    assert r.status == 200, (r, server.log_text()[-2000:])
    with tls_connect(port, client_ctx(certs), "example.com") as s:
        status, _, body = http_get(s, "/e")
    import json
    env = json.loads(body)
    assert status == 200
    assert env["wsgi.url_scheme"] == "https"
    # the app and the TLS listener go: fds back at the start's baseline
    r = api.request("PUT", "/config", return_config(200) | {
        "listeners": {"127.0.0.1:%d" % server.port: {"pass": "routes"}}})
    assert r.status == 200


def test_request_larger_than_a_read_in_one_record(tls_server, certs):
    """A head and body in one TLS record, larger than the connection's
    4 KiB read buffer: OpenSSL holds the rest decrypted, which no poll
    announces; the connection must read it on its own (h1_xprt_kick)."""
    body = b"x" * 12000
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "example.com") as s:
        s.settimeout(scaled(5))
        for _ in range(3):
            s.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                      b"\r\n%s" % (len(body), body))
            status, _, _ = read_response(s)
            assert status == 301
        # and a pipelined pair after a big head
        pad = b"X-Pad: " + b"p" * 6000 + b"\r\n"
        s.sendall(b"GET /static/a.txt HTTP/1.1\r\nHost: a\r\n" + pad
                  + b"\r\nGET /static/a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(s)[2] == b"alpha over tls\n"
        assert read_response(s)[2] == b"alpha over tls\n"


def test_certificate_replaced_under_the_same_name(tls_server, certs):
    """Unit refuses a PUT over a stored name: replacing means DELETE
    (while no listener names it) and PUT; the next config serves it."""
    api = tls_server.api()
    upload(api, certs, "other")
    apply_tls(tls_server, {"certificate": "rsa"})
    assert api.delete("/certificates/other").status == 200
    r = api.request("PUT", "/certificates/other",
                    certs.wild.bundle(certs.ca))
    assert r.status == 200, r
    apply_tls(tls_server, {"certificate": "other"})
    with tls_connect(tls_server.tls_port, client_ctx(certs),
                     "a.wild.test") as s:
        assert peer_cn(s) == "*.wild.test"
        assert http_get(s, "/")[0] == 301


def test_proxy_behind_tls_tells_the_backend_https(tls_server, certs):
    from lib.proxy_backends import RawBackend, response
    b = RawBackend(lambda req, sock: response(200, b"from backend"))
    try:
        apply_tls(tls_server, {"certificate": "rsa"})
        conf = tls_server.api().config()
        conf["routes"] = [{"action": {"proxy": b.url, "proxy_settings": {
            "x_forwarded": True, "forwarded": True}}}]
        r = tls_server.api().request("PUT", "/config", conf)
        assert r.status == 200, r
        with tls_connect(tls_server.tls_port, client_ctx(certs),
                         "example.com") as s:
            status, _, body = http_get(s, "/p")
        assert (status, body) == (200, b"from backend")
        assert b.last().header("X-Forwarded-Proto") == "https"
        assert "proto=https" in b.last().header("Forwarded")
        apply_tls(tls_server, {"certificate": "rsa"})  # no more backend
    finally:
        b.stop()


def test_two_records_in_one_segment(tls_server, certs):
    """Two requests in two TLS records that arrive in one read: the server
    reads ahead, so the second record waits undecrypted in OpenSSL's
    buffer where no poll announces it; both must be answered."""
    raw = socket.create_connection(("127.0.0.1", tls_server.tls_port),
                                   timeout=scaled(10))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx(certs).wrap_bio(inc, out, server_hostname="example.com")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            inc.write(raw.recv(65536))
    raw.sendall(out.read())  # the client's Finished
    time.sleep(0.2)  # the server is idle again, polling
    obj.write(b"GET /static/a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
    obj.write(b"GET /static/a.txt HTTP/1.1\r\nHost: a\r\n"
              b"Connection: close\r\n\r\n")
    raw.sendall(out.read())  # both records in one send
    data = b""
    while True:
        try:
            chunk = obj.read(65536)
            if not chunk:
                break
            data += chunk
        except ssl.SSLWantReadError:
            got = raw.recv(65536)
            if not got:
                break
            inc.write(got)
        except ssl.SSLZeroReturnError:
            break
    raw.close()
    assert data.count(b"HTTP/1.1 200") == 2, data
    assert data.count(b"alpha over tls\n") == 2, data



def _fds_after_close(server, first, base):
    """Sends first over TLS, reads the response and the server's
    close_notify, and returns the server's fd count once at most base or
    after 1.5 s (a lingering close holds the socket 2 s), the client's
    socket still open."""
    s = tls_connect(server.tls_port, client_ctx(server.certs), "example.com")
    try:
        s.sendall(first)
        assert read_response(s)[0] == 200
        while s.recv(65536):
            pass
        deadline = time.monotonic() + 1.5
        while server.fd_count() > base and time.monotonic() < deadline:
            time.sleep(0.02)
        return server.fd_count()
    finally:
        s.close()


def test_close_lingers_only_while_input_may_remain(tls_server, certs):
    """A "Connection: close" request read to its end closes at once, as
    nginx does: its socket goes right after the close_notify (lingering
    would hold it until the client closes, up to 2 s).  With
    pipelined bytes left unread it still lingers."""
    whole = b"GET /static/a.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    tls_server.certs = certs
    _fds_after_close(tls_server, whole, 0)  # the share keeps the file open
    base = tls_server.settled_fd_count()
    assert _fds_after_close(tls_server, whole, base) <= base
    assert _fds_after_close(
        tls_server, whole + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        base) > base
    assert tls_server.wait_fds_at_most(base) <= base
