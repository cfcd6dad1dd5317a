"""Writes TAG (the query string) to the error log three ways: wsgi.errors,
sys.stderr, and (on /raise) a traceback."""
import sys


def application(environ, start_response):
    tag = environ["QUERY_STRING"]
    environ["wsgi.errors"].write("errors-%s\n" % tag)
    environ["wsgi.errors"].flush()
    print("stderr-%s" % tag, file=sys.stderr, flush=True)
    if environ["PATH_INFO"] == "/raise":
        raise RuntimeError("traceback-%s" % tag)
    start_response("200 OK", [])
    return [b"logged"]
