"""What the migrations since 0001 cost on a populated database, and what they block.

    python -m benchmarks.migration_cost [--rows 1000000] [--accounts 1000] [--writers 2] [--start 0002]

Makes a database of its own next to the configured one (``<name>_migration``, dropped and
recreated), migrates it to the migration before ``--start`` (0001 by default), fills it with
``--rows`` consumptions, then applies each later migration one at a time while writers keep
working the way code written for the schema before it would: a probe that every 10 ms reads a
balance, updates an account and inserts a consumption (timed: the longest it waited is what the
migration made a writer wait), and, beside 0006 and 0007, ``--writers`` connections doing the
same without pause. Prints the seconds each migration took and the longest the probe waited;
for every statement of the ledger migration (0006) and of the holds migration (0007), its
seconds, the locks the migrating backend was seen holding on the two tables while it ran
(sampled from pg_locks every few milliseconds: a statement shorter than that may show none),
and the longest probe wait that overlapped it. ``--start 0007`` measures the holds migration
alone on a table of ``--rows`` entries.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

PROBE_INTERVAL_S = 0.01
LOCK_SAMPLE_INTERVAL_S = 0.002
SUFFIX = "_migration"
MIGRATIONS = ("0002", "0003", "0004", "0005", "0006", "0007")
# The migrations measured statement by statement, with nonstop writers beside them.
STEPPED = ("0006", "0007")
TABLES = ("energy_account", "energy_consumption")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.migration_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="consumptions before migrating")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts they are spread over")
    parser.add_argument("--start", default=MIGRATIONS[0], choices=MIGRATIONS, help="first migration measured")
    parser.add_argument("--writers", type=int, default=2, help="old-schema writers besides the probe, never pausing")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)

    from energy.setup import setup_django

    setup_django()
    from energyctl.bench import database

    first = MIGRATIONS.index(args.start)
    target = _old_database(database, MIGRATIONS[first - 1] if first else "0001")
    _populate(target, args.rows, args.accounts)
    report = {"rows": args.rows, "accounts": args.accounts, "writers": args.writers, "migrations": [
        _measure(target, migration, args.writers) for migration in MIGRATIONS[first:]]}
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
    return 0


def _old_database(database, migration: str):
    """The benchmark's database, recreated next to the configured one and migrated to ``migration`` only."""
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
    call_command("migrate", "energy", migration, verbosity=0)
    connection.close()
    return database.Target(name=name, server=server)


def _populate(target, rows: int, accounts: int) -> None:
    """Accounts and consumptions in the schema the database has now (0001, or a later one)."""
    with target.connect() as conn:
        if _has_column(conn, "energy_account", "opening_energy"):
            conn.execute("INSERT INTO energy_account (id, energy, opening_energy)"
                         " SELECT g, 1000000000, 1000000000 FROM generate_series(1, %s) g", (accounts,))
        else:
            conn.execute("INSERT INTO energy_account (id, energy) SELECT g, 1000000000 FROM generate_series(1, %s) g",
                         (accounts,))
        client = ("client_id, ", "1, ") if _has_column(conn, "energy_consumption", "client_id") else ("", "")
        conn.execute(f"""INSERT INTO energy_consumption ({client[0]}account_id, amount, idempotency_key, balance_after,
                         created_at) SELECT {client[1]}1 + g %% %s, 1, 'key-' || g, 0, now()
                         FROM generate_series(1, %s) g""",  # noqa: S608 - fixed column names
                     (accounts, rows))
        conn.execute("VACUUM ANALYZE energy_account, energy_consumption")


