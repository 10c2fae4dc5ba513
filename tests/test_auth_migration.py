"""The clients migration on a populated PostgreSQL database: old consumptions become the operator's.

Runs on a database of its own on the suite's server, migrated by real ``manage.py`` runs,
because the migration cannot be undone on the suite's database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.support import energyctl, test_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def run(url: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode in (0, 4, 5), done.stderr
    return done


@pytest.fixture
def old_database():
    """A database of its own, migrated to 0001 only; dropped afterwards."""
    from django.db import connection

    name = f"migration_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    url = test_database_url(name)
    try:
        run(url, sys.executable, "manage.py", "migrate", "energy", "0001", "--verbosity", "0")
        yield url
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_existing_consumptions_become_the_operators_and_replay_there(old_database):
    with psycopg.connect(old_database, autocommit=True) as db:
        db.execute("INSERT INTO energy_account (id, energy) VALUES (1, 60), (2, 100), (3, 7)")
        db.execute("""INSERT INTO energy_consumption (account_id, amount, idempotency_key, balance_after, created_at)
                      VALUES (1, 30, 'order-1', 70, now()), (1, 10, 'order-2', 60, now())""")

    run(old_database, sys.executable, "manage.py", "migrate", "--verbosity", "0")

    with psycopg.connect(old_database, autocommit=True) as db:
        owners = db.execute("SELECT c.idempotency_key, cl.name FROM energy_consumption c"
                            " JOIN energy_client cl ON cl.id = c.client_id ORDER BY c.id").fetchall()
        opening = db.execute("SELECT id, energy, opening_energy FROM energy_account ORDER BY id").fetchall()
        operator = db.execute("SELECT id, token_hash, accounts FROM energy_client WHERE name = 'operator'").fetchone()
        constraints = {row[0] for row in db.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'energy_consumption'::regclass")}
    assert owners == [("order-1", "operator"), ("order-2", "operator")]
    assert opening == [(1, 60, 100), (2, 100, 100), (3, 7, 7)]
    assert operator == (1, None, None)
    assert "energy_consumption_client_key_unique" in constraints and "energy_consumption_key_unique" not in constraints

    replayed = energyctl("consume", "--account", "1", "--amount", "30", "--key", "order-1", "--json", url=old_database)
    assert (replayed.json["status"], replayed.json["balance_after"]) == ("replayed", 70), replayed
    mismatch = energyctl("consume", "--account", "1", "--amount", "5", "--key", "order-2", "--json", url=old_database)
    assert mismatch.json["error"] == "idempotency_key_mismatch", mismatch
    added = energyctl("clients", "add", "shop", "--all-accounts", "--json", url=old_database)
    assert added.json["client"] == "shop", added
    theirs = energyctl("consume", "--account", "1", "--amount", "30", "--key", "order-1", "--client", "shop", "--json",
                       url=old_database)
    assert (theirs.json["status"], theirs.json["balance_after"]) == ("applied", 30), theirs
