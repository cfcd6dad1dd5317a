"""settings.http.h2 advertised and enforced, and the floods of the
HTTP/2 hardening list, each followed by a normal request that must still
be served: rapid reset (CVE-2023-44487), PING and SETTINGS floods,
empty-DATA floods, oversized header lists, CONTINUATION floods,
stream-count exhaustion, zero-window readers, malformed requests (stream
errors)."""

import socket
import struct
import subprocess
import shutil
import time

import h2.errors
import h2.settings
import pytest

from h2raw import H2Client
from lib.wharf import scaled

CURL = shutil.which("curl")


def conf(http=None):
    c = {"listeners": {"127.0.0.1:{port}": {"pass": "routes", "h2c": True}},
         "routes": [{"match": {"uri": "/big"},
                     "action": {"return": 200}},
                    {"action": {"return": 204}}]}
    if http is not None:
        c["settings"] = {"http": http}
    return c


def served(server):
    """A fresh normal client still gets its answer."""
    c = H2Client(server.port, timeout=scaled(20))
    try:
        sid = c.request("/ok")
        r = c.wait(sid)
        assert r["status"] == 204, r
    finally:
        c.close()


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def drain(sock, seconds):
    """Reads until EOF or quiet; returns the bytes."""
    sock.settimeout(seconds)
    out = b""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def goaway_codes(data):
    codes = []
    off = 0
    while off + 9 <= len(data):
        n = int.from_bytes(data[off:off + 3], "big")
        if data[off + 3] == 7 and off + 9 + 8 <= len(data):
            codes.append(int.from_bytes(data[off + 13:off + 17], "big"))
        off += 9 + n
    return codes


def test_settings_defaults_advertised(wharf):
    server = wharf(conf())
    c = H2Client(server.port)
    try:
        c.request("/x")
        c.wait(1)
        rs = c.conn.remote_settings
        assert rs.max_concurrent_streams == 128
        assert rs.initial_window_size == 65535
        assert rs.max_frame_size == 16384
        assert rs.header_table_size == 4096
        assert rs.max_header_list_size == 8192 * 4
    finally:
        c.close()


def test_settings_configured_advertised(wharf):
    server = wharf(conf({"h2": {"max_concurrent_streams": 7,
                                "initial_window_size": 100000,
                                "max_frame_size": 32768,
                                "header_table_size": 1024,
                                "max_header_list_size": 2048}}))
    c = H2Client(server.port)
    try:
        c.request("/x")
        c.wait(1)
        rs = c.conn.remote_settings
        assert (rs.max_concurrent_streams, rs.initial_window_size,
                rs.max_frame_size, rs.header_table_size,
                rs.max_header_list_size) == (7, 100000, 32768, 1024, 2048)
        # a frame as large as we allow is accepted
        sid = c.request("/x", method="POST", body=b"z" * 30000)
        assert c.wait(sid)["status"] == 204
    finally:
        c.close()


@pytest.mark.parametrize("bad", [
    {"max_concurrent_streams": 0}, {"initial_window_size": 10},
    {"max_frame_size": 100}, {"max_frame_size": 1 << 24},
    {"header_table_size": -1}, {"max_header_list_size": "x"},
    {"nope": 1}])
def test_settings_validated(wharf, bad):
    server = wharf(conf())
    r = server.api().request("PUT", "/config/settings",
                             {"http": {"h2": bad}})
    assert r.status == 400, r


def test_max_concurrent_streams_enforced(wharf):
    from lib.proxy_backends import RawBackend, response

    def slow(req, sock):
        time.sleep(1.5)
        return response(200, b"late")
    b = RawBackend(slow)
    try:
        server = wharf({"listeners": {"127.0.0.1:{port}":
                                      {"pass": "routes", "h2c": True}},
                        "routes": [{"match": {"uri": "/ok"},
                                    "action": {"return": 204}},
                                   {"action": {"proxy": b.url}}],
                        "settings": {"http": {"h2": {
                            "max_concurrent_streams": 2}}}})
        c = H2Client(server.port)
        try:
            # three streams the backend holds, sent before the client
            # heard our SETTINGS
            ids = [c.request("/slow") for _ in range(3)]
            deadline = time.monotonic() + scaled(10)
            while ids[2] not in c.resets and time.monotonic() < deadline:
                c.read_some()
            assert c.resets.get(ids[2]) in (
                h2.errors.ErrorCodes.REFUSED_STREAM,
                h2.errors.ErrorCodes.PROTOCOL_ERROR)
            assert c.wait(ids[0])["body"] == b"late"
        finally:
            c.close()
        served(server)
    finally:
        b.stop()


