"""What the migrations since 0001 (0002, 0003, 0004) cost on a populated database, and what they block.

    python -m benchmarks.migration_cost [--rows 1000000] [--accounts 1000]

Makes a database of its own next to the configured one (``<name>_migration``, dropped and
recreated), migrates it to 0001, fills it with ``--rows`` consumptions, then applies 0002,
0003 and 0004 one at a time while a probe connection keeps working the way code written for
the old schema would: every 10 ms it reads a balance, updates an account and inserts a
consumption. Prints the seconds each migration took and the longest the probe waited.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

PROBE_INTERVAL_S = 0.01
SUFFIX = "_migration"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.migration_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="consumptions before migrating")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts they are spread over")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)

    from energy.setup import setup_django

    setup_django()
    from energyctl.bench import database

    target = _old_database(database)
    _populate(target, args.rows, args.accounts)
    report = {"rows": args.rows, "accounts": args.accounts, "migrations": [
        _measure(target, migration) for migration in ("0002", "0003", "0004")]}
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
    return 0


def _old_database(database):
    """The benchmark's database, recreated next to the configured one and migrated to 0001 only."""
    import psycopg
    from django.core.management import call_command
    from django.db import connection
    from psycopg import sql

    params = connection.get_connection_params()
    server = {k: params[k] for k in ("host", "port", "user", "password") if params.get(k)}
    name = connection.settings_dict["NAME"] + SUFFIX
    with psycopg.connect(dbname=connection.settings_dict["NAME"], autocommit=True, **server) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    connection.close()
    connection.settings_dict["NAME"] = name
    call_command("migrate", "energy", "0001", verbosity=0)
    connection.close()
    return database.Target(name=name, server=server)


def _populate(target, rows: int, accounts: int) -> None:
    with target.connect() as conn:
        conn.execute("INSERT INTO energy_account (id, energy) SELECT g, 1000000000 FROM generate_series(1, %s) g",
                     (accounts,))
        conn.execute("""INSERT INTO energy_consumption (account_id, amount, idempotency_key, balance_after, created_at)
                        SELECT 1 + g %% %s, 1, 'key-' || g, 0, now() FROM generate_series(1, %s) g""",
                     (accounts, rows))
        conn.execute("VACUUM ANALYZE energy_account, energy_consumption")


def _measure(target, migration: str) -> dict:
    from django.core.management import call_command

    probe = _Probe(target)
    probe.start()
    time.sleep(0.2)
    started = time.perf_counter()
    call_command("migrate", "energy", migration, verbosity=0)
    seconds = time.perf_counter() - started
    probe.stop()
    return {"migration": migration, "seconds": round(seconds, 2), **probe.figures()}


class _Probe(threading.Thread):
    """Old-schema work on its own connection, timed: how long did the migration hold it up?"""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target, self.stopping = target, threading.Event()
        self.waits: list[float] = []
        self.failures: dict[str, int] = {}

    def run(self):
        with self.target.connect() as conn:
            n = 0
            while not self.stopping.is_set():
                n += 1
                started = time.perf_counter()
                try:
                    with conn.transaction():
                        conn.execute("SELECT energy FROM energy_account WHERE id = 1").fetchone()
                        conn.execute("UPDATE energy_account SET energy = energy - 1 WHERE id = 2")
                        conn.execute("INSERT INTO energy_consumption (account_id, amount, idempotency_key,"
                                     " balance_after, created_at) VALUES (2, 1, %s, 0, now())",
                                     (f"probe-{time.time_ns()}-{n}",))
                except Exception as exc:  # noqa: BLE001 - counted and shown, it is the finding
                    kind = getattr(exc, "sqlstate", None) or type(exc).__name__
                    self.failures[kind] = self.failures.get(kind, 0) + 1
                self.waits.append(time.perf_counter() - started)
                time.sleep(PROBE_INTERVAL_S)

    def stop(self):
        self.stopping.set()
        self.join(30)

    def figures(self) -> dict:
        waits = sorted(self.waits) or [0.0]
        return {"probe_iterations": len(self.waits), "probe_max_wait_ms": round(waits[-1] * 1000, 1),
                "probe_p99_ms": round(waits[int(len(waits) * 0.99) - 1] * 1000, 1) if len(waits) > 1 else None,
                "probe_failures": self.failures}


def _print(report: dict) -> None:
    print(f"{report['rows']:,} consumptions over {report['accounts']:,} accounts")
    for row in report["migrations"]:
        print(f"  {row['migration']}: {row['seconds']} s; old-schema probe: {row['probe_iterations']} iterations, "
              f"longest wait {row['probe_max_wait_ms']} ms, p99 {row['probe_p99_ms']} ms, "
              f"failures {row['probe_failures'] or 'none'}")


if __name__ == "__main__":
    raise SystemExit(main())