def _has_column(conn, table: str, column: str) -> bool:
    return conn.execute("SELECT FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                        (table, column)).fetchone() is not None


def _measure(target, migration: str, writers: int) -> dict:
    from django.core.management import call_command
    from django.db import connection

    # Writers as the code of the schema before ``migration`` writes: with a client from 0002 on.
    with_client = migration > "0002"
    probe = _Probe(target, with_client=with_client)
    # The nonstop writers run beside the ledger migration only: 0002 and 0004 take locks in an
    # order that deadlocks with nonstop writers (which is not what is measured here).
    busy = [_Probe(target, interval=0.0, name=f"writer-{n}", with_client=with_client)
            for n in range(writers if migration in STEPPED else 0)]
    for thread in (probe, *busy):
        thread.start()
    time.sleep(0.2)
    statements: list[dict] = []
    sampler = None
    if migration in STEPPED:
        connection.ensure_connection()
        sampler = _LockSampler(target, connection.connection.info.backend_pid)
        sampler.start()
    started = time.perf_counter()
    with connection.execute_wrapper(_StatementClock(statements)):
        call_command("migrate", "energy", migration, verbosity=0)
    seconds = time.perf_counter() - started
    for thread in (probe, *busy):
        thread.stop()
    result = {"migration": migration, "seconds": round(seconds, 2), **probe.figures(),
              "writer_transactions": sum(len(thread.waits) for thread in busy)}
    if sampler is not None:
        sampler.stop()
        result["statements"] = [_statement_figures(s, sampler, probe) for s in statements if _is_schema_work(s)]
    return result


class _StatementClock:
    """A query wrapper that notes when each statement of the migration began and ended."""

    def __init__(self, statements: list[dict]):
        self.statements = statements

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.statements.append({"sql": " ".join(sql.split()), "began": began, "ended": time.perf_counter()})


def _is_schema_work(statement: dict) -> bool:
    """Statements that change the schema, not the catalog look-ups that decide whether a step is done."""
    return not statement["sql"].upper().startswith(("SELECT", "SET ", "SAVEPOINT", "RELEASE", "INSERT INTO \"DJANGO"))


def _statement_figures(statement: dict, sampler: "_LockSampler", probe: "_Probe") -> dict:
    began, ended = statement["began"], statement["ended"]
    locks = sorted({f"{table} {mode}" for at, held in sampler.samples if began <= at <= ended for table, mode in held})
    overlapping = [end - start for start, end in probe.spans if start <= ended and end >= began]
    return {"sql": statement["sql"][:110], "seconds": round(ended - began, 3), "locks_seen": locks,
            "probe_longest_wait_ms": round(max(overlapping, default=0.0) * 1000, 1)}


class _LockSampler(threading.Thread):
    """Which locks the migrating backend holds on the two tables, looked at every few milliseconds."""

    def __init__(self, target, pid: int):
        super().__init__(daemon=True)
        self.target, self.pid, self.stopping = target, pid, threading.Event()
        self.samples: list[tuple[float, list[tuple[str, str]]]] = []

    def run(self):
        with self.target.connect() as conn:
            while not self.stopping.is_set():
                held = conn.execute(
                    "SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE l.pid = %s AND l.granted AND c.relname = ANY(%s)", (self.pid, list(TABLES))).fetchall()
                self.samples.append((time.perf_counter(), held))
                time.sleep(LOCK_SAMPLE_INTERVAL_S)

    def stop(self):
        self.stopping.set()
        self.join(30)


class _Probe(threading.Thread):
    """Old-schema work on its own connection, timed: how long did the migration hold it up?"""

    def __init__(self, target, interval: float = PROBE_INTERVAL_S, name: str = "probe", with_client: bool = False):
        super().__init__(daemon=True, name=name)
        self.target, self.interval, self.stopping = target, interval, threading.Event()
        self.client = ("client_id, ", "1, ") if with_client else ("", "")
        self.waits: list[float] = []
        self.spans: list[tuple[float, float]] = []
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
                        conn.execute(f"INSERT INTO energy_consumption ({self.client[0]}account_id, amount,"  # noqa: S608
                                     f" idempotency_key, balance_after, created_at) VALUES ({self.client[1]}2, 1, %s,"
                                     " 0, now())",
                                     (f"{self.name}-{time.time_ns()}-{n}",))
                except Exception as exc:  # noqa: BLE001 - counted and shown, it is the finding
                    kind = getattr(exc, "sqlstate", None) or type(exc).__name__
                    self.failures[kind] = self.failures.get(kind, 0) + 1
                ended = time.perf_counter()
                self.waits.append(ended - started)
                self.spans.append((started, ended))
                if self.interval:
                    time.sleep(self.interval)

    def stop(self):
        self.stopping.set()
        self.join(30)

    def figures(self) -> dict:
        waits = sorted(self.waits) or [0.0]
        return {"probe_iterations": len(self.waits), "probe_max_wait_ms": round(waits[-1] * 1000, 1),
                "probe_p99_ms": round(waits[int(len(waits) * 0.99) - 1] * 1000, 1) if len(waits) > 1 else None,
                "probe_failures": self.failures}


def _print(report: dict) -> None:
    print(f"{report['rows']:,} consumptions over {report['accounts']:,} accounts, "
          f"{report['writers']} old-schema writers besides the probe")
    for row in report["migrations"]:
        print(f"  {row['migration']}: {row['seconds']} s; old-schema probe: {row['probe_iterations']} iterations, "
              f"longest wait {row['probe_max_wait_ms']} ms, p99 {row['probe_p99_ms']} ms, "
              f"failures {row['probe_failures'] or 'none'}; writers: {row['writer_transactions']} transactions")
        for statement in row.get("statements", []):
            print(f"    {statement['seconds']:>8.3f} s  probe waited {statement['probe_longest_wait_ms']:>7.1f} ms  "
                  f"{', '.join(statement['locks_seen']) or '-'}\n              {statement['sql']}")


if __name__ == "__main__":
    raise SystemExit(main())
