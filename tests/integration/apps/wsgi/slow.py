import time


def application(environ, start_response):
    """Sleeps ?<seconds> before answering "slept"."""
    time.sleep(float(environ.get("QUERY_STRING") or "0"))
    body = b"slept"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
