"""WSGI entry point for `energyctl serve` and any WSGI server.

Kept database connections are checked by Django itself (CONN_HEALTH_CHECKS): the first
Django cursor of a request probes a reused connection and replaces it if the database
restarted. Every statement of the API runs on Django's cursor, the token lookup first.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
application = get_wsgi_application()
