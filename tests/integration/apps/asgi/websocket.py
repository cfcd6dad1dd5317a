"""WebSocket apps, picked by the path: /echo echoes every message
(text as text, bytes as bytes); /close?code=N closes at once with N;
/refuse closes before accepting (403); /proto accepts the first offered
subprotocol; /raise raises after accepting (close 1011)."""


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return
    assert scope["type"] == "websocket"
    message = await receive()
    assert message["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/refuse":
        await send({"type": "websocket.close"})
        return
    accept = {"type": "websocket.accept",
              "headers": [(b"x-scheme", scope["scheme"].encode())]}
    if path == "/proto" and scope["subprotocols"]:
        accept["subprotocol"] = scope["subprotocols"][0]
    await send(accept)
    if path == "/close":
        code = int(scope["query_string"].decode().split("=")[1])
        await send({"type": "websocket.close", "code": code,
                    "reason": "bye"})
        return
    if path == "/raise":
        raise RuntimeError("boom in a websocket")
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
