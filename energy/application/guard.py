"""Turns database trouble into the domain's ``Unavailable``, once, for every use case."""

from __future__ import annotations

from contextlib import contextmanager

from django.db import InterfaceError, OperationalError, ProgrammingError, connection

from energy.domain.exceptions import Unavailable
from energy.redact import redact_text

# SQLSTATE 42P01: a table is missing, i.e. the schema was never migrated on this database.
_UNDEFINED_TABLE = "42P01"
NOT_MIGRATED = "the database has no energyctl schema yet: run `energyctl migrate`"


@contextmanager
def database_guard():
    """Map unreachable servers, lock and statement timeouts, and a missing schema to Unavailable."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        if "no such table" in str(exc):  # SQLite reports a missing schema this way
            raise Unavailable(NOT_MIGRATED) from exc
        # A dead connection stays dead; drop it so the next call in this process reconnects.
        connection.close_if_unusable_or_obsolete()
        raise Unavailable(_reason(exc)) from exc
    except ProgrammingError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != _UNDEFINED_TABLE:
            raise
        raise Unavailable(NOT_MIGRATED) from exc


def _reason(exc: Exception) -> str:
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate == "55P03":
        return "timed out waiting for a row lock"
    if sqlstate == "57014":
        return "statement timed out"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact_text(first_line)

