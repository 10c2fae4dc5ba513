"""SQLite (`DATABASE_URL=sqlite:///path`) on a real database file: the same outcomes as on
PostgreSQL, and writers that queue instead of failing.

Each client is a real OS process configured by its own DATABASE_URL, as a deployment is.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests import support
from tests.support import energyctl

pytestmark = pytest.mark.slow

# Every kind of line a replay file can hold, each outcome at least once.
MIXED = "\n".join([
    json.dumps({"account_id": 1, "amount": 10, "idempotency_key": "a"}),
    json.dumps({"account_id": 1, "amount": 10, "idempotency_key": "a"}),  # the same request again: replayed
    "",
    "{not json",
    json.dumps({"account_id": 2, "amount": 500, "idempotency_key": "too-much"}),
    json.dumps({"account_id": 9, "amount": 1, "idempotency_key": "nobody"}),
    json.dumps({"account_id": 1, "amount": 11, "idempotency_key": "a"}),  # key reused for another amount
    json.dumps({"account_id": 1, "amount": 1.5, "idempotency_key": "float"}),
    json.dumps({"account_id": 3, "amount": 20, "idempotency_key": "b"}),
    "   ",
])


def start_session(url: str, **env: str) -> support.Session:
    """A spawned process configured by ``url`` alone, running the deployment commands."""
    return support.Session(url, "tests.deploy_sessions", **env)


@pytest.fixture
def database(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'energy.sqlite3'}"


@pytest.fixture
def client(database):
    session = start_session(database, ENERGYCTL_LOCK_TIMEOUT_MS="300")
    yield session
    session.close()


def test_consume_gives_every_outcome_of_the_contract(client, database):
    client.ask("prepare", {1: 100, 2: 10})
    ask = client.ask
    assert ask("consume", 1, 30, "k1")["outcome"] == "applied"
    assert ask("consume", 1, 30, "k1")["outcome"] == "replayed"
    assert ask("consume", 1, 31, "k1")["outcome"] == "idempotency_key_mismatch"
    assert ask("consume", 2, 30, "k1")["outcome"] == "idempotency_key_mismatch"
    assert ask("consume", 9, 30, "k1")["outcome"] == "idempotency_key_mismatch"
    assert ask("consume", 2, 11, "k2")["outcome"] == "insufficient_energy"
    assert ask("consume", 2, 10, "k2")["outcome"] == "applied"  # a refused key is evaluated afresh
    assert ask("consume", 9, 1, "k3")["outcome"] == "account_not_found"
    with write_lock_held(database):
        locked = ask("consume", 1, 5, "k4")
    assert locked["outcome"] == "unavailable" and "locked" in locked["detail"], locked
    assert ask("consume", 1, 5, "k4")["outcome"] == "applied"
    assert ask("ledger") == {"balances": {1: 65, 2: 0}, "records": [("k1", 1, 30), ("k2", 2, 10), ("k4", 1, 5)]}


def test_batch_outcomes_cover_every_kind(client):
    client.ask("prepare", {1: 60, 2: 15, 3: 0})
    assert client.ask("consume", 1, 5, "old")["outcome"] == "applied"
    got = client.ask("batch", [
        (1, 10, "new"), (1, 10, "new"), (2, 10, "new"), (1, 5, "old"), (1, 6, "old"),
        (2, 16, "greedy"), (2, 15, "greedy"), (2, 1, "empty"), (4, 1, "nobody"),
    ])
    assert got["outcomes"] == [
        "applied", "replayed", "idempotency_key_mismatch", "replayed", "idempotency_key_mismatch",
        "insufficient_energy", "applied", "insufficient_energy", "account_not_found",
    ]
    assert client.ask("ledger")["balances"] == {1: 45, 2: 0, 3: 0}


def test_replay_counts_every_outcome_like_postgresql(database, tmp_path):
    assert energyctl("migrate", url=database).returncode == 0
    assert energyctl("seed", "--accounts", "3", "--energy", "100", url=database).returncode == 0
    path = tmp_path / "requests.jsonl"
    path.write_text(MIXED)
    done = energyctl("replay", str(path), "--json", url=database)
    assert done.returncode == 6, done
    summary = done.json
    assert summary.pop("seconds") >= 0
    assert summary == {"total": 8, "applied": 2, "replayed": 1, "insufficient_energy": 1, "account_not_found": 1,
                       "idempotency_key_mismatch": 1, "invalid_request": 2, "unavailable": 0}
    again = energyctl("replay", str(path), "--json", url=database).json
    assert (again["applied"], again["replayed"]) == (0, 3)
    balances = [energyctl("balance", "--account", str(n), "--json", url=database).json["energy"] for n in (1, 2, 3)]
    assert balances == [90, 100, 80]


# Authentication's lookup and last_used_at update are SQL written out for speed: the same
# statements must hold on SQLite, where times are compared as text.
AUTHENTICATE_ON_SQLITE = """
from datetime import timedelta
from energy.setup import setup_django
setup_django()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from energy.application.clients import add_client, authenticate, revoke_client, rotate_token
from energy.models import Client
token = add_client(name="shop", accounts=[1, 2]).token
grant = authenticate(token)
assert (grant.name, grant.scopes, grant.accounts) == ("shop", {"consume", "read"}, {1, 2}), grant
stamped = Client.objects.get(name="shop").last_used_at
assert stamped is not None
assert authenticate(token) is not None and Client.objects.get(name="shop").last_used_at == stamped
Client.objects.filter(name="shop").update(last_used_at=stamped - timedelta(minutes=2))
assert authenticate(token) is not None and Client.objects.get(name="shop").last_used_at > stamped
new = rotate_token(name="shop").token
assert authenticate(token) is None and authenticate(new).name == "shop"
revoke_client(name="shop")
assert authenticate(new) is None
print("ok")
"""


def test_authentication_reads_and_stamps_clients_like_postgresql(database):
    done = subprocess.run([sys.executable, "-c", AUTHENTICATE_ON_SQLITE], env={**os.environ, "DATABASE_URL": database},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_four_processes_writing_one_file_all_apply(database):
    processes, requests = 4, 150
    clients = [start_session(database) for _ in range(processes)]
    try:
        clients[0].ask("prepare", {1: 10_000})
        for one in clients:
            one.ask("ledger")  # started and connected
        for n, one in enumerate(clients):
            one.send("burst", 1, 3, [f"p{n}-r{r}" for r in range(requests)])
        runs = [one.receive(timeout=240) for one in clients]
        ledger = clients[0].ask("ledger")
    finally:
        for one in clients:
            one.close()
    # The four runs overlapped in time: each started before any finished.
    assert max(r["started"] for r in runs) < min(r["ended"] for r in runs), runs
    assert [r["outcomes"] for r in runs] == [{"applied": requests}] * processes, runs
    assert len(ledger["records"]) == processes * requests
    assert ledger["balances"] == {1: 10_000 - 3 * processes * requests}


class write_lock_held:
    """Another connection holds the database file's write lock (BEGIN IMMEDIATE)."""

    def __init__(self, url: str):
        self._db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, *exc):
        self._db.execute("ROLLBACK")
        self._db.close()
