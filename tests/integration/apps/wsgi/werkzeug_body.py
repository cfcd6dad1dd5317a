"""A Werkzeug request reading its body (as Flask does)."""
from werkzeug.wrappers import Request, Response


@Request.application
def application(request):
    return Response(b"got %d bytes: %s" % (len(request.get_data()),
                                          request.get_data()[:10]))
