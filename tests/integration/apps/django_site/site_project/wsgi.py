"""WSGI entry point: Unit's {"module": "site_project.wsgi"} finds
"application" here."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_project.settings")
application = get_wsgi_application()
