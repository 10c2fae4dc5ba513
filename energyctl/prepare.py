"""Getting a command ready to work: Django configured and, on the embedded PostgreSQL, migrated.

Every command calls ``prepare()`` once it has read its options, never at import time, so
``--help`` and usage errors never import Django or wait for a server.

While the command line starts, Python's cyclic garbage collector is paused (``main`` calls
``pause_collection``): start-up builds hundreds of thousands of long-lived objects (Typer,
Django, psycopg) and none of them is garbage, yet the collector walked them again and again
as they were made. ``prepare`` resumes it with everything made so far frozen, so later
collections never walk the start-up objects again and a long command collects as usual.
"""

from __future__ import annotations

import gc
import os

SETTINGS_MODULE = "energy.settings"
_paused = False


def pause_collection() -> None:
    """Stop cyclic collection until ``prepare`` (or ``resume_collection``) runs; a collector already off stays off."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collection() -> None:
    """Collect as usual again, keeping the objects made so far out of every later collection."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def prepare(*, schema: bool = True, log_level: str = "WARNING") -> None:
    """Configure Django once per process and, with ``schema``, migrate the embedded database if it needs it.

    ``log_level`` applies unless ENERGYCTL_LOG_LEVEL sets one: servers log each request,
    short-lived commands keep quiet.
    """
    from django.apps import apps

    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
        os.environ.setdefault("ENERGYCTL_LOG_LEVEL", log_level)
        from energy.setup import setup_django

        setup_django()
    resume_collection()
    if schema:
        from energy.db.migrate import ensure_schema

        ensure_schema()
