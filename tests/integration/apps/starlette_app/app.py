"""A small Starlette application (python3-starlette) for
test_app_starlette.py: HTTP with streamed request and response bodies,
WebSocket endpoints, and lifespan startup/shutdown.

Served with Unit's config {"type": "python 3", "path": THIS_DIR,
"module": "app", "callable": "app"} ("protocol" may be left out: Unit
detects ASGI from the callable).

Lifespan: startup sets app.state.started and, when WHARF_LIFESPAN_DIR is
in the environment, writes startup-PID there; shutdown writes
shutdown-PID.  The tests read those files to see that both phases ran in
the app process.
"""

import asyncio
import contextlib
import hashlib
import json
import os

from starlette.applications import Starlette
from starlette.responses import (JSONResponse, PlainTextResponse,
                                 StreamingResponse)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

LIFESPAN_DIR = os.environ.get("WHARF_LIFESPAN_DIR")


def _mark(phase):
    if not LIFESPAN_DIR:
        return
    path = os.path.join(LIFESPAN_DIR, "%s-%d" % (phase, os.getpid()))
    try:
        with open(path, "w") as f:
            f.write(phase + "\n")
    except FileNotFoundError:
        # The test removed its directory before its server stopped (its
        # fixtures end first); the tests that read a mark wait for it.
        pass


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.started = True
    app.state.startups = getattr(app.state, "startups", 0) + 1
    _mark("startup")
    yield
    _mark("shutdown")


async def index(request):
    return PlainTextResponse("Hello from Starlette\n")


async def item(request):
    return JSONResponse({"id": request.path_params["item_id"],
                         "q": request.query_params.get("q")})


async def scope_view(request):
    s = request.scope
    return JSONResponse({
        "type": s["type"],
        "asgi": s.get("asgi"),
        "http_version": s.get("http_version"),
        "method": s["method"],
        "scheme": s.get("scheme"),
        "path": s["path"],
        "raw_path": s.get("raw_path", b"").decode("latin-1"),
        "root_path": s.get("root_path"),
        "query_string": s.get("query_string", b"").decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")]
                    for k, v in s.get("headers", [])],
        "client": list(s["client"]) if s.get("client") else None,
        "server": list(s["server"]) if s.get("server") else None,
    })


async def state(request):
    st = request.app.state
    return JSONResponse({"started": getattr(st, "started", False),
                         "startups": getattr(st, "startups", 0),
                         "pid": os.getpid()})


async def echo_digest(request):
    """Reads the body as it streams in; answers its size and SHA-256."""
    h = hashlib.sha256()
    n = 0
    chunks = 0
    async for chunk in request.stream():
        h.update(chunk)
        n += len(chunk)
        chunks += 1 if chunk else 0
    return JSONResponse({"size": n, "sha256": h.hexdigest(),
                         "chunks": chunks})


async def echo_body(request):
    body = await request.body()
    return PlainTextResponse(body, media_type="application/octet-stream",
                             headers={"X-Body-Length": str(len(body))})


async def stream(request):
    n = int(request.path_params["n"])
    delay = float(request.query_params.get("delay", "0"))

    async def gen():
        for i in range(n):
            yield ("chunk %d\n" % i).encode()
            if delay:
                await asyncio.sleep(delay)
    return StreamingResponse(gen(), media_type="text/plain")


GATES = {}


def _gate(key):
    if key not in GATES:
        GATES[key] = asyncio.Event()
    return GATES[key]


async def gated(request):
    """Sends "first", then waits until /release/KEY is requested on another
    connection, then sends "second": the first line can only reach the
    client before the release if the response is streamed."""
    gate = _gate(request.path_params["key"])

    async def gen():
        yield b"first\n"
        await asyncio.wait_for(gate.wait(), 60)
        yield b"second\n"
    return StreamingResponse(gen(), media_type="text/plain")


async def release(request):
    _gate(request.path_params["key"]).set()
    return PlainTextResponse("released\n")


async def big(request):
    size = int(request.path_params["size"])
    piece = b"y" * 65536

    async def gen():
        left = size
        while left > 0:
            n = min(left, len(piece))
            yield piece[:n]
            left -= n
    return StreamingResponse(gen(), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})


async def boom(request):
    raise RuntimeError("starlette-boom-marker")


async def ws_echo(websocket):
    """Echoes text and binary messages; the text "close:CODE[:REASON]"
    closes with that code."""
    await websocket.accept()
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
            text = msg.get("text")
            if text is not None:
                if text.startswith("close:"):
                    parts = text.split(":", 2)
                    reason = parts[2] if len(parts) > 2 else ""
                    await websocket.close(code=int(parts[1]), reason=reason)
                    return
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(msg.get("bytes") or b"")
    except WebSocketDisconnect:
        return


async def ws_info(websocket):
    """Accepts with the first offered subprotocol and sends what the
    scope says about the handshake."""
    s = websocket.scope
    offered = s.get("subprotocols") or []
    await websocket.accept(subprotocol=offered[0] if offered else None)
    await websocket.send_text(json.dumps({
        "path": s["path"],
        "query_string": s.get("query_string", b"").decode("latin-1"),
        "subprotocols": offered,
        "scheme": s.get("scheme"),
        "headers": {k.decode("latin-1"): v.decode("latin-1")
                    for k, v in s.get("headers", [])},
        "started": getattr(websocket.app.state, "started", False),
    }))
    await websocket.close(code=1000)


async def ws_count(websocket):
    """Sends N numbered messages as fast as it can, then closes."""
    await websocket.accept()
    n = int(websocket.query_params.get("n", "10"))
    for i in range(n):
        await websocket.send_text("msg %d" % i)
    await websocket.close(code=1000)


async def ws_reject(websocket):
    """Closes before accepting: the handshake must fail with 403."""
    await websocket.close(code=1008)


routes = [
    Route("/", index),
    Route("/items/{item_id:int}", item),
    Route("/scope", scope_view, methods=["GET", "POST", "PUT", "DELETE"]),
    Route("/state", state),
    Route("/digest", echo_digest, methods=["POST", "PUT"]),
    Route("/echo", echo_body, methods=["POST"]),
    Route("/stream/{n:int}", stream),
    Route("/gated/{key}", gated),
    Route("/release/{key}", release),
    Route("/big/{size:int}", big),
    Route("/boom", boom),
    WebSocketRoute("/ws/echo", ws_echo),
    WebSocketRoute("/ws/info", ws_info),
    WebSocketRoute("/ws/count", ws_count),
    WebSocketRoute("/ws/reject", ws_reject),
]

app = Starlette(routes=routes, lifespan=lifespan)
