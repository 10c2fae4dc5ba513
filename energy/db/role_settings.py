"""Server settings that must hold on every PostgreSQL connection, even behind a pooler.

Directly connected, each connection sends them as the startup ``options`` (energy.db.config).
A transaction-pooling PgBouncer refuses that parameter, and every transaction may run on
another server connection, so behind it they are the role's defaults in this database
(``ALTER ROLE current_user IN DATABASE … SET``), which every new server session starts
with. ``energyctl migrate`` writes them, and sets them on its own session too.

A server connection PgBouncer opened before they were written keeps the old values. When a
client connection is first handed one, it finds the role's settings right and its session's
wrong, and sets exactly the role's values on that session (``correct``): what the server
connection would have started with had it been opened later, so the change is right for
every client that shares it. Only when the role's settings themselves differ from this
process's configuration is the connection refused, and then `energyctl migrate` is the fix.
"""

from __future__ import annotations

from psycopg import sql

from energy.db import config as dbconfig

_CHECK = "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)"
# This role's defaults in this database, as `ALTER ROLE … IN DATABASE … SET` wrote them.
_WRITTEN = """
SELECT unnest(setconfig) FROM pg_db_role_setting
WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
"""
_OLDER_SESSIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND backend_start < %s
"""
# When this process last changed the role's settings (None: it never did).
changed_at = None


def write_role_settings(connection) -> bool:
    """Make the settings this role's defaults in the current database, and this session's; True if they changed.

    One transaction, so behind a pooler every statement runs on one server connection, which
    is the one left with the settings in force.
    """
    global changed_at
    from django.db import transaction

    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        changed = bool(role_differences(cursor))
        cursor.execute("SELECT current_database(), now()")
        database, now = cursor.fetchone()
        for name, value in dbconfig.session_settings().items():
            statement = sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} SET {} = {}").format(
                sql.Identifier(database), sql.Identifier(name), sql.Literal(value)
            )
            cursor.execute(statement.as_string(connection.connection))
        _set_on_session(cursor)
    if changed:
        changed_at = now
    return changed


def sessions_older_than_the_settings(connection) -> int:
    """Other sessions of this role in this database opened before this process changed its settings."""
    if changed_at is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_OLDER_SESSIONS, [changed_at])
        return cursor.fetchone()[0]


def differences(connection) -> list[str]:
    """Each setting not in force on ``connection``, as "name is X, expected Y"; empty when all hold."""
    with connection.cursor() as cursor:
        return _session_differences(cursor)


def correct(connection) -> list[str]:
    """Bring this session in line with the role's settings; what is still wrong (empty: nothing).

    One transaction, so behind a pooler the check and the correction run on the same server
    connection. The session is set only when the role's settings are exactly this process's
    configuration: then the values set are the ones any newer server session starts with.
    """
    from django.db import transaction

    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        wrong = _session_differences(cursor)
        if not wrong or role_differences(cursor):
            return wrong
        _set_on_session(cursor)
        return _session_differences(cursor)


def role_differences(cursor) -> list[str]:
    """Each wanted setting the role's defaults in this database lack or give another value."""
    cursor.execute(_WRITTEN)
    written = dict(item.split("=", 1) for (item,) in cursor.fetchall())
    return [name for name, value in dbconfig.session_settings().items()
            if _normal(written.get(name, "")) != _normal(value)]


def _session_differences(cursor) -> list[str]:
    wanted = {name: _normal(value) for name, value in dbconfig.session_settings().items()}
    cursor.execute(_CHECK, [list(wanted)])
    found = {name: _normal(setting + (unit or "")) for name, setting, unit in cursor.fetchall()}
    return [f"{name} is {found.get(name)}, expected {value}" for name, value in wanted.items()
            if found.get(name) != value]


def _set_on_session(cursor) -> None:
    # set_config(…, false): for the session, not only this transaction; it survives the commit.
    for name, value in dbconfig.session_settings().items():
        cursor.execute("SELECT set_config(%s, %s, false)", [name, value])


def _normal(value: str) -> str:
    return value.replace(" ", "").lower()


def on_post_migrate(sender, using, **kwargs) -> None:
    """After `migrate` behind a pooler, write the role settings the pooled sessions rely on."""
    from django.db import connections

    connection = connections[using]
    if dbconfig.BEHIND_POOLER and connection.vendor == "postgresql":
        write_role_settings(connection)
