"""Turns database trouble into the domain's ``Unavailable``, once, for every use case."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
    connection,
    connections,
)

from energy.db import config as dbconfig
from energy.db import role_settings as session
from energy.db.deadline import watchdog
from energy.db.redact import redact_text
from energy.domain.exceptions import Unavailable

T = TypeVar("T")
log = logging.getLogger("energy.db")
# SQLSTATE 42P01: a table is missing, i.e. the schema was never migrated on this database.
_UNDEFINED_TABLE = "42P01"
# A prepared statement the client believes in is missing (26000) or one of its name already
# exists (42P05) on the server: a pooler moved the client to another server connection.
_LOST_PREPARED_STATEMENT = {"26000", "42P05"}
# The server ended a session left idle inside a transaction (a stalled client) after
# idle_in_transaction_session_timeout; the client hears of it on its next statement.
_IDLE_IN_TRANSACTION_TIMEOUT = "25P03"
NOT_MIGRATED = "the database has no energyctl schema yet: run `energyctl migrate`"
# Behind a pooler the timeouts are the role's settings, which migrate writes from its own
# ENERGYCTL_* environment: every process must share that configuration.
MIGRATE_WITH_THESE_SETTINGS = (
    "the role's settings in this database are not this process's; run `energyctl migrate` "
    "with the same ENERGYCTL_* settings as this process, then retry"
)
POOLED_PREPARED = (
    "the connection pooler mixed up prepared statements; set ENERGYCTL_PREPARE_THRESHOLD=off, "
    "or use PgBouncer >= 1.22 with max_prepared_statements > 0"
)
# psycopg connections whose session settings were checked (behind a pooler only).
_checked: weakref.WeakSet = weakref.WeakSet()


class LostConnection(Unavailable):
    """A connection kept from an earlier call was found dead (the server restarted, a proxy
    dropped it): it is closed now, and a new one may well succeed at once."""


def once_more_if_lost(read: Callable[[], T]) -> T:
    """``read()`` (a read-only call that guards itself), and once more if its kept connection was dead.

    Servers keep connections across requests. Instead of probing each one with a round trip
    before every request (Django's CONN_HEALTH_CHECKS), the first statement of a request is
    run through this: a connection that died while idle costs one failed read, retried on a
    new connection, and a live one costs nothing. Only for reads: a write is retried by its
    caller, with its idempotency key.
    """
    try:
        return read()
    except LostConnection as lost:
        log.info("a kept database connection was found closed (%s); reconnecting", lost.reason)
        return read()


@contextmanager
def database_guard(*, migrating: bool = False):
    """Map unreachable servers, timeouts, a missing schema and pooler trouble to Unavailable.

    Every call inside is bounded by the client's own deadline too (ENERGYCTL_CLIENT_TIMEOUT_MS),
    except a migration (``migrating``): it may run many statements, each bounded by the
    server's statement_timeout, and it is what writes the session settings checked here.
    On failure inside a caller's ``transaction.atomic()`` the caller's transaction is marked for
    rollback and its connection kept, so the block ends in a rollback, never in a silent loss
    of its earlier work; outside one a broken connection is dropped so the next call reconnects.
    """
    # The watchdog runs in a thread of its own: it is given this thread's connection object,
    # not the `connection` proxy, which would name the watchdog thread's connection.
    wrapper = connections[DEFAULT_DB_ALIAS]
    # SQLite waits only for its file lock, which its busy timeout bounds.
    bounded = wrapper.vendor == "postgresql" and not migrating
    token = watchdog.arm(wrapper, dbconfig.CLIENT_TIMEOUT_MS / 1000) if bounded else None
    # Opened by an earlier call (a request ago, perhaps) and outside any transaction of the caller.
    kept = wrapper.connection is not None and not wrapper.in_atomic_block
    try:
        if not migrating:
            _check_session()
        yield
    except (OperationalError, InterfaceError, InternalError) as exc:
        timed_out = watchdog.disarm(token)
        if isinstance(exc, InternalError) and _sqlstate(exc) != _IDLE_IN_TRANSACTION_TIMEOUT:
            raise
        if "no such table" in str(exc):  # SQLite reports a missing schema this way
            raise Unavailable(NOT_MIGRATED) from exc
        lost = kept and not timed_out and _broken(wrapper)
        _give_up_on_connection(drop=timed_out)
        reason = _deadline_reason() if timed_out else _reason(exc, migrating=migrating)
        raise (LostConnection if lost else Unavailable)(reason) from exc
    except ProgrammingError as exc:
        watchdog.disarm(token)
        sqlstate = _sqlstate(exc)
        if sqlstate == _UNDEFINED_TABLE:
            raise Unavailable(NOT_MIGRATED) from exc
        if sqlstate in _LOST_PREPARED_STATEMENT:
            # psycopg's record of what is prepared no longer matches the server: start afresh.
            _give_up_on_connection(drop=True)
            raise Unavailable(POOLED_PREPARED) from exc
        raise
    finally:
        if watchdog.disarm(token):
            # The deadline passed just as the call ended: the connection is shut, drop it.
            _give_up_on_connection(drop=True)


def _give_up_on_connection(*, drop: bool) -> None:
    if connection.in_atomic_block:
        # The caller's transaction is broken on the server; its atomic() must roll it back.
        connection.set_rollback(True)
    elif drop:
        connection.close()
    else:
        # A dead connection stays dead; drop it so the next call in this process reconnects.
        connection.close_if_unusable_or_obsolete()


def _broken(wrapper) -> bool:
    """The driver's connection is closed under us: the server or the network ended it."""
    raw = wrapper.connection
    return raw is None or bool(getattr(raw, "closed", False))


def _check_session() -> None:
    """Behind a pooler, once per connection: the role settings `migrate` writes must be in force.

    A pooled server connection older than those settings is corrected on the spot; only a
    role whose settings differ from this process's configuration is refused.
    """
    if not dbconfig.BEHIND_POOLER or connection.vendor != "postgresql":
        return
    connection.ensure_connection()
    if connection.connection in _checked:
        return
    wrong = session.differences(connection)
    if wrong:
        wrong = session.correct(connection)
        if wrong:
            log.info("session settings wrong on a pooled connection: %s", "; ".join(wrong))
            raise Unavailable(f"{'; '.join(wrong)}: {MIGRATE_WITH_THESE_SETTINGS}")
        log.info("a pooled server connection older than the role settings was brought in line")
    if not connection.in_atomic_block:  # a caller's rollback would undo a correction made inside it
        _checked.add(connection.connection)


def _deadline_reason() -> str:
    return f"no answer within {dbconfig.CLIENT_TIMEOUT_MS} ms (ENERGYCTL_CLIENT_TIMEOUT_MS)"


def _sqlstate(exc: Exception) -> str | None:
    return getattr(exc.__cause__, "sqlstate", None)


def _reason(exc: Exception, *, migrating: bool = False) -> str:
    sqlstate = _sqlstate(exc)
    if sqlstate == "55P03" and migrating:
        return (f"timed out after {dbconfig.LOCK_TIMEOUT_MS} ms (ENERGYCTL_LOCK_TIMEOUT_MS) waiting for a lock "
                "another session holds: run `energyctl migrate` again (it carries on where it stopped) "
                "once that session is done, or with a longer ENERGYCTL_LOCK_TIMEOUT_MS")
    if sqlstate == "55P03":
        return "timed out waiting for a row lock"
    if sqlstate == "57014":
        return "statement timed out"
    if sqlstate == _IDLE_IN_TRANSACTION_TIMEOUT:
        return "the transaction was left idle too long and the server ended it"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "unsupported startup parameter" in first_line:
        first_line += " (behind PgBouncer, set ENERGYCTL_DB_POOLER=transaction)"
    return redact_text(first_line)
