def application(environ, start_response):
    start_response("200 OK", [])
    return [("%s|%s" % (environ.get("SCRIPT_NAME"), environ["PATH_INFO"])).encode()]
