"""A small Flask application (python3-flask) for test_app_flask.py.

Served with Unit's config {"type": "python 3", "path": THIS_DIR,
"module": "app"} ("callable" defaults to "application"; Flask's object is
also bound to that name).  It exercises what a real Flask app leans on:
routing with converters, query strings, JSON in and out, form posts and
file uploads (werkzeug's multipart parser reading wsgi.input), cookies
and the signed session, redirects built from the WSGI environ, streamed
responses, error handlers, and an exception that Flask turns into a 500.
"""

import hashlib
import os
import threading

from flask import (Flask, Response, abort, jsonify, redirect, request,
                   session, stream_with_context, url_for)

app = Flask(__name__)
app.secret_key = os.environ.get("FLASK_SECRET", "wharf-test-secret")
application = app


@app.route("/")
def index():
    return "Hello from Flask\n"


@app.route("/user/<name>/<int:num>")
def user(name, num):
    return jsonify(name=name, num=num, double=num * 2)


@app.route("/info", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def info():
    env = request.environ
    return jsonify(
        method=request.method,
        path=request.path,
        script_root=request.script_root,
        query=request.args.to_dict(flat=False),
        headers={k.lower(): v for k, v in request.headers.items()},
        scheme=request.scheme,
        host=request.host,
        remote_addr=request.remote_addr,
        url=request.url,
        server_protocol=env.get("SERVER_PROTOCOL"),
        wsgi_version=list(env.get("wsgi.version", ())),
        multithread=env.get("wsgi.multithread"),
        multiprocess=env.get("wsgi.multiprocess"),
        run_once=env.get("wsgi.run_once"),
        env_var=os.environ.get("FLASK_TEST_ENV"),
        pid=os.getpid(),
    )


@app.route("/json", methods=["POST"])
def json_echo():
    data = request.get_json(force=False, silent=True)
    if data is None:
        abort(400)
    return jsonify(received=data, type=type(data).__name__)


@app.route("/form", methods=["POST"])
def form():
    return jsonify(form=request.form.to_dict(flat=False))


@app.route("/upload", methods=["POST"])
def upload():
    out = {}
    for field, f in request.files.items():
        data = f.read()
        out[field] = {"filename": f.filename, "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()}
    return jsonify(files=out, form=request.form.to_dict())


@app.route("/body-sha256", methods=["POST", "PUT"])
def body_sha256():
    h = hashlib.sha256()
    n = 0
    stream = request.stream
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    return jsonify(size=n, sha256=h.hexdigest())


@app.route("/session/set/<value>")
def session_set(value):
    session["value"] = value
    resp = redirect(url_for("session_get"))
    resp.set_cookie("plain", "cookie-" + value)
    return resp


@app.route("/session/get")
def session_get():
    return jsonify(value=session.get("value"),
                   plain=request.cookies.get("plain"))


@app.route("/redirect")
def go_home():
    return redirect(url_for("index", _external=True))


@app.route("/stream/<int:n>")
def stream(n):
    def gen():
        for i in range(n):
            yield "line %d\n" % i
    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.route("/big/<int:size>")
def big(size):
    return Response(b"x" * size, mimetype="application/octet-stream")


@app.route("/status/<int:code>")
def status(code):
    return Response("status %d\n" % code, status=code,
                    headers={"X-Custom": "custom-%d" % code})


BARRIERS = {}
BARRIERS_LOCK = threading.Lock()


@app.route("/barrier/<key>/<int:n>")
def barrier(key, n):
    """Answers only once n requests with this key wait at once: n requests
    can pass only if the process runs n of them concurrently ("threads")."""
    with BARRIERS_LOCK:
        b = BARRIERS.setdefault(key, threading.Barrier(n, timeout=20))
    try:
        index = b.wait()
    except threading.BrokenBarrierError:
        return jsonify(error="only some of %d requests ran at once" % n), 504
    return jsonify(index=index, thread=threading.get_ident(),
                   multithread=request.environ.get("wsgi.multithread"),
                   pid=os.getpid())


@app.route("/boom")
def boom():
    raise RuntimeError("flask-boom-marker")


@app.errorhandler(404)
def not_found(e):
    return jsonify(error="not found", path=request.path), 404
