"""Listener "forwarded" (and the older "client_ip" listener option): a
trusted peer's X-Forwarded-For replaces $remote_addr (and what "source"
matches), X-Forwarded-Proto sets the scheme, "recursive" walks the chain.

Routes answer 301 for https and 302 for http, with the client address in
the Location, so one response shows both."""

import os
import shutil
import socket
import tempfile

import pytest

from lib.rawhttp import exchange, request
from lib.wharf import refuse_config

ROUTES = [
    {"match": {"uri": "/src", "source": "1.2.3.4"},
     "action": {"return": 204}},
    {"match": {"scheme": "https"},
     "action": {"return": 301, "location": "/ip/$remote_addr"}},
    {"action": {"return": 302, "location": "/ip/$remote_addr"}},
]


def conf(forwarded, listener="127.0.0.1:{port}", key="forwarded",
         extra=None):
    listeners = {listener: {"pass": "routes", key: forwarded}}
    if extra:
        listeners.update(extra)
    return {"listeners": listeners, "routes": ROUTES}


def ask(server, xff=None, xfp=None, path="/", port_index=0, sock=None):
    """xff/xfp: a string (one field) or a list (several fields)."""
    headers = [("Connection", "close")]
    for name, value in (("X-Forwarded-For", xff),
                        ("X-Forwarded-Proto", xfp)):
        if value is None:
            continue
        for v in (value if isinstance(value, list) else [value]):
            headers.append((name, v))
    data = request(path=path, headers=headers)
    if sock is not None:
        with sock:
            return exchange(sock, data)
    with server.connect(port_index=port_index) as s:
        return exchange(s, data)


def addr_scheme(resp):
    assert resp.status in (301, 302), resp
    loc = resp.header("Location")
    assert loc.startswith("/ip/"), loc
    return loc[4:], ("https" if resp.status == 301 else "http")


def get_addr(server, *a, **kw):
    return addr_scheme(ask(server, *a, **kw))[0]


def get_scheme(server, *a, **kw):
    return addr_scheme(ask(server, *a, **kw))[1]


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


FULL = {"client_ip": "X-Forwarded-For", "protocol": "X-Forwarded-Proto"}


def fwd(source, **kw):
    d = dict(FULL)
    d["source"] = source
    d.update(kw)
    return d


# -- trusted vs untrusted ------------------------------------------------------

def test_untrusted_source_ignores_headers(wharf):
    server = wharf(conf(fwd("10.0.0.0/8")))
    assert addr_scheme(ask(server, "1.1.1.1", "https")) == ("127.0.0.1",
                                                            "http")
    assert get_addr(server) == "127.0.0.1"
    assert ask(server, "1.2.3.4", path="/src").status == 302


def test_trusted_source_replaces_addr_and_scheme(wharf):
    server = wharf(conf(fwd("127.0.0.1")))
    assert addr_scheme(ask(server, "1.1.1.1", "https")) == ("1.1.1.1",
                                                            "https")
    assert get_addr(server) == "127.0.0.1"              # no header
    assert get_addr(server, "blah") == "127.0.0.1"      # not an address
    assert get_scheme(server) == "http"
    assert get_scheme(server, xfp="on") == "https"
    assert get_scheme(server, xfp="http") == "http"
    assert get_scheme(server, xfp="blah") == "http"


def test_trusted_and_untrusted_listeners_side_by_side(wharf):
    server = wharf({
        "listeners": {
            "127.0.0.1:{port0}": {"pass": "routes",
                                  "forwarded": fwd("127.0.0.0/8")},
            "127.0.0.1:{port1}": {"pass": "routes",
                                  "forwarded": fwd(["10.0.0.0/8",
                                                    "192.168.0.0/16"])}},
        "routes": ROUTES})
    assert addr_scheme(ask(server, "5.6.7.8", "https", port_index=0)) == (
        "5.6.7.8", "https")
    assert addr_scheme(ask(server, "5.6.7.8", "https", port_index=1)) == (
        "127.0.0.1", "http")


