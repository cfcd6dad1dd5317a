CALLS = []


def create_app():
    CALLS.append(1)

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"from the factory, called %d time(s)" % len(CALLS)]
    return app


not_a_factory = 42
returns_garbage = lambda: 42
