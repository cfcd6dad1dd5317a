"""http.response.pathsend of the file named by ?file= (the router sends it
with sendfile())."""
from urllib.parse import parse_qs


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    assert "http.response.pathsend" in scope["extensions"]
    path = parse_qs(scope["query_string"].decode())["file"][0]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.pathsend", "path": path})