def test_source_match_sees_forwarded_address(wharf):
    server = wharf(conf(fwd("127.0.0.1")))
    assert ask(server, "1.2.3.4", path="/src").status == 204
    assert ask(server, "1.2.3.5", path="/src").status == 302


def test_negated_source(wharf):
    server = wharf(conf(fwd("!127.0.0.1")))
    assert get_addr(server, "1.1.1.1") == "127.0.0.1"
    assert get_scheme(server, xfp="https") == "http"


def test_source_range_and_empty(wharf):
    server = wharf(conf(fwd("127.0.0.0-127.0.0.1"),
                        extra={"127.0.0.1:{port1}": {
                            "pass": "routes", "forwarded": fwd([])}}))
    assert get_addr(server, "1.1.1.1") == "1.1.1.1"
    assert get_addr(server, "1.1.1.1", port_index=1) == "127.0.0.1"
    assert get_scheme(server, xfp="https", port_index=1) == "http"


def test_client_ip_only_and_protocol_only(wharf):
    server = wharf(conf({"client_ip": "X-Forwarded-For",
                         "source": "127.0.0.1"},
                        extra={"127.0.0.1:{port1}": {
                            "pass": "routes",
                            "forwarded": {"protocol": "X-Forwarded-Proto",
                                          "source": "127.0.0.1"}}}))
    assert addr_scheme(ask(server, "1.1.1.1", "https")) == ("1.1.1.1",
                                                            "http")
    assert addr_scheme(ask(server, "1.1.1.1", "https", port_index=1)) == (
        "127.0.0.1", "https")


def test_header_names_case_insensitive(wharf):
    server = wharf(conf(fwd("127.0.0.1", client_ip="x-forwarded-for",
                            protocol="x-forwarded-proto")))
    assert get_addr(server, "1.1.1.1") == "1.1.1.1"
    assert get_scheme(server, xfp="oN") == "https"
    assert get_scheme(server, xfp="HTTPS") == "https"


def test_custom_header_names(wharf):
    server = wharf(conf(fwd("127.0.0.1", client_ip="X-Real-IP",
                            protocol="X-Scheme")))
    with server.connect() as s:
        r = exchange(s, request(headers=[("X-Real-IP", "9.9.9.9"),
                                         ("X-Scheme", "https"),
                                         ("X-Forwarded-For", "1.1.1.1"),
                                         ("Connection", "close")]))
    assert addr_scheme(r) == ("9.9.9.9", "https")


# -- lists of addresses ---------------------------------------------------------

def test_non_recursive_takes_rightmost_of_last_field(wharf):
    server = wharf(conf(fwd("127.0.0.1")))
    assert get_addr(server, "8.8.8.8, 84.23.23.11") == "84.23.23.11"
    assert get_addr(server, "8.8.8.8, 84.23.23.11, 127.0.0.1") == "127.0.0.1"
    assert get_addr(server, ["8.8.8.8", "127.0.0.1, 10.0.1.1"]) == "10.0.1.1"


def test_recursive_skips_trusted_addresses(wharf):
    server = wharf(conf({"client_ip": "X-Forwarded-For", "recursive": True,
                         "source": ["127.0.0.1", "10.50.0.17",
                                    "10.5.2.1"]}))
    assert get_addr(server, "1.1.1.1") == "1.1.1.1"
    assert get_addr(server, "1.1.1.1, 10.5.2.1") == "1.1.1.1"
    assert get_addr(server, "8.8.8.8, 1.1.1.1, 10.5.2.1") == "1.1.1.1"
    assert get_addr(server, "10.50.0.17, 10.5.2.1, 10.5.2.1") == "10.50.0.17"
    assert get_addr(server, ["8.8.8.8", "1.1.1.1, 127.0.0.1"]) == "1.1.1.1"
    assert get_addr(server, ["8.8.8.8", "1.1.1.1, 127.0.0.1",
                             "10.5.2.1"]) == "1.1.1.1"
    assert get_addr(server, ["10.5.2.1", "10.50.0.17, 1.1.1.1",
                             "10.5.2.1"]) == "1.1.1.1"
    assert get_addr(server, "8.8.8.8, 2001:db8:3c4d:15::1a2f:1a2b, "
                            "127.0.0.1") == "2001:db8:3c4d:15::1a2f:1a2b"


