"""wsgi.input in each of its ways; the path picks the way."""
import json


def application(environ, start_response):
    inp = environ["wsgi.input"]
    way = environ["PATH_INFO"]
    if way == "/read":
        out = [inp.read()]
    elif way == "/read3":
        out = []
        while True:
            piece = inp.read(3)
            if not piece:
                break
            out.append(piece)
    elif way == "/readline":
        out = []
        while True:
            line = inp.readline()
            if not line:
                break
            out.append(line)
    elif way == "/readline2":
        out = [inp.readline(2), inp.readline(), inp.read()]
    elif way == "/readlines":
        out = inp.readlines()
    elif way == "/iter":
        out = [line for line in inp]
    elif way == "/mixed":
        out = [inp.readline(), inp.read(2), inp.readline(), inp.read()]
    elif way == "/size":
        total = 0
        while True:
            piece = inp.read(65536)
            if not piece:
                break
            total += len(piece)
        out = [str(total).encode()]
    else:
        out = [b"?"]
    body = json.dumps([p.decode("latin-1") for p in out]).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
