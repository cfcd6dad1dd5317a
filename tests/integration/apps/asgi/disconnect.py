"""Streams until the client is gone, then records that it saw
http.disconnect in the file named by ?file=."""
import asyncio
from urllib.parse import parse_qs


async def application(scope, receive, send):
    assert scope["type"] == "http"
    q = parse_qs(scope["query_string"].decode())
    mark = q["file"][0]
    await send({"type": "http.response.start", "status": 200,
                "headers": []})
    await send({"type": "http.response.body", "body": b"x" * 10,
                "more_body": True})
    message = await receive()  # the whole (empty) body
    assert message["type"] == "http.request"
    message = await receive()  # waits for the client to go away
    with open(mark, "w") as f:
        f.write(message["type"])
    await asyncio.sleep(0)
