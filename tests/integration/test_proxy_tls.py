"""TLS to backends (issue 11): "https://" proxy targets and "tls" in
proxy_settings or an upstream's settings, with verification against a CA
file (or none), SNI and the server's name or address checked.  The backends
are Python's http.server wrapped in ssl, with certificates made here by the
openssl command."""

import http.server
import threading
import time

import pytest

from lib.certs import make_cert
from lib.configs import routes_config
from lib.proxy_backends import HttpServerBackend
from lib.rawhttp import exchange, request
from lib.wharf import scaled


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pxtls")

    class C:
        pass
    c = C()
    c.ca = make_cert(d, "ca", "Proxy Test CA", ca=True, days=365)
    c.other_ca = make_cert(d, "otherca", "Other CA", ca=True, days=365)
    c.name = make_cert(d, "backend", "backend.test",
                       sans=("backend.test",), issuer=c.ca, ec=True)
    c.ip = make_cert(d, "ip", "127.0.0.1", sans=("IP:127.0.0.1",),
                     issuer=c.ca, ec=True)
    c.local = make_cert(d, "local", "localhost", sans=("localhost",),
                        issuer=c.ca, ec=True)
    c.client_ca = make_cert(d, "clientca", "Client CA", ca=True, days=365)
    c.client1 = make_cert(d, "client1", "client-one", issuer=c.client_ca,
                          ec=True, ext=("extendedKeyUsage=clientAuth",))
    c.client2 = make_cert(d, "client2", "client-two", issuer=c.client_ca,
                          ec=True, ext=("extendedKeyUsage=clientAuth",))
    return c


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        out = ("tls %s %s" % (self.path, self.headers.get("Host"))).encode()
        if self.path == "/big":
            out = bytes(range(256)) * 1200  # 300 KiB, many TLS records
        if self.path == "/port":
            out = b"port %d" % self.client_address[1]
        if self.path == "/reused":
            out = b"reused %d" % self.connection.session_reused
        if self.path == "/peer":  # the client certificate's CN
            peer = self.connection.getpeercert() or {}
            cns = [v for rdn in peer.get("subject", ()) for k, v in rdn
                   if k == "commonName"]
            out = ("peer %s" % ",".join(cns)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def backend():
    started = []

    def start(cert, client_ca=None):
        b = HttpServerBackend(handler=_Echo, cert=cert, client_ca=client_ca)
        started.append(b)
        return b
    yield start
    for b in started:
        b.stop()


def conf(port, **tls):
    action = {"proxy": "https://127.0.0.1:%d" % port}
    if tls:
        action["proxy_settings"] = {"tls": tls}
    return routes_config([{"action": action}])


def get(server, path="/x"):
    with server.connect() as s:
        return exchange(s, request(path=path,
                                   headers=[("Connection", "close")]),
                        timeout=scaled(10))


def test_verified_by_address(wharf, backend, certs):
    """No SNI: the certificate must name the server's address."""
    b = backend(certs.ip)
    server = wharf(conf(b.port, ca_file=certs.ca.crt), threads=1)
    r = get(server, "/a?b")
    assert r.status == 200
    assert r.body == b"tls /a?b localhost"
    assert b.snis == [None]


def test_big_body_over_tls(wharf, backend, certs):
    """A body of many records: read into the channel through TLS, with the
    decrypted bytes OpenSSL holds read without a poll."""
    b = backend(certs.ip)
    server = wharf(conf(b.port, ca_file=certs.ca.crt), threads=1)
    for _ in range(3):
        r = get(server, "/big")
        assert r.status == 200
        assert r.body == bytes(range(256)) * 1200


def test_session_resumed(wharf, backend, certs):
    """A new connection to the same server offers the session the last one
    got (TLS 1.3 tickets), and the server resumes it."""
    b = backend(certs.ip)
    server = wharf(conf(b.port, ca_file=certs.ca.crt), threads=1)
    seen = [get(server, "/reused").body for _ in range(4)]
    assert seen[0] == b"reused 0"
    assert b"reused 1" in seen[1:], seen


def test_pooled_tls_connections_reused(wharf, backend, certs):
    b = backend(certs.ip)
    server = wharf(routes_config([{"action": {
        "proxy": "https://127.0.0.1:%d" % b.port,
        "proxy_settings": {"idle_connections": 4, "idle_timeout": 2,
                           "tls": {"ca_file": certs.ca.crt}}}}]), threads=1)
    ports = {get(server, "/port").body for _ in range(4)}
    assert len(ports) == 1, ports
    big = get(server, "/big")
    assert big.body == bytes(range(256)) * 1200
    assert get(server, "/port").body in ports
    time.sleep(scaled(3))  # the idle one closes: the fd count is back


def test_wharf_as_the_tls_backend(wharf, certs, tmp_path):
    """Wharf itself behind Wharf: a TLS listener with the store's
    certificate (named backend.test), reached with SNI and the test CA."""
    import os
    state = tmp_path / "backstate"
    os.makedirs(state / "certs", mode=0o700)
    (state / "certs" / "srv").write_bytes(certs.name.bundle(certs.ca))
    back = wharf({"listeners": {"127.0.0.1:{port}": {
        "pass": "routes", "tls": {"certificate": "srv"}}},
        "routes": [{"action": {"return": 200, "location": "/ok"}}]},
        threads=1, statedir=str(state))
    front = wharf(routes_config([{"action": {
        "proxy": "https://127.0.0.1:%d" % back.port,
        "proxy_settings": {"idle_connections": 2, "idle_timeout": 1,
                           "tls": {"ca_file": certs.ca.crt,
                                   "sni": "backend.test"}}}}]), threads=1)
    for _ in range(3):
        r = get(front)
        assert r.status == 200
        assert r.header("Location") == "/ok"
    time.sleep(scaled(2))  # the pooled connection closes


def test_sni_sent_and_verified(wharf, backend, certs):
    b = backend(certs.name)
    server = wharf(conf(b.port, ca_file=certs.ca.crt, sni="backend.test"),
                   threads=1)
    assert get(server).status == 200
    assert b.snis == ["backend.test"]


def test_host_name_is_the_default_sni(wharf, backend, certs):
    # "https://NAME:PORT" sends and verifies NAME, as nginx does with
    # proxy_ssl_server_name on and as every HTTPS client does.
    b = backend(certs.local)
    action = {"proxy": "https://localhost:%d" % b.port,
              "proxy_settings": {"tls": {"ca_file": certs.ca.crt}}}
    server = wharf(routes_config([{"action": action}]), threads=1)
    assert get(server).status == 200
    assert b.snis == ["localhost"]


def test_name_mismatch_is_502(wharf, backend, certs):
    b = backend(certs.name)
    server = wharf(conf(b.port, ca_file=certs.ca.crt, sni="wrong.test"),
                   threads=1)
    assert get(server).status == 502
    server.wait_log(r"TLS handshake failed: certificate verify failed "
                    r"\(hostname mismatch\)", timeout=scaled(10))


def test_bad_ca_is_502_with_a_clear_line(wharf, backend, certs):
    b = backend(certs.ip)
    server = wharf(conf(b.port, ca_file=certs.other_ca.crt), threads=1)
    assert get(server).status == 502
    server.wait_log(r'proxy to "127\.0\.0\.1:\d+": TLS handshake failed: '
                    r"certificate verify failed \(unable to get local issuer "
                    r"certificate\)", timeout=scaled(10))


def test_https_defaults_to_the_system_cas(wharf, backend, certs):
    """"https://" alone verifies against the system's CAs, which do not
    know the test CA."""
    b = backend(certs.ip)
    server = wharf(conf(b.port), threads=1)
    assert get(server).status == 502
    server.wait_log(r"certificate verify failed", timeout=scaled(10))


def test_verify_false(wharf, backend, certs):
    b = backend(certs.name)
    server = wharf(conf(b.port, verify=False), threads=1)
    for _ in range(3):
        assert get(server).status == 200


def test_upstream_settings_tls(wharf, backend, certs):
    b = backend(certs.ip)
    server = wharf({
        "listeners": {"127.0.0.1:{port}": {"pass": "upstreams/u"}},
        "upstreams": {"u": {
            "servers": {"127.0.0.1:%d" % b.port: {}},
            "settings": {"tls": {"ca_file": certs.ca.crt}}}},
    }, threads=1)
    assert get(server).status == 200


def test_plain_backend_behind_https_is_502(wharf):
    """A backend that answers in plain HTTP fails the handshake: 502."""
    import socket
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    conns = []

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            conns.append(c)
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                      b"Connection: close\r\n\r\n")
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        server = wharf(conf(ls.getsockname()[1], verify=False), threads=1)
        assert get(server).status == 502
        server.wait_log(r"TLS handshake failed", timeout=scaled(10))
    finally:
        ls.close()
        for c in conns:
            c.close()
        t.join(5)


