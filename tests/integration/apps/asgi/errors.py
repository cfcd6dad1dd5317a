"""Misbehaving apps, picked by the path."""
import asyncio


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("lifespan is not supported here")
    path = scope["path"]
    if path == "/raise":
        raise ValueError("boom before the head")
    if path == "/raise-after-head":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345",
                    "more_body": True})
        raise ValueError("boom in the body")
    if path == "/nothing":
        return
    if path == "/bad-message":
        await send({"type": "http.response.body", "body": b"no start"})
    if path == "/too-long":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"three"})
    if path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"1"))
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"x-path", path.encode())]})
    await send({"type": "http.response.body", "body": b"ok"})
