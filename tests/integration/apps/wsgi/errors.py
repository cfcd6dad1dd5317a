def application(environ, start_response):
    err = environ["wsgi.errors"]
    err.write("first line from wsgi.errors\n")
    err.writelines(["second ", "line\n", "unterminated"])
    err.flush()
    print("printed to errors", file=err)
    start_response("200 OK", [])
    return [b"logged"]
