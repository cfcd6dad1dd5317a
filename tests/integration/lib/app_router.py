"""A scripted router for one app process: the test holds the router's end
of a real SOCK_SEQPACKET socketpair and speaks the wire format of
src/apps/app_proto.h (the port's 24-byte header and fragments) to the
real runtime and language module, run by build/app-host.  Used where the
whole pipeline (main spawning, the router's exchange) is not needed or not
there yet."""

import json
import os
import select
import socket
import struct
import subprocess

HDR = struct.Struct("<QIIIHBB")  # process/port.h: wf_port_hdr_t
PORT_VERSION = 1
HDR_MORE, HDR_CONT = 0x1, 0x2

(READY, REQ_HEAD, REQ_BODY, REQ_END, REQ_ABORT, REQ_ACK, RESP_HEAD,
 RESP_BODY, RESP_FILE, RESP_END, RESP_ACK) = range(100, 111)

MAX_SIZE = 64 * 1024
WINDOW = 256 * 1024
REQ_BODY_END, REQ_TLS, REQ_UPGRADE = 0x1, 0x2, 0x4
# wf_app_resp_hdr_t.flags: RESP_DONE (with RESP_END_FLAG) stands for a
# RESP_END with 0 that does not follow.
RESP_END_FLAG, RESP_DONE = 0x1, 0x2


def resp_done(type_, payload):
    """Is this a RESP_HEAD that ends its request (WF_APP_RESP_DONE)?"""
    return (type_ == RESP_HEAD and len(payload) >= 16
            and struct.unpack("<I", payload[4:8])[0] & RESP_DONE != 0)
LEN_NONE = 2 ** 64 - 1
TIMEOUT = 30  # seconds: generous, the machine is shared


def _str(b):
    if isinstance(b, str):
        b = b.encode("latin-1")
    padded = (len(b) + 1 + 3) & ~3
    return struct.pack("<I", len(b)) + b + b"\0" * (padded - len(b))