@pytest.mark.parametrize("tls, detail", [
    ({"ca_file": "/nonexistent/ca.pem"}, "cannot load the CA file"),
    ({"ca_file": ""}, "non-empty string"),
    ({"verify": "yes"}, "verify"),
    ({"nope": 1}, "nope"),
])
def test_tls_validation(wharf, tls, detail):
    server = wharf(routes_config([{"action": {"return": 204}}]), threads=1)
    r = server.api().put("/config/routes/0/action", {
        "proxy": "https://127.0.0.1:9", "proxy_settings": {"tls": tls}})
    assert r.status == 400
    assert detail in r.body.decode() if isinstance(r.body, bytes) \
        else detail in str(r.body)


# ---- "ca" and "certificate" from the certificate store (tls3) -----------

def store(api, name, pem):
    r = api.request("PUT", "/certificates/" + name, pem)
    assert r.status == 200, r


def store_conf(port, upstream=False, **tls):
    if upstream:
        return {"listeners": {"127.0.0.1:{port}": {"pass": "upstreams/u"}},
                "upstreams": {"u": {"servers": {"127.0.0.1:%d" % port: {}},
                                    "settings": {"tls": tls}}}}
    return conf(port, **tls)


def put_config(server, config):
    config = dict(config)
    config["listeners"] = {"127.0.0.1:%d" % server.port: {
        "pass": list(config["listeners"].values())[0]["pass"]}}
    r = server.api().request("PUT", "/config", config)
    assert r.status == 200, r


