"""Unit's certificate store through the real control socket: PUT a PEM
bundle (key and chain in any order), GET Unit's JSON (key type and size,
subject, issuer, validity, alt names) at every depth, the refusals with
Unit's titles (a bad bundle, a mismatched key, a broken chain, a name that
exists, a bad name), DELETE (and its refusal while a listener names the
certificate), GET / with "certificates", and the store in
STATEDIR/certs/ (root's, 0600) kept across a restart."""

import os
import stat

import pytest

from lib.certs import CertSet
from lib.configs import return_config
from lib.wharf import free_port


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return CertSet(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server(wharf):
    return wharf(return_config(200))


def put_cert(api, name, data):
    return api.request("PUT", "/certificates/" + name, data)


def test_put_get_delete(server, certs):
    api = server.api()
    r = put_cert(api, "rsa", certs.rsa.bundle(certs.ca))
    assert r.status == 200, r
    assert r.json == {"success": "Certificate chain uploaded."}
    info = api.get("/certificates/rsa").json
    assert info["key"] == "RSA (2048 bits)"
    chain = info["chain"]
    assert len(chain) == 2
    subject = chain[0]["subject"]
    assert subject == {"common_name": "example.com",
                       "alt_names": ["example.com", "www.example.com"],
                       "country": "FR", "organization": "Wharf Tests"}
    assert list(subject)[:2] == ["common_name", "alt_names"]
    assert chain[0]["issuer"]["common_name"] == "Wharf Test CA"
    assert chain[1]["subject"]["common_name"] == "Wharf Test CA"
    assert set(chain[0]["validity"]) == {"since", "until"}
    assert chain[0]["validity"]["until"].endswith(" GMT")
    # paths inside a certificate, as Unit walks them
    assert api.get("/certificates/rsa/key").json == "RSA (2048 bits)"
    assert api.get("/certificates/rsa/chain/0/subject/common_name").json \
        == "example.com"
    r = api.get("/certificates/rsa/chain/5")
    assert r.status == 404 and r.json == {"error": "Invalid path."}
    # every certificate, and GET /
    assert put_cert(api, "ec", certs.ec.key_pem() + certs.ec.crt_pem()) \
        .status == 200
    everything = api.get("/certificates").json
    assert set(everything) == {"rsa", "ec"}
    assert everything["ec"]["key"] == "ECDH"
    assert api.get("/").json["certificates"] == everything
    # names are compared without case, as in Unit
    assert api.get("/certificates/RSA").json == info
    r = api.delete("/certificates/rsa")
    assert r.status == 200 and r.json == {"success": "Certificate deleted."}
    r = api.get("/certificates/rsa")
    assert r.status == 404
    assert r.json == {"error": "Certificate doesn't exist."}
    r = api.delete("/certificates/rsa")
    assert r.status == 404
    assert not os.path.exists(os.path.join(server.statedir, "certs", "rsa"))


def test_expired_and_self_signed_are_stored(server, certs):
    """Unit stores what parses; validity is shown, not enforced."""
    api = server.api()
    assert put_cert(api, "old", certs.expired.bundle()).status == 200
    validity = api.get("/certificates/old/chain/0/validity").json
    assert validity == {"since": "Jan  1 00:00:00 2020 GMT",
                        "until": "Feb  1 00:00:00 2020 GMT"}


@pytest.mark.parametrize("case,detail", [
    ("key only", "no certificates found"),
    ("mismatched key", "the private key does not match the first "
     "certificate"),
    ("broken chain", "certificate 2 is not the issuer of certificate 1"),
    ("two keys", "multiple private keys in PEM"),
    ("garbage", "no key found"),
    ("truncated", "the PEM text is malformed"),
])
def test_invalid_bundles(server, certs, case, detail):
    data = {
        "key only": certs.rsa.key_pem(),
        "mismatched key": certs.rsa.crt_pem() + certs.other.key_pem(),
        "broken chain": certs.rsa.crt_pem() + certs.other.crt_pem()
        + certs.rsa.key_pem(),
        "two keys": certs.rsa.bundle() + certs.ec.key_pem(),
        "garbage": b"\x00\xff not a PEM bundle",
        "truncated": certs.rsa.bundle()[:200],
    }[case]
    api = server.api()
    r = put_cert(api, "bad", data)
    assert r.status == 400, r
    assert r.json == {"error": "Invalid certificate.", "detail": detail}
    assert api.get("/certificates").json == {}
    assert not os.path.exists(os.path.join(server.statedir, "certs", "bad"))


def test_certificates_without_key_are_a_ca_bundle(server, certs):
    """Wharf's: a bundle of certificates without a key is stored for
    client_certificate's "ca" (Unit refuses it with "no key found"); it is
    described without "key", and a listener cannot serve it."""
    api = server.api()
    body = certs.other.crt_pem() + certs.ca.crt_pem()
    assert put_cert(api, "cas", body).status == 200
    info = api.get("/certificates/cas").json
    assert "key" not in info
    assert [c["subject"]["common_name"] for c in info["chain"]] == [
        "other.test", "Wharf Test CA"]
    r = api.request("PUT", "/config", {
        "listeners": {"127.0.0.1:%d" % server.port: {
            "pass": "routes", "tls": {"certificate": "cas"}}},
        "routes": []})
    assert r.status == 400
    assert r.json["detail"] == ('Certificate "cas" cannot be loaded: '
                                'no key found.')


def test_refusals(server, certs):
    api = server.api()
    assert put_cert(api, "a", certs.ec.bundle()).status == 200
    r = put_cert(api, "A", certs.rsa.bundle())
    assert r.status == 400
    assert r.json == {"error": "Certificate already exists."}
    for path in ("/certificates", "/certificates/a/b", "/certificates/.x",
                 "/certificates/a%2Fb"):
        r = api.request("PUT", path, certs.rsa.bundle())
        assert r.status == 400, (path, r)
        assert r.json == {"error": "Invalid certificate name."}
    r = api.request("POST", "/certificates/a", certs.rsa.bundle())
    assert r.status == 405 and r.json == {"error": "Invalid method."}
    r = api.request("DELETE", "/certificates")
    assert r.status == 400
    # the first upload is intact
    assert api.get("/certificates/a/key").json == "ECDH"


def test_store_files_and_restart(wharf, certs):
    server = wharf(return_config(200))
    api = server.api()
    bundle = certs.ec.bundle(certs.ca)
    assert put_cert(api, "kept", bundle).status == 200
    assert put_cert(api, "name.tmp", certs.rsa.bundle()).status == 200
    path = os.path.join(server.statedir, "certs", "kept")
    with open(path, "rb") as f:
        assert f.read() == bundle
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    st = os.stat(os.path.dirname(path))
    assert stat.S_IMODE(st.st_mode) == 0o700
    # no temporary file left behind
    assert sorted(os.listdir(os.path.dirname(path))) == ["kept", "name.tmp"]
    infos = api.get("/certificates").json
    server.stopped_by_test = True
    assert server.stop() == 0
    again = wharf(None, statedir=server.statedir)
    assert again.api().wait_ready()
    assert again.api().get("/certificates").json == infos


def test_invalid_file_in_store_is_skipped(wharf, certs, tmp_path):
    statedir = tmp_path / "st"
    (statedir / "certs").mkdir(parents=True)
    (statedir / "certs" / "broken").write_bytes(b"not a bundle")
    (statedir / "certs" / "good").write_bytes(certs.ec.bundle())
    server = wharf(return_config(200), statedir=str(statedir))
    assert set(server.api().get("/certificates").json) == {"good"}
    assert server.wait_log(r'certificate "broken" .* not loaded: no key found')