def test_header_list_too_big_is_a_stream_error(wharf):
    server = wharf(conf({"h2": {"max_header_list_size": 2048}}))
    c = H2Client(server.port)
    try:
        sid = c.request("/x", headers=[("x-big", "v" * 3000)])
        r = c.wait(sid)
        assert sid in c.resets or r["status"] == 431, r
        sid = c.request("/x")
        assert c.wait(sid)["status"] == 204  # the connection lives on
    finally:
        c.close()
    served(server)


@pytest.mark.parametrize("headers", [
    [("connection", "keep-alive")],
    [("transfer-encoding", "chunked")],
    [("te", "gzip")],
    [(":foo", "x")],
    [("upgrade", "websocket")],
])
def test_malformed_requests_are_stream_errors(wharf, headers):
    server = wharf(conf())
    c = H2Client(server.port)
    try:
        c.conn.config.validate_outbound_headers = False
        c.conn.config.normalize_outbound_headers = False
        sid = c.request("/x", headers=headers)
        r = c.wait(sid)
        assert sid in c.resets or r["status"] == 400, (r, c.resets)
        if sid in c.resets:
            assert c.resets[sid] == h2.errors.ErrorCodes.PROTOCOL_ERROR
    finally:
        c.close()
    served(server)


def test_rapid_reset_gets_enhance_your_calm(wharf):
    server = wharf(conf())
    c = H2Client(server.port)
    try:
        data = b""
        sid = 1
        for _ in range(1000):
            c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                      (":authority", "x"), (":path", "/")])
            c.conn.reset_stream(sid)
            sid += 2
            data += c.conn.data_to_send()
        try:
            c.send_raw(data)
        except OSError:
            pass
        got = drain(c.sock, scaled(5))
        assert 11 in goaway_codes(got)  # ENHANCE_YOUR_CALM
    finally:
        c.close()
    served(server)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# A literal never-indexed "x-a: aaaa..." field, for CONTINUATIONs.
CONT_FIELD = b"\x10\x03x-a\x7f\x81\x01" + b"a" * 255

# What each flood sends after the preface; the client never reads.
FLOODS = {
    # PINGs whose ACKs are never read
    "ping": frame(4, 0, 0) + frame(6, 0, 0, b"12345678") * 20000,
    # SETTINGS frames, each to be ACKed
    "settings": frame(4, 0, 0, struct.pack(">HI", 3, 100)) * 20000,
    # a POST's HEADERS, then empty DATA frames without END_STREAM
    "empty_data": frame(4, 0, 0) + frame(1, 4, 1, b"\x83\x86\x84")
    + frame(0, 0, 1) * 50000,
    # HEADERS without END_HEADERS, then endless CONTINUATIONs
    "continuation": frame(4, 0, 0) + frame(1, 0, 1, b"\x82\x86\x84")
    + frame(9, 0, 1, CONT_FIELD) * 4000,
}


@pytest.mark.parametrize("name", sorted(FLOODS))
def test_flood_then_served(wharf, name):
    """Each flood on a raw socket, then a normal client is served."""
    server = wharf(conf())
    s = socket.create_connection(("127.0.0.1", server.port),
                                 timeout=scaled(10))
    try:
        try:
            s.sendall(PREFACE + FLOODS[name])
        except OSError:
            pass  # the server may cut the flood off
        drain(s, 2)
    finally:
        s.close()
    served(server)


def test_stream_exhaustion_many_connections(wharf):
    """Connections each holding every stream they may open (at a backend
    that answers late) do not keep a new client from being served."""
    from lib.proxy_backends import RawBackend, response

    def slow(req, sock):
        time.sleep(2)
        return response(200, b"late")
    b = RawBackend(slow)
    clients = []
    try:
        server = wharf({"listeners": {"127.0.0.1:{port}":
                                      {"pass": "routes", "h2c": True}},
                        "routes": [{"match": {"uri": "/ok"},
                                    "action": {"return": 204}},
                                   {"action": {"proxy": b.url}}],
                        "settings": {"http": {"h2": {
                            "max_concurrent_streams": 8}}}})
        for _ in range(6):
            c = H2Client(server.port)
            for _ in range(8):
                c.request("/slow")
            clients.append(c)
        served(server)  # while 48 streams wait at the backend
    finally:
        for c in clients:
            c.close()
        b.stop()


def test_zero_window_reader(wharf, docroot):
    """A client that opens no window holds only bounded memory and is cut
    off by send_timeout; others are served meanwhile."""
    big = docroot / "big.bin"
    big.write_bytes(b"b" * (8 * 1024 * 1024))
    server = wharf({"listeners": {"127.0.0.1:{port}":
                                  {"pass": "routes", "h2c": True}},
                    "routes": [{"match": {"uri": "/ok"},
                                "action": {"return": 204}},
                               {"action": {"share": str(docroot) + "$uri"}}],
                    "settings": {"http": {"send_timeout": 2}}})
    c = H2Client(server.port, settings={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    try:
        for _ in range(10):
            c.request("/big.bin")
        time.sleep(0.5)
        served(server)
    finally:
        c.close()
