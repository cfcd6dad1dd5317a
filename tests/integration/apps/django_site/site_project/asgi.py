"""ASGI entry point: Unit's {"module": "site_project.asgi"} finds
"application" here (Django's ASGIHandler; Unit detects the protocol)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_project.settings")
application = get_asgi_application()
