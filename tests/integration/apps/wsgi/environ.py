"""Answers the request's environ as JSON (objects as their type's name)."""
import json


def application(environ, start_response):
    out = {}
    for key, value in environ.items():
        if isinstance(value, (str, int, bool, tuple)):
            out[key] = value
        else:
            out[key] = "<%s>" % type(value).__name__
    body = json.dumps(out, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
