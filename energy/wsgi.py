"""WSGI entry point for `energyctl serve` and any WSGI server.

Database connections are kept across requests and not probed before reuse: the first
statement of every API request, the token lookup (and /healthz's query), is retried once on
a new connection when the kept one died meanwhile (energy.db.guard.once_more_if_lost).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energy.settings")
application = get_wsgi_application()
