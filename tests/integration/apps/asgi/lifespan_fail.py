"""An app whose lifespan startup fails: its process never becomes ready."""


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed",
                    "message": "startup refused by the test"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": []})
    await send({"type": "http.response.body", "body": b"never"})
