"""An HTTP/2 backend for the proxy's h2 tests: Python's h2 package (the
protocol side is the package's, not ours) on a threaded socket server,
h2c with prior knowledge, or over TLS with ALPN h2.

Paths (the answer is chosen by the request's path):
- /echo: 200, the request body back; x-method, x-path, x-authority,
  x-scheme and x-headers (the request's regular field names, comma
  separated, in order) describe the request.
- /big?n=N: 200, N bytes streamed in 16 KiB DATA frames, under the
  client's flow control (no content-length).
- /trailers: 200, "body", then trailers x-trailer: yes and grpc-status: 0.
- /status/N: status N, no body.
- /wait: answers only when release() is called (streams held in flight).
- /goaway: GOAWAY (last stream: this one) after answering.
- /close: closes the connection without answering.

Every connection counts in .connections; .max_streams is advertised as
SETTINGS_MAX_CONCURRENT_STREAMS.  stop() closes every socket.
"""

import socket
import ssl
import threading

import h2.config
import h2.connection
import h2.events
import h2.settings


class H2Backend:
    def __init__(self, max_streams=100, tls_context=None, chunk=16384):
        self.max_streams = max_streams
        self.tls = tls_context
        self.chunk = chunk
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.connections = 0
        self.peak_streams = 0
        self.requests = []           # (path, headers dict) in order
        self.lock = threading.Lock()
        self.conns = []
        self.held = threading.Event()
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def release(self):
        self.held.set()

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(s)
            threading.Thread(target=self._serve, args=(s,),
                             daemon=True).start()

    def stop(self):
        self.stopped = True
        self.held.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass

    def _serve(self, s):
        try:
            if self.tls is not None:
                s = self.tls.wrap_socket(s, server_side=True)
                with self.lock:
                    self.conns.append(s)
            _Conn(self, s).run()
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass


class _Conn:
    def __init__(self, backend, s):
        self.b = backend
        self.s = s
        self.wlock = threading.Lock()
        cfg = h2.config.H2Configuration(client_side=False,
                                        header_encoding="utf-8",
                                        validate_inbound_headers=True)
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.streams = {}   # id -> [headers dict, body bytearray, names]
        self.sending = {}   # id -> [remaining bytes, threading.Event]
        self.open = 0

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.s.sendall(data)

    def run(self):
        with self.wlock:
            self.h2.initiate_connection()
            self.h2.update_settings({
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS:
                    self.b.max_streams})
            self.flush()
        while True:
            data = self.s.recv(65536)
            if not data:
                return
            with self.wlock:
                events = self.h2.receive_data(data)
                for ev in events:
                    self.event(ev)
                self.flush()

    def event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            hd = dict(ev.headers)
            names = [k for k, _ in ev.headers if not k.startswith(":")]
            self.streams[ev.stream_id] = [hd, bytearray(), names]
            self.open += 1
            with self.b.lock:
                self.b.peak_streams = max(self.b.peak_streams, self.open)
                self.b.requests.append((hd.get(":path"), hd))
            if ev.stream_ended:
                self.answer(ev.stream_id)
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st[1] += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length,
                                              ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            if ev.stream_id in self.streams:
                self.answer(ev.stream_id)
        elif isinstance(ev, h2.events.WindowUpdated):
            for sid, snd in list(self.sending.items()):
                snd[1].set()
        elif isinstance(ev, h2.events.StreamReset):
            self.streams.pop(ev.stream_id, None)
            snd = self.sending.pop(ev.stream_id, None)
            if snd is not None:
                snd[0] = -1
                snd[1].set()

    def answer(self, sid):
        hd, body, names = self.streams.pop(sid)
        path = hd.get(":path", "")
        if path.startswith("/wait"):
            threading.Thread(target=self.later, args=(sid, hd, body, names),
                             daemon=True).start()
            return
        if path.startswith("/close"):
            self.s.shutdown(socket.SHUT_RDWR)
            return
        if path.startswith("/big"):
            n = int(path.partition("n=")[2] or "0")
            self.h2.send_headers(sid, [(":status", "200"),
                                       ("content-type", "application/x")])
            self.sending[sid] = [n, threading.Event()]
            threading.Thread(target=self.stream_out, args=(sid,),
                             daemon=True).start()
            return
        self.done(sid, hd, body, names)

    def later(self, sid, hd, body, names):
        self.b.held.wait(60)
        with self.wlock:
            self.done(sid, hd, body, names)
            self.flush()

    def done(self, sid, hd, body, names):
        path = hd.get(":path", "")
        self.open -= 1
        if path.startswith("/status/"):
            self.h2.send_headers(sid, [(":status", path[8:11])],
                                 end_stream=True)
            return
        if path.startswith("/trailers"):
            self.h2.send_headers(sid, [(":status", "200"),
                                       ("content-type", "text/plain")])
            self.h2.send_data(sid, b"body")
            self.h2.send_headers(sid, [("x-trailer", "yes"),
                                       ("grpc-status", "0")],
                                 end_stream=True)
            return
        fields = [(":status", "200"), ("content-length", str(len(body))),
                  ("x-method", hd.get(":method", "")),
                  ("x-path", path),
                  ("x-authority", hd.get(":authority", "")),
                  ("x-scheme", hd.get(":scheme", "")),
                  ("x-headers", ",".join(names)),
                  ("connection-id", str(id(self)))]
        self.h2.send_headers(sid, fields, end_stream=len(body) == 0)
        self.send_body(sid, bytes(body))
        if path.startswith("/goaway"):
            self.h2.close_connection(last_stream_id=sid)

    def send_body(self, sid, body):
        off = 0
        while off < len(body):
            room = min(self.h2.local_flow_control_window(sid),
                       self.h2.max_outbound_frame_size)
            if room <= 0:
                # The echo bodies of the tests fit the proxy's window.
                raise RuntimeError("h2 backend: window closed")
            n = min(room, len(body) - off)
            self.h2.send_data(sid, body[off:off + n],
                              end_stream=off + n == len(body))
            off += n

    def stream_out(self, sid):
        while True:
            with self.wlock:
                snd = self.sending.get(sid)
                if snd is None or snd[0] < 0:
                    return
                try:
                    room = min(self.h2.local_flow_control_window(sid),
                               self.b.chunk, snd[0])
                except Exception:
                    return
                if snd[0] == 0:
                    self.h2.end_stream(sid)
                    self.sending.pop(sid, None)
                    self.open -= 1
                    self.flush()
                    return
                if room > 0:
                    self.h2.send_data(sid, b"x" * room)
                    snd[0] -= room
                    self.flush()
                    continue
                snd[1].clear()
            if not snd[1].wait(60):
                return
