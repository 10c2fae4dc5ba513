"""Django set-up outside ``manage.py``: the CLI, and every child process a command starts."""

from __future__ import annotations

import logging
import os


def setup_django(*, database: dict | None = None) -> None:
    """Configure Django with the project's ``settings``, once per process.

    ``database`` overrides keys of the default connection's settings (e.g. ``{"NAME": …}``),
    so a child process reaches the same database as the parent that started it. Call it
    before the first query: a connection already open keeps what it was opened with.
    """
    from django.apps import apps

    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energy.settings")
        import django

        django.setup()
    if database:
        from django.db import connections

        connections["default"].settings_dict.update(database)


def quiet_consume_log() -> None:
    """Silence the per-consume INFO record where thousands of consumes would drown real output."""
    logging.getLogger("energy").setLevel(logging.WARNING)
