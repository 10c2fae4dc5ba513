"""What one consume statement costs the server, with and without holds on the account.

    python -m benchmarks.consume_statement [--baseline REV] [--rows 200000] [--consumes 3000] [--rounds 5] [--json]

In a throwaway embedded PostgreSQL whose entry table first gets ``--rows`` consumptions of an
account of their own (analyzed before every round, as autovacuum would keep a live table),
times the consume statement (``statements.CONSUME``) run
back to back on one connection, in autocommit as ``consume()`` runs it, new keys every time,
prepared on the server after its first runs, in rounds that alternate:
- ``now, held 0``: this checkout's statement on an account with nothing held (the release
  costs one more CTE whose scan key is NULL);
- ``now, held > 0``: the same on an account with open holds that have not expired (the release
  probes the open-holds index and finds nothing due);
- ``now, 1 expired``: the same, one expired hold released by each consume (a hold of 1 with a
  past expiry is planted before each, outside the timing);
- ``baseline, held 0``: with ``--baseline REV``, the consume statement of git revision REV
  (e.g. the commit before holds), on an account with nothing held.
Prints the median microseconds per statement of each; no figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import types
from pathlib import Path

OPENING = 10**15


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.consume_statement",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision whose consume statement is timed beside this one")
    parser.add_argument("--rows", type=int, default=200_000, help="entries in the table before timing")
    parser.add_argument("--consumes", type=int, default=3_000, help="statements per round and case")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="energyctl-consume-bench-"))
    os.environ["ENERGYCTL_PGDATA"] = str(root / "pgdata")
    os.environ.pop("DATABASE_URL", None)
    try:
        figures = run(options.rows, options.consumes, options.rounds, options.baseline)
    finally:
        from energy.db.embedded import server as embedded_pg

        embedded_pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    if options.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:<40} {value}")
    return 0


def run(rows: int, consumes: int, rounds: int, baseline: str | None) -> dict:
    from energyctl.prepare import prepare

    prepare()
    from django.db import connection

    from energy.db import statements

    cases = {"now, held 0": (statements.CONSUME, 1, None), "now, held > 0": (statements.CONSUME, 2, None),
             "now, 1 expired": (statements.CONSUME, 3, _plant_expired_hold)}
    if baseline:
        cases[f"baseline {baseline}, held 0"] = (_statement_of(baseline), 4, None)
    _accounts(rows)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(rounds + 1):
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE energy_account, energy_consumption")
        for name, (sql, account, before_each) in cases.items():
            per_statement = _time(sql, account, consumes, f"r{round_}-{account}", before_each)
            if round_:  # the first round warms the caches and the prepared statements up
                samples[name].append(per_statement)
    return {"rows": rows, "consumes_per_round": consumes, "rounds": rounds,
            **{f"{name} (us)": round(statistics.median(values) * 1e6, 1) for name, values in samples.items()}}


def _accounts(rows: int) -> None:
    """Accounts 1..5; account 2 keeps ten open holds that expire in a week; account 5 has ``rows`` consumptions."""
    from django.db import connection

    from energy.application.holds import hold

    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO energy_account (id, energy, opening_energy) SELECT g, %s, %s"
                       " FROM generate_series(1, 5) g", [OPENING, OPENING])
        cursor.execute("INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after,"
                       " seq, created_at) SELECT 1, 5, 1, 'fill-' || n, %s - n, n, now()"
                       " FROM generate_series(1, %s) n", [OPENING, rows])
        cursor.execute("UPDATE energy_account SET energy = energy - %s, last_seq = %s WHERE id = 5", [rows, rows])
    for n in range(10):
        hold(account_id=2, amount=1, idempotency_key=f"week-{n}", expires_in=604_800)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE energy_account")
        cursor.execute("VACUUM ANALYZE energy_consumption")


def _plant_expired_hold(account_id: int, key: str) -> None:
    from django.db import connection

    from energy.application.holds import hold

    hold(account_id=account_id, amount=1, idempotency_key=f"hold-{key}", expires_in=1)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE energy_consumption SET expires_at = statement_timestamp() WHERE idempotency_key = %s",
                       [f"hold-{key}"])


def _time(sql: str, account_id: int, count: int, prefix: str, before_each) -> float:
    """Seconds per statement, the statement alone timed, on Django's connection in autocommit."""
    from django.db import connection

    from energy.db.statements import int8

    spent = 0.0
    with connection.cursor() as cursor:
        for n in range(count):
            key = f"{prefix}-{n}"
            if before_each is not None:
                before_each(account_id, key)
            params = {"client_id": int8(1), "account_id": int8(account_id), "amount": int8(1), "key": key}
            started = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            spent += time.perf_counter() - started
    return spent / count


def _statement_of(revision: str) -> str:
    """The CONSUME statement as ``energy/db/statements.py`` of ``revision`` builds it from this schema's names."""
    source = subprocess.run(["git", "show", f"{revision}:energy/db/statements.py"], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parent.parent).stdout
    module = types.ModuleType(f"statements_{revision}")
    exec(compile(source, module.__name__, "exec"), module.__dict__)  # noqa: S102 - this repository's own source
    return module.CONSUME


if __name__ == "__main__":
    raise SystemExit(main())