@pytest.fixture
def mtls(wharf, backend, certs):
    """A backend that requires a client certificate of the client CA, and
    a Wharf whose store holds the test CA (no key) and client-one."""
    b = backend(certs.ip, client_ca=certs.client_ca)
    server = wharf(routes_config([{"action": {"return": 204}}]), threads=1)
    api = server.api()
    store(api, "bca", certs.ca.crt_pem())
    store(api, "otherca", certs.other_ca.crt_pem())
    store(api, "client", certs.client1.bundle(certs.client_ca))
    return b, server


@pytest.mark.parametrize("upstream", [False, True])
def test_store_ca_and_client_certificate(mtls, upstream):
    """"ca" verifies the backend against a key-less bundle of the store;
    "certificate" is the client certificate the backend requires.  The
    controller sends both to the router though no listener names them."""
    b, server = mtls
    put_config(server, store_conf(b.port, upstream, ca="bca",
                                  certificate="client"))
    for _ in range(2):
        r = get(server, "/peer")
        assert r.status == 200, r
        assert r.body == b"peer client-one"


def test_store_ca_without_client_certificate_is_refused(mtls):
    """The backend requires a certificate: without "certificate", 502."""
    b, server = mtls
    put_config(server, store_conf(b.port, ca="bca"))
    assert get(server, "/peer").status == 502
    server.wait_log(r'proxy to "127\.0\.0\.1:\d+": ', timeout=scaled(10))


def test_store_wrong_ca_is_502(mtls):
    b, server = mtls
    put_config(server, store_conf(b.port, ca="otherca", certificate="client"))
    assert get(server, "/peer").status == 502
    server.wait_log(r"TLS handshake failed: certificate verify failed "
                    r"\(unable to get local issuer certificate\)",
                    timeout=scaled(10))


@pytest.mark.parametrize("upstream", [False, True])
def test_store_names_in_use_cannot_be_deleted(mtls, upstream):
    b, server = mtls
    api = server.api()
    put_config(server, store_conf(b.port, upstream, ca="bca",
                                  certificate="client"))
    for name in ("bca", "client", "BCA"):
        r = api.delete("/certificates/" + name)
        assert r.status == 400, (name, r)
        assert r.json == {"error": "Certificate is used in the "
                                   "configuration."}
    assert api.delete("/certificates/otherca").status == 200
    put_config(server, store_conf(b.port, upstream, ca_file="/dev/null",
                                  verify=False))
    assert api.delete("/certificates/bca").status == 200
    assert api.delete("/certificates/client").status == 200


@pytest.mark.parametrize("tls, detail", [
    ({"ca": "nope"}, 'Certificate \"nope\" is not found'),
    ({"certificate": "nope"}, 'Certificate \"nope\" is not found'),
    ({"certificate": "bca"}, "key"),
    ({"ca": "bca", "ca_file": "/etc/ssl/certs/ca-certificates.crt"},
     "cannot both be set"),
    ({"ca": ""}, "non-empty string"),
    ({"certificate": 1}, "certificate"),
])
def test_store_names_validated(mtls, tls, detail):
    b, server = mtls
    r = server.api().put("/config/routes/0/action", {
        "proxy": "https://127.0.0.1:%d" % b.port,
        "proxy_settings": {"tls": tls}})
    assert r.status == 400, r
    text = r.body.decode() if isinstance(r.body, bytes) else str(r.body)
    assert detail.replace("\\", "") in text.replace("\\", ""), text


def test_store_client_certificate_replaced(mtls, certs):
    """Replacing the client certificate under the same name (Unit's way:
    DELETE while unused, PUT): new backend connections present the new one
    from the next reconfiguration on."""
    b, server = mtls
    api = server.api()
    with_cert = store_conf(b.port, ca="bca", certificate="client")
    put_config(server, with_cert)
    assert get(server, "/peer").body == b"peer client-one"
    put_config(server, store_conf(b.port, ca="bca"))
    assert api.delete("/certificates/client").status == 200
    store(api, "client", certs.client2.bundle(certs.client_ca))
    put_config(server, with_cert)
    for _ in range(2):
        assert get(server, "/peer").body == b"peer client-two"