class Response:
    def __init__(self):
        self.status = None
        self.headers = []
        self.body = b""
        self.end = None  # RESP_END's code: 0 complete, 1 cut short

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class AppProcess:
    """One app process (app-host) and the router's end of its socket."""

    def __init__(self, host, module_so, conf, log_path, env=None):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX,
                                              socket.SOCK_SEQPACKET)
        theirs.set_inheritable(True)
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [host, module_so, json.dumps(conf), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdout=self.log, stderr=self.log,
            env=env)
        theirs.close()
        self.stream = 0
        self.pending = []
        self.inflight = {}

    # ---- framing ----------------------------------------------------------

    def send(self, type_, stream, payload=b""):
        off, total = 0, len(payload)
        while True:
            n = min(MAX_SIZE, total - off)
            flags = (HDR_CONT if off else 0) | \
                (HDR_MORE if off + n < total else 0)
            self.sock.sendmsg([HDR.pack(stream, type_, n, total, flags, 0,
                                        PORT_VERSION),
                               payload[off:off + n]])
            off += n
            if off >= total:
                return

    def _recv_raw(self, timeout):
        payload, first = b"", None
        while True:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                raise TimeoutError("no message from the app process")
            data, anc, _, _ = self.sock.recvmsg(MAX_SIZE + HDR.size,
                                                socket.CMSG_SPACE(16))
            if not data:
                raise EOFError("the app process closed its socket")
            stream, type_, size, total, flags, nfds, ver = \
                HDR.unpack(data[:HDR.size])
            assert ver == PORT_VERSION and size == len(data) - HDR.size
            fd = None
            for _, _, cdata in anc:
                fd = struct.unpack("<i", cdata[:4])[0]
            if first is None:
                first = (type_, stream, fd)
            payload += data[HDR.size:]
            if not flags & HDR_MORE:
                assert len(payload) == total
                return first[0], first[1], payload, first[2]

    def recv(self, timeout=TIMEOUT):
        if self.pending:
            return self.pending.pop(0)
        return self._recv_raw(timeout)

    def recv_for(self, stream, timeout=TIMEOUT):
        """The next message about stream; others wait in pending."""
        for i, msg in enumerate(self.pending):
            if msg[1] == stream:
                return self.pending.pop(i)
        while True:
            msg = self._recv_raw(timeout)
            if msg[1] == stream:
                return msg
            self.pending.append(msg)

    # ---- requests ---------------------------------------------------------

    def ready(self):
        type_, stream, payload, _ = self.recv()
        assert (type_, stream) == (READY, 0), type_
        return struct.unpack("<II", payload[:8])  # concurrency, pid

    def request(self, method="GET", target="/", headers=(), body=b"",
                flags=REQ_BODY_END, content_length=None, tls=False):
        """Sends a REQ_HEAD (with body, all of it when flags has
        REQ_BODY_END); returns the stream id."""
        self.stream += 1
        path, _, query = target.partition("?")
        strs = [method, target, path, query, "HTTP/1.1", "localhost",
                "127.0.0.1", "127.0.0.1", "localhost"]
        if content_length is None:
            content_length = len(body) if flags & REQ_BODY_END else LEN_NONE
        if tls:
            flags |= REQ_TLS
        fixed = struct.pack("<IHHQIHH", flags, 0, len(headers),
                            content_length, len(body), 40000, 8080)
        payload = fixed + b"".join(_str(s) for s in strs) + \
            b"".join(_str(n) + _str(v) for n, v in headers) + body
        self.send(REQ_HEAD, self.stream, payload)
        self.inflight[self.stream] = len(body)
        return self.stream

    def body(self, stream, data):
        """REQ_BODY pieces within the window; False if the app ended the
        request meanwhile."""
        off = 0
        while off < len(data):
            while self.inflight[stream] >= WINDOW:
                msg = self._recv_raw(TIMEOUT)
                if msg[0] == REQ_ACK and msg[1] == stream:
                    self.inflight[stream] -= struct.unpack("<Q", msg[2])[0]
                    continue
                self.pending.append(msg)
                if msg[1] == stream and (msg[0] == RESP_END
                                         or resp_done(msg[0], msg[2])):
                    return False
            n = min(MAX_SIZE, len(data) - off, WINDOW - self.inflight[stream])
            self.send(REQ_BODY, stream, data[off:off + n])
            self.inflight[stream] += n
            off += n
        return True

    def head(self, stream):
        """Waits for the response head only."""
        r = Response()
        while True:
            type_, st, payload, fd = self.recv_for(stream)
            if type_ == REQ_ACK:
                continue
            assert type_ == RESP_HEAD, type_
            self._parse_head(r, payload)
            return r

    @staticmethod
    def _parse_head(r, payload):
        r.status, nfields, _, body_size, _ = struct.unpack("<HHIII",
                                                           payload[:16])
        off, strs = 16, []
        for _ in range(2 * nfields):
            n = struct.unpack("<I", payload[off:off + 4])[0]
            strs.append(payload[off + 4:off + 4 + n])
            off += 4 + ((n + 1 + 3) & ~3)
        r.headers = list(zip(strs[::2], strs[1::2]))
        r.body = payload[off:off + body_size]

    def response(self, stream, r=None, ack=True):
        """Collects a response up to RESP_END, acknowledging the body."""
        r = r or Response()
        acked = 0
        while True:
            type_, st, payload, fd = self.recv_for(stream)
            if type_ == RESP_HEAD:
                self._parse_head(r, payload)
                if resp_done(type_, payload):
                    r.end = 0
                    return r
            elif type_ == RESP_BODY:
                r.body += payload
            elif type_ == RESP_FILE:
                offset, length = struct.unpack("<QQ", payload)
                r.body += os.pread(fd, length, offset)
                os.close(fd)
            elif type_ == RESP_END:
                r.end = struct.unpack("<I", payload)[0]
                return r
            if ack and len(r.body) - acked >= WINDOW // 2:
                self.send(RESP_ACK, stream,
                          struct.pack("<Q", len(r.body) - acked))
                acked = len(r.body)

    def close(self):
        """Closes the router's end (the worker then stops) and returns the
        exit status and the log."""
        self.sock.close()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        with open(self.log_path) as f:
            log = f.read()
        assert "Sanitizer" not in log and "runtime error:" not in log, log
        return self.proc.returncode, log
