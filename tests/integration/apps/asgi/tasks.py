"""What a request's coroutine sees of asyncio: its Task, the same before
and after it first waits; contextvars set before the first wait still
set after it; cancellation; a task factory set by the app (lifespan
startup, with ?factory=1 in the app's "environment") is honoured."""
import asyncio
import contextvars
import json
import os

var = contextvars.ContextVar("var", default="unset")
made = []
kept = {}  # "/keep": the Task of a request that answered in its first step


def factory(loop, coro, **kw):
    made.append(1)
    return asyncio.Task(coro, loop=loop, **kw)


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("ASGI_TASK_FACTORY"):
                asyncio.get_running_loop().set_task_factory(factory)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def answer(send, status, obj):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(obj).encode()})


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path = scope["path"]
    first = asyncio.current_task()
    var.set(path)
    if path == "/cancel":
        first.cancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            return await answer(send, 200, {"cancelled": True})
        return await answer(send, 500, {"cancelled": False})
    if path == "/keep":
        kept["task"] = first
        kept["calls"] = []
        first.add_done_callback(lambda t: kept["calls"].append(t.result()))
        return await answer(send, 200, {"done": first.done()})
    if path == "/kept":
        task = kept["task"]
        return await answer(send, 200, {
            "done": task.done(), "result": task.result(),
            "calls": kept["calls"], "listed": task in asyncio.all_tasks()})
    if path == "/at-once":
        return await answer(send, 200, {
            "task": isinstance(first, asyncio.Task), "made": len(made)})
    await asyncio.sleep(0)
    middle = asyncio.current_task()
    await asyncio.sleep(0.01)
    last = asyncio.current_task()
    await answer(send, 200, {
        "task": isinstance(first, asyncio.Task),
        "same": first is middle is last,
        "var": var.get(),
        "done": first.done(),
        "made": len(made),
    })
