"""WebSocket conformance: the core case groups of the Autobahn test suite
(1 framing, 2 ping/pong, 3 reserved bits, 4 opcodes, 5 fragmentation,
6 UTF-8, 7 closing), played by a raw client against an ASGI echo app
(apps/asgi/websocket.py, /echo) through the whole server.

Each case sends frames and checks what comes back: the echo of every
message, a Pong for every Ping, and for a protocol violation a Close with
the code RFC 6455 requires (1002 protocol error, 1007 invalid payload)
followed by the end of the connection."""

import os
import struct

import pytest

from lib.wharf import scaled

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "asgi")

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module's cases (the `wharf` fixture is per
    test), stopped here; it must survive every case."""
    from lib.wharf import Wharf, WHARF_BIN
    if not WHARF_BIN or not os.access(WHARF_BIN, os.X_OK):
        pytest.skip("WHARF_BIN is not an executable")
    srv = Wharf(tmp_path_factory.mktemp("ws-conformance"), {
        "listeners": {"127.0.0.1:{port}": {"pass": "applications/ws"}},
        "applications": {"ws": {"type": "python", "path": APPS,
                                "module": "websocket"}},
    })
    srv.start()
    yield srv
    alive = srv.alive()
    bad = srv.bad_log_lines()
    srv.stop()
    assert alive and not bad, bad


def frame(opcode, payload=b"", fin=True, rsv=0, mask=b"\x37\xfa\x21\x3d"):
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + mask + body


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Peer:
    """A raw WebSocket client over one connection."""

    def __init__(self, server):
        self.s = server.connect()
        self.s.settimeout(scaled(20))
        self.s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                       b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head

    def _recv(self):
        chunk = self.s.recv(1 << 16)
        if not chunk:
            raise EOFError
        return chunk

    def _need(self, n):
        while len(self.buf) < n:
            self.buf += self._recv()

    def send(self, *frames):
        self.s.sendall(b"".join(frames))

    def read(self):
        """The next server frame: (fin, rsv, opcode, payload)."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "a server frame must not be masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload

    def message(self):
        """The next data message, reassembled; Pongs are skipped."""
        fin, rsv, op, data = self.read()
        while op == PONG:
            fin, rsv, op, data = self.read()
        assert rsv == 0
        first = op
        while not fin:
            fin, rsv, op, more = self.read()
            assert op == CONT
            data += more
        return first, data

    def expect_close(self, *codes):
        """A Close with one of codes (None: no code), then EOF once ours
        went back."""
        while True:
            fin, rsv, op, data = self.read()
            if op == CLOSE:
                break
            assert op in (PONG, TEXT, BINARY, CONT), op
        code = struct.unpack("!H", data[:2])[0] if data else None
        assert code in codes, (code, data)
        try:
            self.send(frame(CLOSE, data[:2]))
        except OSError:
            pass
        self.expect_eof()
        return code

    def expect_eof(self):
        try:
            while True:
                self._recv()
        except (EOFError, ConnectionResetError):
            pass
        self.s.close()

    def close(self):
        self.send(frame(CLOSE, close_payload(1000)))
        self.expect_close(1000)


# ---- 1: framing --------------------------------------------------------

@pytest.mark.parametrize("n", [0, 125, 126, 127, 128, 65535, 65536])
@pytest.mark.parametrize("op", [TEXT, BINARY])
def test_1_framing_payload_lengths(server, op, n):
    p = Peer(server)
    payload = b"*" * n if op == TEXT else bytes(i & 0xFF for i in range(n))
    p.send(frame(op, payload))
    assert p.message() == (op, payload)
    p.close()


def test_1_framing_written_byte_by_byte(server):
    p = Peer(server)
    for b in frame(TEXT, b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4"):
        p.s.sendall(bytes([b]))
    assert p.message() == (TEXT, "Hello-µ@ßöä".encode())
    p.close()


# ---- 2: ping and pong ----------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"Hello, world!", b"\x00\xff\xfe\xfd",
                                     b"*" * 125])
def test_2_ping_gets_a_pong_with_its_payload(server, payload):
    p = Peer(server)
    p.send(frame(PING, payload))
    assert p.read() == (True, 0, PONG, payload)
    p.close()


def test_2_ping_over_125_bytes_is_a_protocol_error(server):
    p = Peer(server)
    p.send(frame(PING, b"*" * 126))
    assert p.expect_close(1002) == 1002


def test_2_unsolicited_pong_is_ignored(server):
    p = Peer(server)
    p.send(frame(PONG, b"unsolicited"), frame(TEXT, b"after"))
    assert p.message() == (TEXT, b"after")
    p.close()


def test_2_ten_pings_get_ten_pongs(server):
    p = Peer(server)
    p.send(*[frame(PING, b"ping %d" % i) for i in range(10)])
    for i in range(10):
        assert p.read() == (True, 0, PONG, b"ping %d" % i)
    p.close()


def test_2_fragmented_ping_is_a_protocol_error(server):
    p = Peer(server)
    p.send(frame(PING, b"frag", fin=False))
    assert p.expect_close(1002) == 1002


# ---- 3: reserved bits ----------------------------------------------------

@pytest.mark.parametrize("rsv", range(1, 8))
def test_3_reserved_bits_fail_the_connection(server, rsv):
    p = Peer(server)
    p.send(frame(TEXT, b"with rsv", rsv=rsv))
    assert p.expect_close(1002) == 1002


