"""OCSP stapling (tls "ocsp_stapling"): a real responder (`openssl ocsp
-index ... -port`) on loopback, `openssl s_client -status` as the client.
The first client that asks starts the fetching, a responder that is down
is retried, a good response is stapled, a revoked certificate is not, and
stapling is off by default (as nginx's ssl_stapling)."""

import datetime
import os
import re
import subprocess
import time

import pytest

from lib.certs import CertSet, make_cert
from lib.configs import return_config
from lib.wharf import free_port, scaled


def x509_field(cert, flag):
    out = subprocess.run(["openssl", "x509", "-in", cert.crt, "-noout", flag],
                         capture_output=True, check=True).stdout.decode()
    return out.strip().split("=", 1)[1]


def index_line(cert, status="V"):
    """A line of `openssl ca`'s index.txt for cert."""
    end = datetime.datetime.strptime(x509_field(cert, "-enddate"),
                                     "%b %d %H:%M:%S %Y GMT")
    revoked = "250101000000Z" if status == "R" else ""
    subject = subprocess.run(
        ["openssl", "x509", "-in", cert.crt, "-noout", "-subject",
         "-nameopt", "compat"], capture_output=True,
        check=True).stdout.decode().strip().split("=", 1)[1].strip()
    return "%s\t%s\t%s\t%s\tunknown\t%s\n" % (
        status, end.strftime("%y%m%d%H%M%SZ"), revoked,
        x509_field(cert, "-serial"), subject)


class Responder:
    def __init__(self, d, ca, port, lines):
        self.index = os.path.join(str(d), "index.txt")
        with open(self.index, "w") as f:
            f.write("".join(lines))
        self.log = open(os.path.join(str(d), "ocsp.log"), "wb")
        self.proc = subprocess.Popen(
            ["openssl", "ocsp", "-index", self.index, "-port", str(port),
             "-rsigner", ca.crt, "-rkey", ca.key, "-CA", ca.crt,
             "-nmin", "10", "-ignore_err"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def ocsp_env(wharf, tmp_path):
    certs = CertSet(tmp_path / "c")
    port = free_port()
    aia = ["authorityInfoAccess=OCSP;URI:http://127.0.0.1:%d/" % port]
    leaf = make_cert(tmp_path, "stapled", "ocsp.test", sans=("ocsp.test",),
                     issuer=certs.ca, ec=True, ext=aia)
    revoked = make_cert(tmp_path, "revoked", "revoked.test",
                        sans=("revoked.test",), issuer=certs.ca, ec=True,
                        ext=aia)
    server = wharf(return_config(200))
    api = server.api()
    for name, body in (("stapled", leaf.bundle(certs.ca)),
                       ("revoked", revoked.bundle(certs.ca)),
                       ("alone", leaf.bundle())):
        assert api.request("PUT", "/certificates/" + name, body).status == 200
    server.tls_port = free_port()
    env = {"server": server, "certs": certs, "leaf": leaf,
           "revoked": revoked, "port": port, "dir": tmp_path,
           "responders": []}
    yield env
    for r in env["responders"]:
        r.stop()


def apply(server, tls):
    conf = {"listeners": {"127.0.0.1:%d" % server.tls_port:
                          {"pass": "routes", "tls": tls}},
            "routes": [{"action": {"return": 200}}]}
    r = server.api().request("PUT", "/config", conf)
    assert r.status == 200, r


def s_client(env, sni="ocsp.test"):
    sc = subprocess.run(
        ["openssl", "s_client", "-connect",
         "127.0.0.1:%d" % env["server"].tls_port, "-servername", sni,
         "-CAfile", env["certs"].ca.crt, "-status"],
        input=b"", capture_output=True, timeout=scaled(30))
    return sc.stdout.decode() + sc.stderr.decode()


def start_responder(env, lines):
    r = Responder(env["dir"], env["certs"].ca, env["port"], lines)
    env["responders"].append(r)
    return r


def wait_stapled(env, sni="ocsp.test", timeout=30):
    deadline = time.monotonic() + scaled(timeout)
    while True:
        text = s_client(env, sni)
        if "OCSP Response Status: successful" in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(text)
        time.sleep(0.3)


def test_stapled_after_a_retry(ocsp_env):
    env = ocsp_env
    server = env["server"]
    apply(server, {"certificate": ["stapled", "revoked"],
                   "ocsp_stapling": True})
    # the responder is not up yet: the first ask starts a fetch that fails
    text = s_client(env)
    assert "OCSP response: no response sent" in text, text
    assert server.wait_log(r'OCSP stapling of certificate "stapled" '
                           r'\("http://127.0.0.1:\d+/"\): the responder '
                           r'cannot be reached', timeout=scaled(20))
    start_responder(env, [index_line(env["leaf"]),
                          index_line(env["revoked"], "R")])
    text = wait_stapled(env)
    assert "Cert Status: good" in text, text
    assert re.search(r"Next Update: \w+", text), text
    assert server.wait_log(r'OCSP response for certificate "stapled" .*: '
                           r'good, \d+ bytes stapled')
    # a revoked certificate (SNI picks it) is not stapled
    s_client(env, "revoked.test")
    assert server.wait_log(r'OCSP stapling of certificate "revoked" .*: '
                           r'the certificate is revoked', timeout=scaled(20))
    text = s_client(env, "revoked.test")
    assert "OCSP response: no response sent" in text, text


def test_off_by_default_and_no_issuer(ocsp_env):
    env = ocsp_env
    server = env["server"]
    start_responder(env, [index_line(env["leaf"])])
    apply(server, {"certificate": "stapled"})
    for _ in range(3):
        assert "OCSP response: no response sent" in s_client(env)
    assert "OCSP" not in server.log_text()
    # the issuer is not in the bundle: nothing to staple, said once
    apply(server, {"certificate": "alone", "ocsp_stapling": True})
    assert server.wait_log(r'no OCSP stapling for certificate "alone": '
                           r'its issuer is not in its bundle')
    assert "OCSP response: no response sent" in s_client(env)


def test_validation(ocsp_env):
    server = ocsp_env["server"]
    conf = {"listeners": {"127.0.0.1:%d" % server.tls_port: {
        "pass": "routes",
        "tls": {"certificate": "stapled", "ocsp_stapling": "yes"}}},
        "routes": []}
    r = server.api().request("PUT", "/config", conf)
    assert r.status == 400
    assert "ocsp_stapling" in r.json["detail"], r.json
