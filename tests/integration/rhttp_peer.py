"""A scripted public side of reverse HTTP, over Python's h2 package: it
accepts the tunnels a private Wharf dials, speaks HAProxy's wire behaviour
(the dialer sends the client preface; we send only SETTINGS, as a client
session whose magic is dropped) and sends requests down them (odd stream
ids), as HAProxy's public side does."""

import socket
import threading
import time

import h2.config
import h2.connection
import h2.events

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Tunnel:
    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.responses = {}
        self.closed = False
        self.settings_seen = False
        self.preface_ok = False
        cfg = h2.config.H2Configuration(client_side=True,
                                        header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        data = self.conn.data_to_send()
        assert data.startswith(PREFACE)
        self.sock.sendall(data[len(PREFACE):])   # SETTINGS only
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        buf = b""
        try:
            while len(buf) < len(PREFACE):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError
                buf += chunk
            self.preface_ok = buf.startswith(PREFACE)
            data = buf[len(PREFACE):]
            while True:
                with self.lock:
                    if data:
                        for ev in self.conn.receive_data(data):
                            self._on_event(ev)
                        out = self.conn.data_to_send()
                        if out:
                            self.sock.sendall(out)
                    self.cond.notify_all()
                data = self.sock.recv(65536)
                if not data:
                    break
        except (OSError, EOFError, h2.exceptions.ProtocolError):
            pass
        with self.lock:
            self.closed = True
            self.cond.notify_all()

    def _on_event(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
        r = self.responses.get(getattr(ev, "stream_id", None))
        if r is None:
            return
        if isinstance(ev, h2.events.ResponseReceived):
            r["headers"] = ev.headers
            r["status"] = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            r["body"] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                ev.stream_id)
        elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
            r["ended"] = True

    def wait_settings(self, timeout=10.0):
        with self.lock:
            self.cond.wait_for(lambda: self.settings_seen or self.closed,
                               timeout)
            return self.settings_seen

    def request(self, path, method="GET", body=None, authority="app.test",
                timeout=20.0):
        with self.lock:
            sid = self.conn.get_next_available_stream_id()
            self.responses[sid] = {"status": None, "headers": [], "body": b"",
                                   "ended": False, "id": sid}
            hdrs = [(":method", method), (":scheme", "https"),
                    (":authority", authority), (":path", path)]
            self.conn.send_headers(sid, hdrs, end_stream=body is None)
            self.sock.sendall(self.conn.data_to_send())
        if body is not None:
            self._send_body(sid, body, timeout)
        with self.lock:
            r = self.responses[sid]
            self.cond.wait_for(lambda: r["ended"] or self.closed, timeout)
            return r

    def _send_body(self, sid, body, timeout):
        off = 0
        deadline = time.monotonic() + timeout
        while off < len(body):
            with self.lock:
                room = min(self.conn.local_flow_control_window(sid),
                           self.conn.max_outbound_frame_size, len(body) - off)
                if room <= 0:
                    self.cond.wait(0.2)
                    if time.monotonic() > deadline or self.closed:
                        raise TimeoutError("no window")
                    continue
                self.conn.send_data(sid, body[off:off + room])
                off += room
                self.sock.sendall(self.conn.data_to_send())
        with self.lock:
            self.conn.end_stream(sid)
            self.sock.sendall(self.conn.data_to_send())

    def close(self):
        """A bare FIN, as HAProxy's public side closes an idle tunnel."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.reader.join(10)
        self.sock.close()


class PublicPeer:
    """Listens on 127.0.0.1; every accepted connection becomes a Tunnel
    (or, with refuse=True, is closed at once: a bare FIN)."""

    def __init__(self, refuse=False):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.refuse = refuse
        self.accepts = 0
        self.tunnels = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            if self.stopping:
                s.close()
                return
            with self.lock:
                self.accepts += 1
            if self.refuse:
                s.close()
                continue
            s.settimeout(None)
            t = Tunnel(s)
            with self.lock:
                self.tunnels.append(t)
                self.cond.notify_all()

    def live(self):
        with self.lock:
            return [t for t in self.tunnels if not t.closed]

    def wait_live(self, n, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ts = [t for t in self.live() if t.settings_seen]
            if len(ts) >= n:
                return ts
            time.sleep(0.05)
        raise AssertionError("%d live tunnels, wanted %d"
                             % (len(self.live()), n))

    def close(self):
        self.stopping = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        self.thread.join(5)
        for t in list(self.tunnels):
            t.close()
