"""gRPC end to end through Wharf (issue 12): Debian's python3-grpcio as
both client and server.  The client speaks to Wharf's h2c listener; Wharf
proxies to the gRPC server over h2c ("h2c://").  Unary, server-streaming,
client-streaming and bidirectional calls, an error status with its
message (trailers), a 4 MiB message each way, and metadata both ways.
Generic handlers with bytes messages: no generated stubs needed."""

import concurrent.futures
import os

import pytest

grpc = pytest.importorskip("grpc")

SVC = "wharf.test.Echo"


def _unary(req, ctx):
    md = dict(ctx.invocation_metadata())
    ctx.set_trailing_metadata((("x-trail", "t-" + md.get("x-in", "")),))
    return b"u:" + req


def _server_stream(req, ctx):
    n = int(req.decode())
    for i in range(n):
        yield b"s%d" % i


def _client_stream(it, ctx):
    parts = [m for m in it]
    return b"c:%d:%d" % (len(parts), sum(len(p) for p in parts))


def _bidi(it, ctx):
    for m in it:
        yield b"b:" + m


def _fail(req, ctx):
    ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "no entry for " +
              req.decode())


def _big(req, ctx):
    return bytes(reversed(req))


@pytest.fixture
def grpc_server():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail),
        "Big": grpc.unary_unary_rpc_method_handler(_big),
    }
    opts = [("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20)]
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(8),
                         options=opts)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SVC, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


@pytest.fixture
def channel(wharf, grpc_server):
    server = wharf({"listeners": {"127.0.0.1:{port}": {"pass": "routes",
                                                       "h2c": True}},
                    "routes": [{"action": {
                        "proxy": "h2c://127.0.0.1:%d" % grpc_server}}]})
    ch = grpc.insecure_channel(
        "127.0.0.1:%d" % server.port,
        options=[("grpc.max_receive_message_length", 16 << 20),
                 ("grpc.max_send_message_length", 16 << 20)])
    yield ch
    ch.close()


def _m(ch, kind, name):
    return getattr(ch, kind)("/%s/%s" % (SVC, name))


def test_grpc_unary(channel):
    call = _m(channel, "unary_unary", "Unary")
    resp, c = call.with_call(b"hello", metadata=(("x-in", "abc"),),
                             timeout=30)
    assert resp == b"u:hello"
    assert c.code() == grpc.StatusCode.OK
    assert ("x-trail", "t-abc") in tuple(c.trailing_metadata())


def test_grpc_server_streaming(channel):
    call = _m(channel, "unary_stream", "ServerStream")
    got = list(call(b"50", timeout=30))
    assert got == [b"s%d" % i for i in range(50)]


def test_grpc_client_streaming(channel):
    call = _m(channel, "stream_unary", "ClientStream")
    msgs = [os.urandom(1000 + i) for i in range(40)]
    resp = call(iter(msgs), timeout=30)
    assert resp == b"c:40:%d" % sum(len(m) for m in msgs)


def test_grpc_bidi(channel):
    call = _m(channel, "stream_stream", "Bidi")
    msgs = [b"m%d" % i for i in range(30)]
    got = list(call(iter(msgs), timeout=30))
    assert got == [b"b:" + m for m in msgs]


def test_grpc_bidi_interleaved(channel):
    """Each reply arrives before the next message is sent: streaming both
    ways at once, not a buffered request then a buffered response."""
    import queue
    q = queue.Queue()

    def gen():
        for i in range(10):
            yield b"i%d" % i
            assert q.get(timeout=30) == b"b:i%d" % i

    call = _m(channel, "stream_stream", "Bidi")
    for m in call(gen(), timeout=60):
        q.put(m)


def test_grpc_error_status(channel):
    call = _m(channel, "unary_unary", "Fail")
    with pytest.raises(grpc.RpcError) as e:
        call(b"bob", timeout=30)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == "no entry for bob"


def test_grpc_unknown_method(channel):
    call = _m(channel, "unary_unary", "Nope")
    with pytest.raises(grpc.RpcError) as e:
        call(b"x", timeout=30)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_4mib_message(channel):
    data = os.urandom(4 << 20)
    call = _m(channel, "unary_unary", "Big")
    assert call(data, timeout=60) == bytes(reversed(data))


def test_grpc_concurrent_calls(channel):
    call = _m(channel, "unary_unary", "Unary")
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        futs = [ex.submit(call, b"%d" % i, timeout=30) for i in range(64)]
        assert [f.result() for f in futs] == [b"u:%d" % i for i in range(64)]
