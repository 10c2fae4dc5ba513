"""WSGI entry point for `energyctl serve` and any WSGI server."""

import os

from django.core.signals import request_started
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
application = get_wsgi_application()


def _check_kept_connection(**_kwargs) -> None:
    """Replace a kept connection that died (database restarted) before the request uses it.

    Django runs its CONN_HEALTH_CHECKS probe when a request first opens a Django cursor;
    the consume statement runs on the driver's cursor and would skip it, so the probe runs
    here, once per request, as Django's own would.
    """
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close_if_health_check_failed()


# After Django's own handler, which marks kept connections as due for a check.
request_started.connect(_check_kept_connection)
