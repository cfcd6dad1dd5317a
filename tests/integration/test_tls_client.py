"""Client certificates (Wharf's "client_certificate" in a listener's
"tls"): a CA bundle without a key in the store, the three modes with real
clients (Python's ssl, curl, openssl s_client), the alerts a failed
verification ends the handshake with, the $tls_* variables in a return
location, response_headers, "if", the access log and the proxy's
X-Client-* fields, and the validation messages."""

import hashlib
import socket
import ssl
import subprocess
import time

import pytest

from lib.certs import CertSet, make_cert
from lib.configs import return_config
from lib.proxy_backends import RawBackend, response
from lib.wharf import free_port, scaled


class ClientCerts:
    def __init__(self, d):
        self.set = CertSet(d / "server")
        self.ca = self.set.ca
        # a second CA, and clients of each
        self.client_ca = make_cert(d, "cca", "Client CA", ca=True, days=365)
        self.other_ca = make_cert(d, "oca", "Other CA", ca=True, days=365)
        self.client = make_cert(d, "client", "client.test",
                                issuer=self.client_ca, ec=True)
        self.stranger = make_cert(d, "stranger", "stranger.test",
                                  issuer=self.other_ca, ec=True)
        self.expired = make_cert(d, "oldclient", "old.client.test",
                                 issuer=self.client_ca, ec=True, expired=True)


@pytest.fixture(scope="module")
def cc(tmp_path_factory):
    return ClientCerts(tmp_path_factory.mktemp("clientcerts"))


def openssl_out(*args, data=None):
    return subprocess.run(["openssl"] + list(args), input=data,
                          capture_output=True, check=True).stdout.decode()


def serial_of(cert):
    return openssl_out("x509", "-in", cert.crt, "-noout",
                       "-serial").strip().split("=", 1)[1]


def fingerprint_of(cert):
    with open(cert.crt) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


VARS_HEADERS = {
    "X-Verify": "$tls_client_verify",
    "X-Subject": "$tls_client_subject",
    "X-Issuer": "$tls_client_issuer",
    "X-Serial": "$tls_client_serial",
    "X-Fp": "$tls_client_fingerprint",
    "X-Proto": "$tls_protocol",
    "X-Cipher": "$tls_cipher",
    "X-Sni": "$tls_sni",
}


def routes():
    return [
        {"match": {"uri": "/if"}, "action": {"return": 204}},
        {"match": {"uri": "/gate", "if": "$tls_client_verified"},
         "action": {"return": 200}},
        {"match": {"uri": "/gate"}, "action": {"return": 403}},
        {"action": {"return": 302, "location": "/who/$tls_client_subject",
                    "response_headers": VARS_HEADERS}},
    ]


@pytest.fixture
def srv(wharf, cc):
    server = wharf(return_config(200))
    api = server.api()
    for name, body in (("srv", cc.set.rsa.bundle(cc.ca)),
                       ("clientca", cc.client_ca.crt_pem()),
                       ("otherca", cc.other_ca.crt_pem())):
        r = api.request("PUT", "/certificates/" + name, body)
        assert r.status == 200, r
    server.tls_port = free_port()
    apply(server, {"mode": "required", "ca": "clientca"})
    server.fd_baseline = server.settled_fd_count()
    return server


def conf_for(server, client, access_log=None, plain_routes=None,
             session=None):
    tls = {"certificate": "srv"}
    if session is not None:
        tls["session"] = session
    if client is not None:
        tls["client_certificate"] = client
    conf = {"listeners": {
        "127.0.0.1:%d" % server.tls_port: {"pass": "routes", "tls": tls},
        "127.0.0.1:%d" % server.port: {"pass": "routes"}},
        "routes": plain_routes or routes()}
    if access_log is not None:
        conf["access_log"] = access_log
    return conf


def apply(server, client, **kw):
    r = server.api().request("PUT", "/config", conf_for(server, client, **kw))
    assert r.status == 200, r
    return r


