"""Streams a response: ?n=CHUNKS&size=BYTES, every chunk its own send()."""
from urllib.parse import parse_qs


async def application(scope, receive, send):
    assert scope["type"] == "http"
    q = parse_qs(scope["query_string"].decode())
    n = int(q.get("n", ["10"])[0])
    size = int(q.get("size", ["1000"])[0])
    length = q.get("length", ["0"])[0] == "1"
    headers = [(b"content-type", b"application/octet-stream")]
    if length:
        headers.append((b"content-length", str(n * size).encode()))
    await send({"type": "http.response.start", "status": 200,
                "headers": headers})
    for i in range(n):
        chunk = bytes([i % 256]) * size
        await send({"type": "http.response.body", "body": chunk,
                    "more_body": i + 1 < n})
    if n == 0:
        await send({"type": "http.response.body", "body": b""})