def test_recursive_false_is_the_default(wharf):
    server = wharf(conf({"client_ip": "X-Forwarded-For", "recursive": False,
                         "source": ["127.0.0.1", "10.5.2.1"]}))
    assert get_addr(server, "1.1.1.1, 10.5.2.1") == "10.5.2.1"


def test_ipv6_value_from_ipv4_peer(wharf):
    server = wharf(conf(fwd("127.0.0.1")))
    for ip in ("2001:db8:3c4d:15::1a2f:1a2b", "::11.22.33.44"):
        assert get_addr(server, ip) == ip


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_peer(wharf):
    server = wharf({
        "listeners": {
            "[::1]:{port0}": {"pass": "routes", "forwarded": fwd("::1")},
            "127.0.0.1:{port1}": {"pass": "routes", "forwarded": fwd("::1")}},
        "routes": ROUTES})

    def ask6(xff=None, xfp=None):
        s = socket.create_connection(("::1", server.ports[0]), timeout=10)
        return ask(server, xff, xfp, sock=s)

    assert addr_scheme(ask6()) == ("::1", "http")
    assert addr_scheme(ask6("f607:7403:1e4b:6c66:33b2:843f:2517:da27",
                            "https")) == (
        "f607:7403:1e4b:6c66:33b2:843f:2517:da27", "https")
    # the IPv4 listener's peer is not ::1
    assert addr_scheme(ask(server, "1.1.1.1", "https", port_index=1)) == (
        "127.0.0.1", "http")


def test_unix_socket_peer(wharf):
    d = tempfile.mkdtemp(prefix="wff", dir="/tmp")
    try:
        path = os.path.join(d, "f.sock")
        server = wharf(conf(fwd("unix"), extra={"unix:" + path: {
            "pass": "routes", "forwarded": fwd("unix")}}))
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(path)
        assert addr_scheme(ask(server, "1.1.1.1", "https", sock=s)) == (
            "1.1.1.1", "https")
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(path)
        assert addr_scheme(ask(server, sock=s)) == ("unix:", "http")
        # the TCP listener's peer is not a unix client
        assert get_addr(server, "1.1.1.1") == "127.0.0.1"
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- the older listener "client_ip" option -------------------------------------

def test_listener_client_ip_option(wharf):
    server = wharf(conf({"header": "X-Forwarded-For", "source": "127.0.0.1"},
                        key="client_ip"))
    assert get_addr(server, "1.1.1.1") == "1.1.1.1"
    assert get_addr(server, "blah") == "127.0.0.1"
    assert get_scheme(server, xfp="https") == "http"


def test_listener_client_ip_recursive(wharf):
    server = wharf(conf({"header": "X-Forwarded-For", "recursive": True,
                         "source": ["127.0.0.1", "10.5.2.1"]},
                        key="client_ip"))
    assert get_addr(server, "8.8.8.8, 1.1.1.1, 10.5.2.1") == "1.1.1.1"


# -- invalid configurations are refused ----------------------------------------

def refuse(tmp_path, config):
    return refuse_config(tmp_path, config)


@pytest.mark.parametrize("forwarded", [
    {"source": "127.0.0.1"},                         # neither header
    {"client_ip": "X-Forwarded-For"},                # no source
    {"client_ip": "X-Forwarded-For", "source": None},
    {"client_ip": "X-Forwarded-For", "source": "a"},
    {"client_ip": "X-Forwarded-For", "source": ["a"]},
    {"client_ip": "X-Forwarded-For", "source": "127.0.0.1",
     "recursive": "yes"},
], ids=["no-header", "no-source", "null-source", "bad-source",
        "bad-source-array", "recursive-not-bool"])
def test_invalid_forwarded_refused(tmp_path, forwarded):
    refuse(tmp_path, conf(forwarded))


def test_invalid_client_ip_option_refused(tmp_path):
    refuse(tmp_path, conf({"source": "127.0.0.1"}, key="client_ip"))
