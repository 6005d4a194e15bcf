"""WSGI entry point (for gunicorn & co.; the harness normally uses ``manage.py runserver``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pitchdesk.settings")
application = get_wsgi_application()
