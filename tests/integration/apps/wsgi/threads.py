"""Each request waits until X-Parties (default 4) requests are in the app
at once: it fails unless that many workers run Python together."""
import threading

LOCK = threading.Lock()
BARRIERS = {}


def application(environ, start_response):
    parties = int(environ.get("HTTP_X_PARTIES", "4"))
    with LOCK:
        barrier = BARRIERS.setdefault(parties, threading.Barrier(parties))
    try:
        barrier.wait(timeout=30)
        status = "200 OK"
    except threading.BrokenBarrierError:
        status = "500 Not Concurrent"
    start_response(status, [])
    return [threading.current_thread().name.encode()]
