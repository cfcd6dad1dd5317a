"""An ASGI 2 (double callable) application."""


def application(scope):
    async def instance(receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    return instance
