"""Requests that wait for each other: /wait?k=N blocks until N requests
are in flight at once in this worker, proving concurrency."""
import asyncio

waiting = []


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    k = int(scope["query_string"].decode().split("=")[1])
    event = asyncio.Event()
    waiting.append(event)
    if len(waiting) >= k:
        for e in waiting:
            e.set()
        waiting.clear()
    await asyncio.wait_for(event.wait(), 30)
    await send({"type": "http.response.start", "status": 200,
                "headers": []})
    await send({"type": "http.response.body", "body": b"together"})
