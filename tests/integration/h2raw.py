"""A small hand-driven HTTP/2 client over Python's h2 package, for the
h2 tests: requests without content-length, frame floods, slow readers."""

import socket
import ssl

import h2.config
import h2.connection
import h2.events


class H2Client:
    def __init__(self, port, timeout=30.0, window=None, settings=None,
                 tls=False):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        if tls:  # h2 by ALPN; the test certificates are not checked
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock)
            assert self.sock.selected_alpn_protocol() == "h2"
        cfg = h2.config.H2Configuration(client_side=True,
                                        header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.responses = {}  # stream id -> dict(status, headers, body, ended)
        self.closed = False
        self.goaway = None
        self.resets = {}
        self.remote_settings_seen = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, path, method="GET", body=None, headers=(), end=True,
                authority="localhost"):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"),
                (":authority", authority), (":path", path)] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        self.responses[sid] = {"status": None, "headers": [], "body": b"",
                               "ended": False}
        return sid

    def send_body(self, sid, body, end=True):
        """Sends body under flow control, reading meanwhile."""
        off = 0
        while off < len(body):
            room = min(self.conn.local_flow_control_window(sid),
                       self.conn.max_outbound_frame_size, len(body) - off)
            if room <= 0:
                self.flush()
                self.read_some()
                continue
            self.conn.send_data(sid, body[off:off + room])
            off += room
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def read_some(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self.on_event(ev)
        self.flush()
        return True

    def on_event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            r = self.responses.setdefault(ev.stream_id, {
                "status": None, "headers": [], "body": b"", "ended": False})
            r["headers"] = ev.headers
            r["status"] = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            self.responses[ev.stream_id]["body"] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.responses[ev.stream_id]["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            self.resets[ev.stream_id] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True

    def wait(self, sid):
        while not self.responses[sid]["ended"] and sid not in self.resets:
            if not self.read_some():
                break
        return self.responses[sid]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
