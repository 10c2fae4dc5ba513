"""Whether the service can do its job: the database answers a trivial query."""

from __future__ import annotations

from django.db import connection

from energy.application.guard import database_guard


def check_database() -> None:
    """Return when the database answers ``SELECT 1``; raise Unavailable otherwise."""
    with database_guard(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
