"""A WebSocket backend for the proxy tests, on python3-websockets (not
Wharf code): run as `python3 ws_echo.py`, it listens on a free port of
127.0.0.1, prints the port on its first line and serves until killed.

Paths:
  /echo   echoes every message (text or binary, any size);
  /hello  sends "hello" at once (bytes right behind the 101), then echoes;
  /close  echoes one message, then closes with code 4000 "bye";
  /refuse answers the handshake with 403 (no upgrade).
Each handshake and each close is printed on stdout ("open PATH HEADERS",
"closed PATH CODE") for the test to read."""

import asyncio
import http
import json
import sys

import websockets


def log(*args):
    print(*args, flush=True)


async def process_request(path, headers):
    if path == "/refuse":
        return http.HTTPStatus.FORBIDDEN, [("X-Refused", "yes")], b"no\n"
    log("open", path, json.dumps(sorted(
        [k.lower(), v] for k, v in headers.raw_items())))
    return None


async def handler(ws, path):
    try:
        if path == "/hello":
            await ws.send("hello")
        async for msg in ws:
            await ws.send(msg)
            if path == "/close":
                await ws.close(4000, "bye")
                break
    except websockets.ConnectionClosed:
        pass
    log("closed", path, ws.close_code)


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None,
                                process_request=process_request,
                                ping_interval=None) as server:
        log(server.sockets[0].getsockname()[1])
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
