"""wsgi.file_wrapper over a regular file (sent as an fd) or not.  The file
is the one the X-File request header names (a test app)."""
import io


def application(environ, start_response):
    way = environ["PATH_INFO"]
    headers = [("Content-Type", "application/octet-stream")]
    if way == "/bytesio":
        f = io.BytesIO(b"from a BytesIO " * 1000)
    else:
        f = open(environ["HTTP_X_FILE"], "rb")
        if way == "/offset":
            f.read(10)      # tell() is 10, whatever the buffer read ahead
        elif way == "/length":
            headers.append(("Content-Length", "100"))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 4096)
