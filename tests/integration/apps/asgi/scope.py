"""Echoes the scope (as JSON) and the request body's length and digest."""
import hashlib
import json


async def application(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")  # tolerated, as Unit does
    digest = hashlib.sha256()
    size = 0
    pieces = 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        digest.update(message.get("body", b""))
        size += len(message.get("body", b""))
        pieces += 1
        if not message.get("more_body", False):
            break
    out = {
        k: scope.get(k)
        for k in ("type", "http_version", "method", "scheme", "path",
                  "root_path", "client", "server", "asgi", "state",
                  "extensions")
    }
    out["raw_path"] = scope["raw_path"].decode("latin-1")
    out["query_string"] = scope["query_string"].decode("latin-1")
    out["headers"] = [[n.decode("latin-1"), v.decode("latin-1")]
                      for n, v in scope["headers"]]
    out["body_size"] = size
    out["body_sha256"] = digest.hexdigest()
    out["body_pieces"] = pieces
    body = json.dumps(out).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
