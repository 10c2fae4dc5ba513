"""The benchmark's own database on the configured server, so real data is never touched.

The benchmark drops and recreates its database between workloads. It does so only to a
database it created itself, which it marks with a comment: never the one DATABASE_URL names,
and never another that happens to have the name it would use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Appended to the configured database's name: the benchmark drops and recreates this one.
BENCH_SUFFIX = "_bench"
# The comment on every database the benchmark creates; one without it is never dropped.
MARK = "energyctl bench: a scratch database, dropped and recreated by every run"
# Every account starts this rich, so a run of any length never ends in insufficient_energy.
START_ENERGY = 10**15


@dataclass(frozen=True)
class Target:
    name: str
    server: dict  # host, port, user, password: what psql/pgbench need besides the name
    home: str = "postgres"  # the configured database, to reconnect through when "postgres" is closed

    def connect(self, **kwargs):
        import psycopg

        return psycopg.connect(dbname=self.name, autocommit=True, **self.server, **kwargs)


def prepare() -> Target:
    """Recreate the benchmark database next to the configured one and migrate it.

    Raises ValueError (the command's invalid_request) for a name that is not the benchmark's to drop.
    """
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("the benchmark needs PostgreSQL (DATABASE_URL is not postgresql://…)")
    params = connection.get_connection_params()
    server = {k: params[k] for k in ("host", "port", "user", "password") if params.get(k)}
    home = connection.settings_dict["NAME"]
    name = os.environ.get("ENERGYCTL_BENCH_DATABASE") or home + BENCH_SUFFIX
    if name == home:
        raise ValueError(f"ENERGYCTL_BENCH_DATABASE names {name!r}, the database energyctl uses; the benchmark "
                         "drops and reloads its database, so give it a name of its own")
    _recreate(server, name, home)
    connection.close()
    connection.settings_dict["NAME"] = name
    call_command("migrate", verbosity=0)
    connection.close()
    return Target(name=name, server=server, home=home)


def recreate(target: Target) -> None:
    """An empty database under the target's name: no tables, no statistics, as a new user starts."""
    _recreate(target.server, target.name, target.home)


def _recreate(server: dict, name: str, fallback_db: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        admin = psycopg.connect(dbname="postgres", autocommit=True, **server)
    except psycopg.OperationalError:
        admin = psycopg.connect(dbname=fallback_db, autocommit=True, **server)
    with admin:
        found = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                              [name]).fetchone()
        if found is not None and found[0] != MARK:
            raise ValueError(f"a database named {name!r} exists and energyctl bench did not create it, so it is "
                             "never dropped; set ENERGYCTL_BENCH_DATABASE to a new name")
        database = sql.Identifier(name)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(database))
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(database, sql.Literal(MARK)))


def reset(target: Target, accounts: int) -> None:
    """Empty the tables and give accounts 1..n the starting energy, freshly vacuumed."""
    with target.connect() as conn:
        # CASCADE: rows that name an account (a client's account allow-list) go with it.
        conn.execute("TRUNCATE energy_consumption, energy_account RESTART IDENTITY CASCADE")
        conn.execute(
            "INSERT INTO energy_account (id, energy, opening_energy) SELECT g, %s, %s FROM generate_series(1, %s) g",
            (START_ENERGY, START_ENERGY, accounts),
        )
        conn.execute("VACUUM ANALYZE energy_account, energy_consumption")


def check_invariants(target: Target, applied: int | None = None, in_flight: int = 0) -> list[str]:
    """Every guarantee of the contract, checked on the data a run left behind.

    ``in_flight``: requests a load generator may have sent but not counted when its time
    ran out (wrk stops reading answers on the clock); they may be recorded without an answer.
    """
    problems = []
    with target.connect() as conn:
        negative = conn.execute("SELECT count(*) FROM energy_account WHERE energy < 0").fetchone()[0]
        if negative:
            problems.append(f"{negative} accounts below zero")
        drift = conn.execute(
            """SELECT count(*) FROM energy_account a
               LEFT JOIN (SELECT account_id, sum(amount) AS spent FROM energy_consumption GROUP BY account_id) c
                 ON c.account_id = a.id
               WHERE a.energy <> a.opening_energy - coalesce(c.spent, 0)""",
        ).fetchone()[0]
        if drift:
            problems.append(f"{drift} accounts whose balance is not opening energy minus recorded consumptions")
        records, keys = conn.execute(
            "SELECT count(*), count(DISTINCT (client_id, idempotency_key)) FROM energy_consumption"
        ).fetchone()
        if records != keys:
            problems.append(f"{records - keys} keys recorded more than once")
    if applied is not None and not 0 <= records - applied <= in_flight:
        problems.append(f"{applied} requests answered applied but {records} consumptions recorded")
    return problems


def server_version(target: Target) -> str:
    with target.connect() as conn:
        return conn.execute("SHOW server_version").fetchone()[0]
