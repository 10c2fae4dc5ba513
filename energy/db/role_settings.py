"""Server settings that must hold on every PostgreSQL connection, even behind a pooler.

Directly connected, each connection sends them as the startup ``options`` (energy.db.config).
A transaction-pooling PgBouncer refuses that parameter, and every transaction may run on
another server connection, so behind it they are the role's defaults in this database
(``ALTER ROLE current_user IN DATABASE … SET``), which every new server session starts
with. ``energyctl migrate`` writes them; each new client connection then checks them once.
"""

from __future__ import annotations

from psycopg import sql

from energy.db import config as dbconfig

_CHECK = "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)"


def write_role_settings(connection) -> None:
    """Make the settings this role's defaults in the current database (new sessions get them)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (database,) = cursor.fetchone()
        for name, value in dbconfig.session_settings().items():
            statement = sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} SET {} = {}").format(
                sql.Identifier(database), sql.Identifier(name), sql.Literal(value)
            )
            cursor.execute(statement.as_string(connection.connection))


def differences(connection) -> list[str]:
    """Each setting not in force on ``connection``, as "name is X, expected Y"; empty when all hold."""
    wanted = {name: _normal(value) for name, value in dbconfig.session_settings().items()}
    with connection.cursor() as cursor:
        cursor.execute(_CHECK, [list(wanted)])
        found = {name: _normal(setting + (unit or "")) for name, setting, unit in cursor.fetchall()}
    return [f"{name} is {found.get(name)}, expected {value}" for name, value in wanted.items()
            if found.get(name) != value]


def _normal(value: str) -> str:
    return value.replace(" ", "").lower()


def on_post_migrate(sender, using, **kwargs) -> None:
    """After `migrate` behind a pooler, write the role settings the pooled sessions rely on."""
    from django.db import connections

    connection = connections[using]
    if dbconfig.BEHIND_POOLER and connection.vendor == "postgresql":
        write_role_settings(connection)
