"""Migrations stopped half-way by a lock timeout carry on when run again, and end where a clean run ends.

Each test has a database of its own on the suite's server, brought to an older migration by
a real ``manage.py migrate``; a second connection holds a table lock that a step needs, and
the installed ``energyctl migrate`` runs with a short ENERGYCTL_LOCK_TIMEOUT_MS, as a user's would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.support import PROCESS_TIMEOUT_S, energyctl, test_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
SHORT_WAIT = {"ENERGYCTL_LOCK_TIMEOUT_MS": "300"}

# The schema as the catalog has it: every column, constraint and index, with validity.
SCHEMA = """
SELECT 'column', c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
       || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' identity=' || a.attidentity::text
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', conname, pg_get_constraintdef(oid) || ' valid=' || convalidated FROM pg_constraint
WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', indexrelid::regclass::text, pg_get_indexdef(indexrelid) || ' valid=' || indisvalid FROM pg_index
WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
ORDER BY 1, 2
"""


@pytest.fixture
def databases():
    """Makes databases of this test's own on the suite's server (migrated up to a given migration); drops them."""
    made = []

    def make(migration: str | None = None) -> str:
        name = f"migrations_{uuid.uuid4().hex[:8]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        url = test_database_url(name)
        if migration:
            done = subprocess.run([sys.executable, "manage.py", "migrate", "energy", migration, "--verbosity", "0"],
                                  cwd=ROOT, env={**os.environ, "DATABASE_URL": url},
                                  capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
            assert done.returncode == 0, done.stderr
        return url

    yield make
    with connection.cursor() as cursor:
        for name in made:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def schema(url: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute(SCHEMA).fetchall()


def facts(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return db.execute(query).fetchall()


class holding:
    """Another session holding ``lock`` (a LOCK TABLE statement) until the block ends."""

    def __init__(self, url: str, lock: str):
        self._conn = psycopg.connect(url)
        self._conn.execute(lock)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._conn.rollback()
        self._conn.close()


def migrate_stopped_by(url: str, lock: str):
    with holding(url, lock):
        stopped = energyctl("migrate", url=url, env=SHORT_WAIT)
    assert stopped.returncode == 75, stopped
    assert "ENERGYCTL_LOCK_TIMEOUT_MS" in stopped.stderr and "energyctl migrate` again" in stopped.stderr, stopped
    return stopped


def test_the_clients_migration_stopped_at_each_lock_carries_on_when_run_again(databases):
    url = databases("0001")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("INSERT INTO energy_account (id, energy) VALUES (1, 60), (2, 100)")
        db.execute("INSERT INTO energy_consumption (account_id, amount, idempotency_key, balance_after)"
                   " VALUES (1, 30, 'order-1', 70), (1, 10, 'order-2', 60)")

    # Adding the column needs the consumption table to itself: it waits, and gives up.
    migrate_stopped_by(url, "LOCK TABLE energy_consumption IN ACCESS SHARE MODE")
    assert facts(url, "SELECT id, name FROM energy_client") == [(1, "operator")]  # the steps before it stay done

    # Run again: the client table is there already; the foreign key needs the client table.
    migrate_stopped_by(url, "LOCK TABLE energy_client IN ROW EXCLUSIVE MODE")
    assert facts(url, "SELECT count(*) FROM energy_consumption WHERE client_id = 1") == [(2,)]
    assert facts(url, "SELECT conname FROM pg_constraint WHERE conname = 'energy_consumption_client_id_fk'") == []

    # Again: the key's index is built without blocking readers, then taking it over as the
    # constraint needs the table to itself.
    migrate_stopped_by(url, "LOCK TABLE energy_consumption IN ACCESS SHARE MODE")
    assert facts(url, "SELECT convalidated FROM pg_constraint WHERE conname = 'energy_consumption_client_id_fk'") == [
        (True,)]
    assert facts(url, "SELECT indisvalid FROM pg_index"
                      " WHERE indexrelid = to_regclass('energy_consumption_client_key_unique')") == [(True,)]

    finished = energyctl("migrate", url=url, env=SHORT_WAIT)
    assert finished.returncode == 0, finished
    assert schema(url) == schema(clean_run(databases))
    replayed = energyctl("consume", "--account", "1", "--amount", "30", "--key", "order-1", "--json", url=url)
    assert (replayed.returncode, replayed.json["status"], replayed.json["balance_after"]) == (0, "replayed", 70)


def test_the_history_index_left_invalid_by_a_lock_timeout_is_built_again(databases):
    url = databases("0003")
    # A writer's transaction is open: the concurrent build waits for it after it has
    # registered the index, and gives up, leaving the index invalid.
    migrate_stopped_by(url, "LOCK TABLE energy_consumption IN ROW EXCLUSIVE MODE")
    assert facts(url, "SELECT indisvalid FROM pg_index"
                      " WHERE indexrelid = to_regclass('energy_consumption_history')") == [(False,)]

    finished = energyctl("migrate", url=url, env=SHORT_WAIT)
    assert finished.returncode == 0, finished
    assert schema(url) == schema(clean_run(databases))


def test_the_opening_energy_back_fill_waits_for_writers_and_leaves_nothing_when_it_gives_up(databases):
    url = databases("0002")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("INSERT INTO energy_account (id, energy) VALUES (1, 60)")
        db.execute("INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after)"
                   " VALUES (1, 1, 40, 'k', 60)")
    # A writer in the middle of recording a consumption: the back-fill must not read the sums
    # before it commits, and gives up after the lock timeout instead.
    migrate_stopped_by(url, "LOCK TABLE energy_consumption IN ROW EXCLUSIVE MODE")
    assert facts(url, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'energy_account'::regclass"
                      " AND attname = 'opening_energy'") == [(0,)]  # one transaction: all of it rolled back
    finished = energyctl("migrate", url=url, env=SHORT_WAIT)
    assert finished.returncode == 0, finished
    assert facts(url, "SELECT id, energy, opening_energy FROM energy_account") == [(1, 60, 100)]


def clean_run(databases) -> str:
    """A new database migrated in one uninterrupted run."""
    url = databases()
    done = energyctl("migrate", url=url)
    assert done.returncode == 0, done
    return url
