import os


def application(environ, start_response):
    """Yields n pieces of size bytes (from the query: n=..&size=..)."""
    q = dict(p.split("=") for p in environ["QUERY_STRING"].split("&") if p)
    n, size = int(q.get("n", "3")), int(q.get("size", "4"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for i in range(n):
        yield (b"%d" % (i % 10)) * size
