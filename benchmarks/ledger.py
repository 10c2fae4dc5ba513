"""The ledger's read side on a large ledger: ``energyctl audit`` and an account's history.

    python -m benchmarks.ledger [--consumptions 1000000] [--accounts 10000] [--runs 3] [--json]

Builds a sound ledger in a throwaway embedded PostgreSQL (every account's chain intact, one
hot account holding a tenth of all consumptions), then times, side by side in this one run:
- the audit, the newest page and a deep page of the hot account's history, with the history
  index and then with it dropped (no index on ``account_id`` left at all).
Prints medians; no figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

OPENING = 10**12
HOT_ACCOUNT = 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumptions", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="Timed runs per figure (median shown).")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="energyctl-ledger-bench-"))
    os.environ["ENERGYCTL_PGDATA"] = str(root / "pgdata")
    os.environ.pop("DATABASE_URL", None)
    try:
        figures = run(options.consumptions, options.accounts, options.runs)
    finally:
        from energy.db.embedded import server as embedded_pg

        embedded_pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    if options.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:<48} {value}")
    return 0


def run(consumptions: int, accounts: int, runs: int) -> dict:
    from energyctl.prepare import prepare

    prepare()
    from django.db import connection

    from energy.application.audit import audit_ledger
    from energy.application.ledger import account_history

    started = time.perf_counter()
    fill(consumptions, accounts)
    figures = {"consumptions": consumptions, "accounts": accounts,
               "fill_seconds": round(time.perf_counter() - started, 1)}
    report = audit_ledger()
    if not report.clean or report.consumptions != consumptions:
        raise SystemExit(f"the benchmark's ledger is not sound: {report.violations[:5]}")
    deep = _deep_cursor(HOT_ACCOUNT)
    pages = {
        "history_newest_page_ms": lambda: account_history(account_id=HOT_ACCOUNT, limit=20),
        "history_deep_page_ms": lambda: account_history(account_id=HOT_ACCOUNT, limit=20, before=deep),
    }
    for suffix in ("", "_without_index"):
        figures[f"audit_seconds{suffix}"] = _median(runs, audit_ledger)
        for name, page in pages.items():
            figures[f"{name}{suffix}"] = round(_median(runs * 10, page) * 1000, 2)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {HISTORY_INDEX}")
    return figures


# The index the history of rows written without a chain position (as fill() writes them) reads.
HISTORY_INDEX = "energy_entry_early_history"


def fill(consumptions: int, accounts: int) -> None:
    """A sound ledger: accounts 1..n, the hot one holding a tenth of the records, chains intact."""
    from django.db import connection

    hot = consumptions // 10
    per_account = (consumptions - hot) // (accounts - 1)
    rest = consumptions - hot - per_account * (accounts - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO energy_account (id, energy, opening_energy) SELECT g, %s, %s FROM generate_series(1, %s) g",
            [OPENING, OPENING, accounts],
        )
        cursor.execute(
            """
            INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after, created_at)
            SELECT 1, account, amount, 'bench-' || account || '-' || n,
                   %(opening)s - SUM(amount) OVER (PARTITION BY account ORDER BY n), now()
            FROM (
                SELECT account, n, 1 + (account * 31 + n) %% 7 AS amount
                FROM generate_series(2, %(accounts)s) account, generate_series(1, %(per)s) n
                UNION ALL
                SELECT %(hot_id)s, n, 1 + n %% 7 FROM generate_series(1, %(hot)s) n
            ) planned
            ORDER BY account, n
            """,
            {"opening": OPENING, "accounts": accounts, "per": per_account, "hot": hot + rest, "hot_id": HOT_ACCOUNT},
        )
        cursor.execute(
            "UPDATE energy_account a SET energy = a.opening_energy - s.spent FROM "
            "(SELECT account_id, SUM(amount) AS spent FROM energy_consumption GROUP BY account_id) s "
            "WHERE s.account_id = a.id"
        )
        cursor.execute("VACUUM ANALYZE energy_account")
        cursor.execute("VACUUM ANALYZE energy_consumption")


def _deep_cursor(account_id: int) -> int:
    """The id of a consumption halfway down the account's history."""
    from energy.models import Entry

    records = Entry.objects.filter(account_id=account_id).order_by("balance_after", "-id")
    return records.values_list("id", flat=True)[records.count() // 2]


def _median(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 4)


if __name__ == "__main__":
    raise SystemExit(main())
