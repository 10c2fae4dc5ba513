"""Whether the service can do its job: the database answers a trivial query."""

from __future__ import annotations

from django.db import connection

from energy.db.guard import database_guard, once_more_if_lost


def check_database() -> None:
    """Return when the database answers ``SELECT 1``; raise Unavailable otherwise.

    A kept connection that died while idle is replaced, not reported: the database is up.
    """
    once_more_if_lost(_select_one)


def _select_one() -> None:
    with database_guard(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
