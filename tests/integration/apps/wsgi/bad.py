"""Applications that misbehave, one per callable (used as targets)."""
import sys

CLOSED = []


def raises(environ, start_response):
    raise ValueError("boom from raises")


def garbage(environ, start_response):
    start_response("200 OK", [])
    return 42


def notbytes(environ, start_response):
    start_response("200 OK", [])
    return ["a str, not bytes"]


def late(environ, start_response):
    start_response("200 OK", [])
    yield b"part1"
    raise ValueError("boom after the head")


def nostart(environ, start_response):
    return [b"never started"]


def badstatus(environ, start_response):
    start_response("abc", [])
    return [b"x"]


def badheader(environ, start_response):
    start_response("200 OK", [("X-Split", "a\r\nSet-Cookie: evil=1")])
    return [b"x"]


def excinfo(environ, start_response):
    start_response("200 OK", [("X-First", "1")])
    try:
        raise KeyError("k")
    except KeyError:
        start_response("500 Oops", [("X-Second", "2")], sys.exc_info())
    return [b"replaced"]


def excinfo_late(environ, start_response):
    write = start_response("200 OK", [])
    write(b"sent")
    try:
        raise KeyError("too late")
    except KeyError:
        start_response("500 Oops", [], sys.exc_info())
    return [b"never"]


def twice(environ, start_response):
    start_response("200 OK", [("X-A", "1")])
    start_response("201 Created", [("X-B", "2")])
    return [b"t"]


def empty(environ, start_response):
    start_response("204 No Content", [])
    return []


def writeapp(environ, start_response):
    write = start_response("200 OK", [])
    write(b"via write;")
    return [b"then ", b"iter"]


def cl_truncate(environ, start_response):
    start_response("200 OK", [("Content-Length", "3")])
    return iter([b"ab", b"cd", b"ef"])


class Closing:
    def __init__(self, fail=False):
        self.fail = fail

    def __iter__(self):
        yield b"closing body"
        if self.fail:
            raise RuntimeError("iteration failed")

    def close(self):
        CLOSED.append("closed")


def closing(environ, start_response):
    start_response("200 OK", [])
    return Closing()


def closing_fail(environ, start_response):
    start_response("200 OK", [])
    return Closing(fail=True)


def closed(environ, start_response):
    start_response("200 OK", [])
    return [(",".join(CLOSED)).encode()]


def latin1(environ, start_response):
    start_response("200 OK", [("X-Latin", "caf\u00e9"), (b"X-Bytes", b"b")])
    return [environ.get("HTTP_X_IN", "").encode("latin-1")]


def nonlatin1(environ, start_response):
    start_response("200 OK", [("X-Bad", "\u20ac")])
    return [b"x"]


def long_traceback(environ, start_response):
    raise ValueError("\n".join("message line %03d" % i for i in range(400)))


def atexit_start(environ, start_response):
    """Keeps start_response and write() past the request: called at exit
    they raise (the request is over), and the process still ends well."""
    import atexit

    write = start_response("200 OK", [])
    inp = environ["wsgi.input"]
    out = environ["HTTP_X_OUT"]

    def late():
        with open(out, "w") as f:
            for call in (lambda: start_response("200 OK", []),
                         lambda: write(b"late"), lambda: inp.read()):
                try:
                    call()
                    f.write("no error\n")
                except RuntimeError as e:
                    f.write("%s\n" % e)

    atexit.register(late)
    return [b"registered"]


def exits(environ, start_response):
    start_response("200", [("Content-Length", "1")])
    exit()


class Endless:
    """Streams until the client is gone; counts its close() calls."""

    def __iter__(self):
        while True:
            yield b"tick"

    def close(self):
        CLOSED.append("endless")


def endless(environ, start_response):
    start_response("200 OK", [])
    return Endless()


def write_forever(environ, start_response):
    write = start_response("200 OK", [])
    while True:
        write(b"tock")


def biglist(environ, start_response):
    start_response("200 OK", [])
    return [b"%04d" % i * 250 for i in range(40)]
