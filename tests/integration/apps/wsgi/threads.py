"""Each request waits for 4 at once: fails unless 4 workers run together."""
import threading

BARRIER = threading.Barrier(4)


def application(environ, start_response):
    try:
        BARRIER.wait(timeout=30)
        status = "200 OK"
    except threading.BrokenBarrierError:
        status = "500 Not Concurrent"
    start_response(status, [])
    return [threading.current_thread().name.encode()]