def test_3_reserved_bits_after_a_good_message(server):
    p = Peer(server)
    p.send(frame(TEXT, b"good"), frame(TEXT, b"bad", rsv=2))
    assert p.message() == (TEXT, b"good")
    assert p.expect_close(1002) == 1002


# ---- 4: opcodes ----------------------------------------------------------

@pytest.mark.parametrize("op", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_4_reserved_opcodes_fail_the_connection(server, op):
    p = Peer(server)
    p.send(frame(op, b"reserved"))
    assert p.expect_close(1002) == 1002


# ---- 5: fragmentation ----------------------------------------------------

def test_5_fragments_are_one_message(server):
    p = Peer(server)
    p.send(frame(TEXT, b"frag", fin=False), frame(CONT, b"ment", fin=False),
           frame(CONT, b"ed"))
    assert p.message() == (TEXT, b"fragmented")
    p.close()


def test_5_ping_between_fragments(server):
    p = Peer(server)
    p.send(frame(BINARY, b"\x01", fin=False), frame(PING, b"mid"),
           frame(CONT, b"\x02"))
    assert p.read() == (True, 0, PONG, b"mid")
    assert p.message() == (BINARY, b"\x01\x02")
    p.close()


def test_5_continuation_without_a_start_fails(server):
    p = Peer(server)
    p.send(frame(CONT, b"orphan"))
    assert p.expect_close(1002) == 1002


def test_5_new_message_inside_a_fragmented_one_fails(server):
    p = Peer(server)
    p.send(frame(TEXT, b"one", fin=False), frame(TEXT, b"two"))
    assert p.expect_close(1002) == 1002


def test_5_many_empty_fragments(server):
    p = Peer(server)
    p.send(frame(TEXT, b"", fin=False),
           *[frame(CONT, b"", fin=False) for _ in range(50)],
           frame(CONT, b"end"))
    assert p.message() == (TEXT, b"end")
    p.close()


# ---- 6: UTF-8 ------------------------------------------------------------

VALID_UTF8 = ["κόσμε", "\u0080", "\u07ff", "\u0800", "\uffff", "\U00010000",
              "\U0010ffff", "Hello-µ@ßöä-üàá-UTF-8!!"]

INVALID_UTF8 = [
    b"\x80",                  # a lone continuation byte
    b"\xc0\xaf",              # overlong '/'
    b"\xe0\x80\xaf",          # overlong, three bytes
    b"\xed\xa0\x80",          # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",      # past U+10FFFF
    b"\xfe",                  # never valid
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
]


@pytest.mark.parametrize("text", VALID_UTF8)
def test_6_valid_utf8_is_echoed(server, text):
    p = Peer(server)
    data = text.encode()
    p.send(frame(TEXT, data))
    assert p.message() == (TEXT, data)
    p.close()


def test_6_valid_utf8_split_inside_a_character(server):
    p = Peer(server)
    data = "κόσμε".encode()
    p.send(frame(TEXT, data[:1], fin=False), frame(CONT, data[1:4], fin=False),
           frame(CONT, data[4:]))
    assert p.message() == (TEXT, data)
    p.close()


@pytest.mark.parametrize("data", INVALID_UTF8)
def test_6_invalid_utf8_fails_with_1007(server, data):
    p = Peer(server)
    p.send(frame(TEXT, data))
    assert p.expect_close(1007) == 1007


def test_6_invalid_utf8_in_a_later_fragment(server):
    p = Peer(server)
    p.send(frame(TEXT, "κόσμε".encode(), fin=False), frame(CONT, b"\xed\xa0\x80"))
    assert p.expect_close(1007) == 1007


# ---- 7: closing ----------------------------------------------------------

@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                  1010, 1011, 3000, 3999, 4000, 4999])
def test_7_valid_close_codes_are_echoed(server, code):
    p = Peer(server)
    p.send(frame(CLOSE, close_payload(code, b"reason")))
    fin, rsv, op, data = p.read()
    assert op == CLOSE and struct.unpack("!H", data[:2])[0] == code
    p.expect_eof()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100,
                                  2000, 2999, 5000, 65535])
def test_7_invalid_close_codes_get_1002(server, code):
    p = Peer(server)
    p.send(frame(CLOSE, close_payload(code)))
    fin, rsv, op, data = p.read()
    assert op == CLOSE and struct.unpack("!H", data[:2])[0] == 1002
    p.expect_eof()


def test_7_close_without_payload(server):
    p = Peer(server)
    p.send(frame(CLOSE))
    fin, rsv, op, data = p.read()
    assert op == CLOSE and data in (b"", close_payload(1000))
    p.expect_eof()


def test_7_close_with_one_byte_payload_gets_1002(server):
    p = Peer(server)
    p.send(frame(CLOSE, b"\x03"))
    fin, rsv, op, data = p.read()
    assert op == CLOSE and struct.unpack("!H", data[:2])[0] == 1002
    p.expect_eof()


def test_7_close_reason_must_be_utf8(server):
    p = Peer(server)
    p.send(frame(CLOSE, close_payload(1000, b"\xce\xba\xed\xa0\x80")))
    fin, rsv, op, data = p.read()
    assert op == CLOSE and struct.unpack("!H", data[:2])[0] == 1007
    p.expect_eof()


def test_7_nothing_is_answered_after_the_close(server):
    p = Peer(server)
    p.send(frame(CLOSE, close_payload(1000)), frame(TEXT, b"after close"),
           frame(PING, b"after close"))
    fin, rsv, op, data = p.read()
    assert op == CLOSE
    p.expect_eof()
    assert p.buf == b""
