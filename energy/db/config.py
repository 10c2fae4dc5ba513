"""Turns the environment into Django's DATABASES entry.

``DATABASE_URL`` (``postgresql://…`` or ``sqlite:///path``) names a database; unset, the
embedded PostgreSQL is used. Either way waits are bounded, so a command never hangs on a
dead server, a black-holed connection or a held lock: it fails with ``unavailable`` and can
be retried. The README's Configuration section says which setting bounds which wait.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from energy.domain.exceptions import InvalidRequest

# The largest value PostgreSQL takes for a timeout in milliseconds (a signed 32-bit int).
_PG_MAX_MS = 2_147_483_647


class InvalidSetting(InvalidRequest, ImproperlyConfigured):
    """An ENERGYCTL_* environment variable holds a value energyctl cannot run with."""

    def __init__(self, name: str, problem: str):
        super().__init__({name: problem})
        self.name = name


def whole_number(name: str, default: int, *, minimum: int = 1, maximum: int = _PG_MAX_MS) -> int:
    """The environment variable ``name`` as a whole number in [minimum, maximum], or ``default`` when unset.

    A bound of 0 is refused, not passed on: PostgreSQL and libpq read 0 as "no limit" (or as
    the system's default), which would silently unbound the very wait the setting bounds.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidSetting(name, f"must be a whole number, not {raw!r}") from None
    if not minimum <= value <= maximum:
        raise InvalidSetting(name, f"must be between {minimum} and {maximum}, not {value}")
    return value


# Seconds to wait for a TCP/socket connection before calling the database unreachable.
CONNECT_TIMEOUT_S = whole_number("ENERGYCTL_CONNECT_TIMEOUT", 5, maximum=3600)
# How long a consume queues behind another holder of the same account's row lock. Far
# longer than any healthy transaction (a few ms); reaching it means something is stuck.
# SQLite has no row locks: there it is the busy timeout for the database file's write lock.
LOCK_TIMEOUT_MS = whole_number("ENERGYCTL_LOCK_TIMEOUT_MS", 5000)
# Upper bound for any single statement, so a runaway query cannot hold locks forever.
STATEMENT_TIMEOUT_MS = whole_number("ENERGYCTL_STATEMENT_TIMEOUT_MS", 30000)
# A client that stops half-way through a transaction (a stalled batch holding up to one
# chunk's account locks) is disconnected by the server after this long, releasing its locks.
IDLE_IN_TRANSACTION_TIMEOUT_MS = whole_number("ENERGYCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS", 10000)
# TCP keepalives: an idle connection whose peer vanished (host down, cable cut, firewall
# dropping packets) is found dead after idle + interval x count seconds.
KEEPALIVES_IDLE_S = whole_number("ENERGYCTL_KEEPALIVES_IDLE", 10, maximum=32767)
KEEPALIVES_INTERVAL_S = whole_number("ENERGYCTL_KEEPALIVES_INTERVAL", 5, maximum=32767)
KEEPALIVES_COUNT = whole_number("ENERGYCTL_KEEPALIVES_COUNT", 3, maximum=127)
# Sent data left unacknowledged this long ends the connection (the same 25 s by default).
TCP_USER_TIMEOUT_MS = whole_number(
    "ENERGYCTL_TCP_USER_TIMEOUT_MS", (KEEPALIVES_IDLE_S + KEEPALIVES_INTERVAL_S * KEEPALIVES_COUNT) * 1000
)
# The client's own deadline for one guarded database call (a consume, one chunk of a batch):
# past it the connection is shut down from this side. Nothing else bounds a peer that keeps
# the TCP connection alive but never answers (a frozen backend, a hung proxy or pooler).
CLIENT_TIMEOUT_MS = whole_number("ENERGYCTL_CLIENT_TIMEOUT_MS", STATEMENT_TIMEOUT_MS + 5000)
# "transaction" when a transaction-pooling PgBouncer sits between us and PostgreSQL: it
# refuses (or drops) the startup ``options`` that carry the timeouts and cannot keep
# psycopg's prepared statements, so the timeouts come from role settings that
# `energyctl migrate` writes, and are checked on every new connection.
POOLER = os.environ.get("ENERGYCTL_DB_POOLER", "").strip().lower()
if POOLER not in ("", "none", "transaction"):
    raise InvalidSetting("ENERGYCTL_DB_POOLER", f"must be 'transaction' or empty, not {POOLER!r}")
BEHIND_POOLER = POOLER == "transaction"
# Executions of one statement after which psycopg prepares it on the server, so the consume
# statement is parsed and planned once per connection instead of inside every row lock.
# Needs server-side binding (Django's ``server_side_binding`` option, set below): client-side
# binding, Django's default, never prepares. 0 prepares at once; "off" never.
# Off behind a pooler unless set explicitly (PgBouncer >= 1.22 with max_prepared_statements > 0).
PREPARE_THRESHOLD = os.environ.get("ENERGYCTL_PREPARE_THRESHOLD", "").strip().lower() or (
    "off" if BEHIND_POOLER else "5")
if PREPARE_THRESHOLD != "off":
    PREPARE_THRESHOLD = str(whole_number("ENERGYCTL_PREPARE_THRESHOLD", 5, minimum=0, maximum=1_000_000))
# Seconds a server keeps a database connection across requests; 0 closes it after each
# request (Django's meaning), which is a choice, not an unbounded wait.
CONN_MAX_AGE_S = whole_number("ENERGYCTL_CONN_MAX_AGE", 600, minimum=0, maximum=10**9)

# The consume design relies on READ COMMITTED: a statement that waited for a row lock
# re-reads the row's newest version instead of failing as REPEATABLE READ or SERIALIZABLE do.
ISOLATION = "read committed"


def session_settings() -> dict[str, str]:
    """The server settings every connection must have, by name (PostgreSQL)."""
    return {
        "lock_timeout": f"{LOCK_TIMEOUT_MS}ms",
        "statement_timeout": f"{STATEMENT_TIMEOUT_MS}ms",
        "idle_in_transaction_session_timeout": f"{IDLE_IN_TRANSACTION_TIMEOUT_MS}ms",
        "default_transaction_isolation": ISOLATION,
        # An answered `applied` must survive a server crash: a role or database default of
        # `off` would let the commit be acknowledged before its WAL reached the disk.
        "synchronous_commit": "on",
    }


def database_settings(url: str | None) -> dict:
    if not url:
        config = {
            "ENGINE": "energy.db.embedded",
            "NAME": "energyctl",
            "USER": "postgres",
            "OPTIONS": {},
        }
    else:
        import dj_database_url

        config = dj_database_url.parse(url)
        config.setdefault("OPTIONS", {})
    if config["ENGINE"].startswith("django.db.backends.postgresql") or config["ENGINE"] == "energy.db.embedded":
        _bound_postgres_waits(config["OPTIONS"])
    elif config["ENGINE"] == "django.db.backends.sqlite3":
        _sqlite_writers_queue(config["OPTIONS"])
    return config


def _bound_postgres_waits(options: dict) -> None:
    from psycopg import IsolationLevel

    options.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    options.setdefault("keepalives", 1)
    options.setdefault("keepalives_idle", KEEPALIVES_IDLE_S)
    options.setdefault("keepalives_interval", KEEPALIVES_INTERVAL_S)
    options.setdefault("keepalives_count", KEEPALIVES_COUNT)
    options.setdefault("tcp_user_timeout", TCP_USER_TIMEOUT_MS)
    # Every BEGIN names the level, so transactions are READ COMMITTED whatever the server's default.
    options.setdefault("isolation_level", IsolationLevel.READ_COMMITTED)
    options["prepare_threshold"] = None if PREPARE_THRESHOLD == "off" else int(PREPARE_THRESHOLD)
    options.setdefault("server_side_binding", True)
    if BEHIND_POOLER:
        return  # PgBouncer refuses `options`; role settings carry them (energy.db.role_settings)
    # libpq splits `options` at spaces; a space inside a value is escaped with a backslash.
    bounds = " ".join(f"-c {name}={value.replace(' ', chr(92) + ' ')}" for name, value in session_settings().items())
    options["options"] = f"{options['options']} {bounds}" if options.get("options") else bounds


def _sqlite_writers_queue(options: dict) -> None:
    # BEGIN IMMEDIATE takes the write lock when the transaction starts. A deferred
    # transaction reads first and then cannot upgrade to a writer while another holds the
    # lock: SQLite fails it at once ("database is locked") instead of letting it queue.
    options.setdefault("transaction_mode", "IMMEDIATE")
    options.setdefault("timeout", LOCK_TIMEOUT_MS / 1000)