def ctx_for(cc, cert=None, tls13=True):
    ctx = ssl.create_default_context(cafile=cc.ca.crt)
    if cert is not None:
        ctx.load_cert_chain(cert.crt, cert.key)
    if tls13:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def get(port, ctx, path="/", sni="example.com"):
    """One request; returns (status, headers) or raises the TLS error."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=scaled(10))
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                   % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(head[0].split()[1]), headers


def tls_error(port, ctx):
    with pytest.raises((ssl.SSLError, ConnectionError)) as e:
        get(port, ctx)
    return str(e.value)


def test_ca_bundle_without_key_is_stored(srv, cc):
    api = srv.api()
    info = api.get("/certificates/clientca").json
    assert "key" not in info
    assert info["chain"][0]["subject"]["common_name"] == "Client CA"
    # used as a server certificate, Unit's message for a bundle without key
    conf = conf_for(srv, None)
    conf["listeners"]["127.0.0.1:%d" % srv.tls_port]["tls"]["certificate"] = \
        "clientca"
    r = api.request("PUT", "/config", conf)
    assert r.status == 400
    assert r.json["detail"] == ('Certificate "clientca" cannot be loaded: '
                                'no key found.'), r.json
    # a CA in use cannot go
    r = api.delete("/certificates/clientca")
    assert r.status == 400
    assert r.json == {"error": "Certificate is used in the configuration."}


def test_required_valid_client(srv, cc):
    status, h = get(srv.tls_port, ctx_for(cc, cc.client))
    assert status == 302
    subject = "CN=client.test,O=Wharf Tests,C=FR"
    # (a location's space is percent-encoded, as Unit does)
    assert h["location"] == "/who/" + subject.replace(" ", "%20")
    assert h["x-verify"] == "SUCCESS"
    assert h["x-subject"] == subject
    assert h["x-issuer"] == "CN=Client CA,O=Wharf Tests,C=FR"
    assert h["x-serial"] == serial_of(cc.client)
    assert h["x-fp"] == fingerprint_of(cc.client)
    assert h["x-proto"] == "TLSv1.3"
    assert h["x-cipher"].startswith("TLS_")
    assert h["x-sni"] == "example.com"
    status, _ = get(srv.tls_port, ctx_for(cc, cc.client), "/gate")
    assert status == 200
    # TLS 1.2 too
    status, h = get(srv.tls_port, ctx_for(cc, cc.client, tls13=False))
    assert status == 302 and h["x-verify"] == "SUCCESS"
    assert h["x-proto"] == "TLSv1.2"


def test_required_refusals_and_alerts(srv, cc):
    # TLS 1.3 without a certificate: certificate_required
    err = tls_error(srv.tls_port, ctx_for(cc))
    assert "CERTIFICATE_REQUIRED" in err.upper(), err
    # one from a CA the listener does not trust: unknown_ca
    err = tls_error(srv.tls_port, ctx_for(cc, cc.stranger))
    assert "UNKNOWN_CA" in err.upper() or "unknown ca" in err, err
    # an expired one: certificate_expired
    err = tls_error(srv.tls_port, ctx_for(cc, cc.expired))
    assert "EXPIRED" in err.upper(), err
    # TLS 1.2 without a certificate: handshake_failure
    err = tls_error(srv.tls_port, ctx_for(cc, tls13=False))
    assert "HANDSHAKE_FAILURE" in err.upper(), err
    # the server logged why, at info level
    assert srv.wait_log(r"SSL_do_handshake\(\) failed: .*certificate")


def test_s_client_sees_ca_names_and_alert(srv, cc):
    sc = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.tls_port,
         "-servername", "example.com", "-CAfile", cc.ca.crt, "-tls1_3",
         "-ign_eof"],
        input=b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        capture_output=True, timeout=scaled(30))
    text = sc.stdout.decode() + sc.stderr.decode()
    assert "Acceptable client certificate CA names" in text, text
    assert "CN = Client CA" in text or "CN=Client CA" in text, text
    assert "alert certificate required" in text, text
    sc = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.tls_port,
         "-servername", "example.com", "-CAfile", cc.ca.crt,
         "-cert", cc.client.crt, "-key", cc.client.key, "-ign_eof"],
        input=b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        capture_output=True, timeout=scaled(30))
    text = sc.stdout.decode()
    assert "HTTP/1.1 302" in text and "X-Verify: SUCCESS" in text, text


def test_curl_with_client_certificate(srv, cc):
    out = subprocess.run(
        ["curl", "--http1.1", "-sS", "-o", "/dev/null", "-D", "-", "--cacert", cc.ca.crt,
         "--cert", cc.client.crt, "--key", cc.client.key, "--resolve",
         "example.com:%d:127.0.0.1" % srv.tls_port,
         "https://example.com:%d/gate" % srv.tls_port],
        capture_output=True, timeout=scaled(30))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"HTTP/1.1 200"), out.stdout


def test_optional(srv, cc):
    apply(srv, {"mode": "optional", "ca": ["otherca", "clientca"]})
    status, h = get(srv.tls_port, ctx_for(cc))
    assert status == 302
    assert h["x-verify"] == "NONE"
    assert h["x-subject"] == "" and h["location"] == "/who/"
    assert get(srv.tls_port, ctx_for(cc), "/gate")[0] == 403
    # both CAs of the array are trusted
    for cert in (cc.client, cc.stranger):
        status, h = get(srv.tls_port, ctx_for(cc, cert))
        assert h["x-verify"] == "SUCCESS", cert.name
    # an expired certificate still ends the handshake
    err = tls_error(srv.tls_port, ctx_for(cc, cc.expired))
    assert "EXPIRED" in err.upper(), err


def test_optional_no_verify_reaches_routes(srv, cc):
    apply(srv, {"mode": "optional_no_verify", "ca": "clientca"})
    status, h = get(srv.tls_port, ctx_for(cc, cc.stranger))
    assert status == 302
    # the last error the check found, as nginx's $ssl_client_verify
    assert h["x-verify"] == ("FAILED:unable to verify the first "
                             "certificate"), h
    assert h["x-subject"] == "CN=stranger.test,O=Wharf Tests,C=FR"
    assert get(srv.tls_port, ctx_for(cc, cc.stranger), "/gate")[0] == 403
    status, h = get(srv.tls_port, ctx_for(cc, cc.expired))
    assert h["x-verify"] == "FAILED:certificate has expired"
    status, h = get(srv.tls_port, ctx_for(cc, cc.client))
    assert h["x-verify"] == "SUCCESS"
    assert get(srv.tls_port, ctx_for(cc, cc.client), "/gate")[0] == 200
    # without a CA nothing can verify, and nothing is refused
    apply(srv, {"mode": "optional_no_verify"})
    status, h = get(srv.tls_port, ctx_for(cc, cc.client))
    assert status == 302 and h["x-verify"].startswith("FAILED:"), h
    assert h["x-fp"] == fingerprint_of(cc.client)
    assert get(srv.tls_port, ctx_for(cc))[1]["x-verify"] == "NONE"


def test_without_client_certificate_and_plain(srv, cc):
    apply(srv, None)
    # a listener that asks for none: the client_* variables are absent
    status, h = get(srv.tls_port, ctx_for(cc, cc.client))
    assert status == 302
    assert h["x-verify"] == "" and h["x-subject"] == ""
    assert h["x-proto"] == "TLSv1.3" and h["x-sni"] == "example.com"
    # no SNI: $tls_sni is absent
    ctx = ctx_for(cc)
    ctx.check_hostname = False
    status, h = get(srv.tls_port, ctx, sni=None)
    assert h["x-sni"] == "" and h["x-proto"] == "TLSv1.3"
    # a plain listener: all absent
    with socket.create_connection(("127.0.0.1", srv.port),
                                  timeout=scaled(10)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert b"\r\nX-Proto: \r\n" in data and b"\r\nX-Verify: \r\n" in data


def test_access_log(srv, cc, tmp_path):
    log = tmp_path / "access.log"
    fmt = "$tls_protocol [$tls_client_verify] [$tls_client_subject] $status"
    apply(srv, {"ca": "clientca", "mode": "optional"},
          access_log={"path": str(log), "format": fmt})
    get(srv.tls_port, ctx_for(cc, cc.client), "/if")
    get(srv.tls_port, ctx_for(cc), "/if")
    with socket.create_connection(("127.0.0.1", srv.port),
                                  timeout=scaled(10)) as s:
        s.sendall(b"GET /if HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
    want = [b"TLSv1.3 [SUCCESS] [CN=client.test,O=Wharf Tests,C=FR] 204",
            b"TLSv1.3 [NONE] [-] 204",
            b"- [-] [-] 204"]
    deadline = time.monotonic() + scaled(10)
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert log.read_bytes().splitlines() == want
    apply(srv, {"ca": "clientca"})  # the log's fd goes


def test_proxy_forward_client_cert(srv, cc):
    b = RawBackend(lambda req, sock: response(200, b"from backend"))
    try:
        proxy = {"proxy": b.url, "proxy_settings": {
            "forward_client_cert": True, "host": "$tls_client_serial"}}
        plain = [{"action": proxy}]
        conf = conf_for(srv, {"ca": "clientca", "mode": "optional"},
                        plain_routes=plain)
        r = srv.api().request("PUT", "/config", conf)
        assert r.status == 200, r
        raw = socket.create_connection(("127.0.0.1", srv.tls_port),
                                       timeout=scaled(10))
        with ctx_for(cc, cc.client).wrap_socket(
                raw, server_hostname="example.com") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                      b"X-Client-Verify: SUCCESS\r\n"
                      b"X-Client-Subject: CN=forged\r\n\r\n")
            while s.recv(65536):
                pass
        req = b.requests[-1]
        assert req.header_all("x-client-verify") == ["SUCCESS"]
        assert req.header_all("x-client-subject") == [
            "CN=client.test,O=Wharf Tests,C=FR"]
        assert req.header("x-client-issuer") == \
            "CN=Client CA,O=Wharf Tests,C=FR"
        assert req.header("x-client-serial") == serial_of(cc.client)
        assert req.header("x-client-fingerprint") == fingerprint_of(cc.client)
        assert req.header("host") == serial_of(cc.client)
        # no certificate: NONE, and the forged fields are still dropped
        raw = socket.create_connection(("127.0.0.1", srv.tls_port),
                                       timeout=scaled(10))
        with ctx_for(cc).wrap_socket(raw, server_hostname="example.com") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                      b"X-Client-Subject: CN=forged\r\n\r\n")
            while s.recv(65536):
                pass
        req = b.requests[-1]
        assert req.header_all("x-client-verify") == ["NONE"]
        assert req.header("x-client-subject") is None
        # a plain connection sends none of them and drops the client's
        with socket.create_connection(("127.0.0.1", srv.port),
                                      timeout=scaled(10)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                      b"X-Client-Verify: SUCCESS\r\n\r\n")
            while s.recv(65536):
                pass
        req = b.requests[-1]
        assert req.header("x-client-verify") is None
        apply(srv, {"ca": "clientca"})
    finally:
        b.stop()


@pytest.mark.parametrize("client,detail", [
    ({"mode": "required"}, 'Required parameter "ca" is missing.'),
    ({"ca": "nope"}, 'Certificate "nope" is not found.'),
    ({"ca": []}, 'The "ca" array must contain at least one element.'),
    ({"ca": [1]}, 'The "ca" array must contain only string values.'),
    ({"ca": "clientca", "mode": "on"},
     'The "mode" must be "required", "optional" or "optional_no_verify".'),
    ({"ca": "clientca", "depth": 101},
     'The "depth" number must be between 0 and 100.'),
    ({"ca": "clientca", "verify": True}, 'Unknown parameter "verify".'),
])
def test_validation(srv, client, detail):
    r = srv.api().request("PUT", "/config", conf_for(srv, client))
    assert r.status == 400
    assert r.json["detail"] == detail, r.json


def test_depth(srv, cc, tmp_path):
    # a client under an intermediate: depth 0 refuses it, 1 (the default)
    # takes it
    inter = make_cert(tmp_path, "inter", "Intermediate CA", ca=True,
                      issuer=cc.client_ca)
    leaf = make_cert(tmp_path, "leaf", "deep.client.test", issuer=inter,
                     ec=True)
    chain = tmp_path / "leafchain.crt"
    chain.write_bytes(leaf.crt_pem() + inter.crt_pem())
    ctx = ssl.create_default_context(cafile=cc.ca.crt)
    ctx.load_cert_chain(str(chain), leaf.key)
    apply(srv, {"ca": "clientca", "depth": 0})
    err = tls_error(srv.tls_port, ctx)
    assert "ALERT" in err.upper(), err
    apply(srv, {"ca": "clientca"})
    status, h = get(srv.tls_port, ctx)
    assert h["x-verify"] == "SUCCESS"
    assert h["x-issuer"] == "CN=Intermediate CA,O=Wharf Tests,C=FR"


def test_resumed_session_keeps_client_facts(srv, cc):
    apply(srv, {"ca": "clientca"},
          session={"cache_size": 100, "tickets": True})
    ctx = ctx_for(cc, cc.client, tls13=False)
    raw = socket.create_connection(("127.0.0.1", srv.tls_port),
                                   timeout=scaled(10))
    with ctx.wrap_socket(raw, server_hostname="example.com") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
        session = s.session
    raw = socket.create_connection(("127.0.0.1", srv.tls_port),
                                   timeout=scaled(10))
    with ctx.wrap_socket(raw, server_hostname="example.com",
                         session=session) as s:
        assert s.session_reused
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert b"X-Verify: SUCCESS\r\n" in data, data
    assert b"X-Subject: CN=client.test,O=Wharf Tests,C=FR\r\n" in data


def test_server_chain_is_the_bundle(srv, cc):
    """The client CAs are the context's store: a server certificate whose
    issuer is among them still goes out as its bundle says (no chain built
    from the store per handshake)."""
    api = srv.api()
    assert api.request("PUT", "/certificates/leafonly",
                       cc.set.rsa.bundle()).status == 200
    assert api.request("PUT", "/certificates/srvca",
                       cc.ca.crt_pem()).status == 200
    conf = conf_for(srv, {"ca": ["clientca", "srvca"]})
    conf["listeners"]["127.0.0.1:%d" % srv.tls_port]["tls"]["certificate"] = \
        "leafonly"
    assert api.request("PUT", "/config", conf).status == 200
    sc = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % srv.tls_port,
         "-servername", "example.com", "-showcerts",
         "-cert", cc.client.crt, "-key", cc.client.key],
        input=b"", capture_output=True, timeout=scaled(30))
    text = sc.stdout.decode()
    assert text.count("-----BEGIN CERTIFICATE-----") == 1, text
    apply(srv, {"ca": "clientca"})
