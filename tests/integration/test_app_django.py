"""A real Django project (python3-django, tests/integration/apps/django_site)
under Unit's `applications` config: a template page, static files collected
by `manage.py collectstatic` and served by a `share` beside the app, the
admin with a login, and a POSTed form with CSRF protection.

Run against Wharf; with WHARF_REF_UNITD=/path/to/unitd the same tests run
against NGINX Unit too (lib/apps.py).
"""

import os
import re

import pytest
import requests

from lib import apps
from lib.wharf import scaled

app_server = apps.server_fixture()

TIMEOUT = scaled(30)
SITE = apps.app_dir("django_site")
ADMIN_USER = "admin"
ADMIN_PASSWORD = "wharf-admin-pw"


@pytest.fixture(scope="module")
def site_data():
    """A data directory with the migrated database, a superuser and the
    collected static files; shared by the module's tests."""
    apps.require_modules("django")
    data = apps.shared_dir("django-data-", writable=True)
    env = {"WHARF_DJANGO_DATA": data,
           "WHARF_DJANGO_STATIC": os.path.join(data, "static"),
           "DJANGO_SETTINGS_MODULE": "site_project.settings",
           "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        manage = os.path.join(SITE, "manage.py")
        apps.run_python([manage, "migrate", "--noinput", "-v", "0"],
                        env=env, cwd=SITE)
        apps.run_python([manage, "createsuperuser", "--noinput",
                         "--username", ADMIN_USER,
                         "--email", "admin@example.com"],
                        env=dict(env, DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD),
                        cwd=SITE)
        apps.run_python([manage, "collectstatic", "--noinput", "-v", "0"],
                        env=env, cwd=SITE)
        # App processes may run unprivileged: SQLite writes the database
        # and a journal beside it.
        os.chmod(os.path.join(data, "db.sqlite3"), 0o666)
        for root, dirs, files in os.walk(os.path.join(data, "static")):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        yield data, env
    finally:
        apps.remove_tree(data)


def django_config(data, env, prefix=None, module="site_project.wsgi"):
    app = apps.python_app("django_site", module=module, environment=env)
    static = {"match": {"uri": "/static/*"},
              "action": {"share": data + "$uri"}}
    to_app = {"action": {"pass": "applications/django"}}
    if prefix:
        app["prefix"] = prefix
        to_app["match"] = {"uri": prefix + "/*"}
    return {
        "listeners": {"127.0.0.1:{port}": {"pass": "routes"}},
        "routes": [static, to_app],
        "applications": {"django": app},
    }


@pytest.fixture
def django(app_server, site_data):
    data, env = site_data
    return app_server.start(django_config(data, env))


def get(srv, path, session=None, **kw):
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("allow_redirects", False)
    return (session or requests).get(srv.url(path), **kw)


def csrf_token(html):
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert m, "no CSRF token in the form:\n" + html[:2000]
    return m.group(1)


def test_template_page(django):
    r = get(django, "/?name=Wharf")
    assert r.status_code == 200, r.text[:2000]
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["X-Frame-Options"] == "DENY"     # Django's middleware
    assert "<h1>Hello, Wharf!</h1>" in r.text
    assert "<p>6 items:</p>" in r.text
    items = re.findall(r'<li class="(odd|even)">(\d)\. (\w+)</li>', r.text)
    assert items[0] == ("odd", "1", "Alpha")
    assert items[-1] == ("even", "6", "Foxtrot")
    assert '<link rel="stylesheet" href="/static/pages/site.css">' in r.text
    # Autoescaping reaches the page.
    r = get(django, "/?name=%3Cb%3E")
    assert "<h1>Hello, &lt;b&gt;!</h1>" in r.text


def test_static_files_served_by_the_share(django, site_data):
    data, _ = site_data
    source = os.path.join(SITE, "pages", "static", "pages", "site.css")
    with open(source, "rb") as f:
        css = f.read()
    r = get(django, "/static/pages/site.css")
    assert r.status_code == 200
    assert r.content == css
    assert r.headers["Content-Type"].startswith("text/css")
    # A share answers with validators; DEBUG is off, so Django would not
    # serve /static/ at all.
    assert "ETag" in r.headers and "Last-Modified" in r.headers
    collected = os.path.join(data, "static", "admin", "css", "base.css")
    with open(collected, "rb") as f:
        base_css = f.read()
    r = get(django, "/static/admin/css/base.css")
    assert r.status_code == 200 and r.content == base_css
    assert get(django, "/static/pages/nope.css").status_code == 404


def test_django_404(django):
    r = get(django, "/no/such/page/")
    assert r.status_code == 404
    assert "Not Found" in r.text


def test_environ_seen_by_django(django):
    r = get(django, "/env/")
    assert r.status_code == 200
    assert r.json() == {
        "script_name": "", "path_info": "/env/", "path": "/env/",
        "host": "127.0.0.1:%d" % django.port, "secure": False,
        "remote_addr": "127.0.0.1", "server_port": str(django.port),
        "settings": "site_project.settings"}


def test_common_middleware_appends_slash(django):
    r = get(django, "/contact")
    assert r.status_code == 301
    assert r.headers["Location"] == "/contact/"


def admin_login(django, s, password=ADMIN_PASSWORD):
    r = get(django, "/admin/login/?next=/admin/", session=s)
    assert r.status_code == 200
    assert "csrftoken" in s.cookies
    token = csrf_token(r.text)
    return s.post(django.url("/admin/login/?next=/admin/"),
                  data={"csrfmiddlewaretoken": token, "username": ADMIN_USER,
                        "password": password, "next": "/admin/"},
                  timeout=TIMEOUT, allow_redirects=False)


def test_admin_login(django):
    with requests.Session() as s:
        r = get(django, "/admin/", session=s)
        assert r.status_code == 302
        assert r.headers["Location"] == "/admin/login/?next=/admin/"
        r = admin_login(django, s, password="wrong")
        assert r.status_code == 200
        assert "Please enter the correct username and password" in r.text
        r = admin_login(django, s)
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["Location"] == "/admin/"
        assert "sessionid" in s.cookies
        r = get(django, "/admin/", session=s)
        assert r.status_code == 200
        assert "Site administration" in r.text
        assert 'href="/admin/pages/message/"' in r.text
        r = get(django, "/admin/pages/message/", session=s)
        assert r.status_code == 200
        assert "Select message to change" in r.text
        # The admin's pages use the collected static files.
        assert "/static/admin/css/base.css" in r.text


def test_form_post_with_csrf(django):
    with requests.Session() as s:
        # Without the token (and its cookie): CSRF refuses the POST.
        r = requests.post(django.url("/contact/"),
                          data={"name": "Ann", "email": "ann@example.com",
                                "body": "hi"},
                          timeout=TIMEOUT, allow_redirects=False)
        assert r.status_code == 403
        assert "CSRF verification failed" in r.text
        r = get(django, "/contact/", session=s)
        assert r.status_code == 200
        token = csrf_token(r.text)
        assert '<form method="post" action="/contact/">' in r.text
        # An invalid field: the form comes back with Django's message.
        r = s.post(django.url("/contact/"),
                   data={"csrfmiddlewaretoken": token, "name": "Ann",
                         "email": "not-an-email", "body": "hi"},
                   timeout=TIMEOUT, allow_redirects=False)
        assert r.status_code == 200
        assert "Enter a valid email address." in r.text
        body = "caf\u00e9 \u2014 " + "long text " * 500
        r = s.post(django.url("/contact/"),
                   data={"csrfmiddlewaretoken": token, "name": "Ann",
                         "email": "ann@example.com", "body": body},
                   timeout=TIMEOUT, allow_redirects=False)
        assert r.status_code == 302, r.text[:2000]
        m = re.fullmatch(r"/thanks/(\d+)/", r.headers["Location"])
        assert m, r.headers["Location"]
        r = get(django, r.headers["Location"], session=s)
        assert r.status_code == 200
        assert "<h1>Thanks, Ann</h1>" in r.text
        assert ("Message %s from ann@example.com: %s"
                % (m.group(1), body.strip())) in r.text


def test_exception_is_500(django, site_data):
    r = get(django, "/boom/")
    assert r.status_code == 500
    assert "Server Error (500)" in r.text       # Django's page, DEBUG off
    # django.request logs the traceback to stderr.
    assert django.wait_log(r"django-boom-marker", timeout=10), \
        django.log_text()[-3000:]
    assert get(django, "/").status_code == 200


def test_prefix(app_server, site_data):
    """Unit's "prefix": Django gets SCRIPT_NAME and builds its URLs on it."""
    data, env = site_data
    srv = app_server.start(django_config(data, env, prefix="/site"))
    r = get(srv, "/site/env/")
    assert r.status_code == 200
    got = r.json()
    assert got["script_name"] == "/site"
    assert got["path_info"] == "/env/"
    assert got["path"] == "/site/env/"
    r = get(srv, "/site/contact/")
    assert r.status_code == 200
    assert '<form method="post" action="/site/contact/">' in r.text
    r = get(srv, "/site/admin/")
    assert r.status_code == 302
    assert r.headers["Location"] == "/site/admin/login/?next=/site/admin/"


def test_django_over_asgi(app_server, site_data):
    """The same project through Django's ASGI handler (site_project.asgi;
    the protocol is detected): the page, the admin login and the form."""
    data, env = site_data
    srv = app_server.start(django_config(data, env,
                                         module="site_project.asgi"))
    r = get(srv, "/?name=ASGI")
    assert r.status_code == 200, r.text[:2000]
    assert "<h1>Hello, ASGI!</h1>" in r.text
    assert get(srv, "/static/pages/site.css").status_code == 200
    with requests.Session() as s:
        r = admin_login(srv, s)
        assert r.status_code == 302 and r.headers["Location"] == "/admin/"
        assert "Site administration" in get(srv, "/admin/", session=s).text
        token = csrf_token(get(srv, "/contact/", session=s).text)
        r = s.post(srv.url("/contact/"),
                   data={"csrfmiddlewaretoken": token, "name": "Bo",
                         "email": "bo@example.com", "body": "over asgi"},
                   timeout=TIMEOUT, allow_redirects=False)
        assert r.status_code == 302, r.text[:2000]
        r = get(srv, r.headers["Location"], session=s)
        assert "<h1>Thanks, Bo</h1>" in r.text
    r = get(srv, "/env/")
    assert r.json()["path_info"] == "/env/"
    assert r.json()["remote_addr"] == "127.0.0.1"
