"""Lifespan: startup fills the state every request scope gets a copy of;
shutdown writes a file; ?fail makes startup fail (per the config's
environment)."""
import os


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("ASGI_STARTUP_FAIL"):
                    await send({"type": "lifespan.startup.failed",
                                "message": "startup refused by the test"})
                    return
                scope["state"]["counter"] = 41
                scope["state"]["pid"] = os.getpid()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                mark = os.environ.get("ASGI_SHUTDOWN_FILE")
                if mark:
                    with open(mark, "w") as f:
                        f.write("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    state = scope["state"]
    state["counter"] += 1  # a copy: every request sees 42
    body = ("%d %d" % (state["counter"], state["pid"])).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": []})
    await send({"type": "http.response.body", "body": body})
