"""The peer's tables: reset them before a run, check them after.

    PEER_DATABASE_URL=postgresql://... python -m benchmarks.http_peer.casestudy.tables reset --accounts N --energy E
    PEER_DATABASE_URL=postgresql://... python -m benchmarks.http_peer.casestudy.tables check --energy E

``reset`` creates the tables when they are missing, empties them and gives accounts 1..N
the energy E, freshly vacuumed (as ``energyctl.bench.database.reset`` does for energyctl's
tables). ``check`` prints one JSON line: the consumptions recorded and the accounts whose
balance is not E minus what was recorded against them, or below zero.
"""

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_peer.casestudy.tables")
    parser.add_argument("action", choices=["reset", "check"])
    parser.add_argument("--accounts", type=int, default=0)
    parser.add_argument("--energy", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.http_peer.casestudy.settings")
    import django
    from django.db import connection

    django.setup()
    if args.action == "reset":
        from django.core.management import call_command

        call_command("migrate", run_syncdb=True, verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE casestudy_energyconsumption, casestudy_account RESTART IDENTITY")
            cursor.execute("INSERT INTO casestudy_account (id, energy) SELECT g, %s FROM generate_series(1, %s) g",
                           [args.energy, args.accounts])
            cursor.execute("VACUUM ANALYZE casestudy_account, casestudy_energyconsumption")
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM casestudy_energyconsumption")
        (recorded,) = cursor.fetchone()
        cursor.execute(
            """SELECT count(*) FROM casestudy_account a
               LEFT JOIN (SELECT account_id, sum(amount) AS spent FROM casestudy_energyconsumption
                          GROUP BY account_id) c ON c.account_id = a.id
               WHERE a.energy <> %s - coalesce(c.spent, 0) OR a.energy < 0""",
            [args.energy])
        (drifted,) = cursor.fetchone()
    problems = [f"{drifted} accounts whose balance is not the opening energy minus recorded consumptions"] if drifted \
        else []
    print(json.dumps({"consumptions": recorded, "problems": problems}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
