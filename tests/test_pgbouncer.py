"""Through a real PgBouncer in transaction pooling mode, configured by docs/pgbouncer.ini.

The clients are real OS processes configured as a deployment behind PgBouncer is
(``ENERGYCTL_DB_POOLER=transaction``); the server is a throwaway embedded cluster of this
module's own, so it may be stopped and restarted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from energyctl.torture.cluster import OwnCluster
from tests.deploy_sessions import Session, wait_for_waiters
from tests.pgbouncer_server import PgBouncer, pgbouncer_binary

pytestmark = pytest.mark.slow

# Every process of a deployment shares one configuration; `migrate` writes it as role settings.
POOLED = {"ENERGYCTL_DB_POOLER": "transaction", "ENERGYCTL_LOCK_TIMEOUT_MS": "3000",
          "ENERGYCTL_STATEMENT_TIMEOUT_MS": "5000", "ENERGYCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS": "3000",
          "ENERGYCTL_CLIENT_TIMEOUT_MS": "10000"}
# A hang guard for a busy two-core machine, not a performance claim.
WITHIN_S = 10.0


@pytest.fixture(scope="module")
def cluster():
    pgbouncer_binary()  # skips on a laptop without PgBouncer; fails in CI
    own = OwnCluster()
    yield own
    own.close()


@pytest.fixture(scope="module")
def bouncer(cluster):
    pgbouncer = PgBouncer(str(cluster.info.socket_dir), cluster.info.port, "postgres")
    yield pgbouncer
    pgbouncer.close()


@pytest.fixture
def sessions(bouncer):
    opened = []

    def open_session(**env):
        session = Session(bouncer.url("energyctl"), **{**POOLED, **env})
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        session.close()


@pytest.fixture
def migrated(sessions, bouncer):
    """The schema and accounts 1 (100) and 2 (10), migrated through PgBouncer; a session on it."""
    session = sessions()
    session.ask("prepare", {1: 100, 2: 10})
    bouncer.reconnect()
    return session


def test_the_tested_pgbouncer_is_debian_s_and_pools_transactions(bouncer):
    assert bouncer.version.startswith("PgBouncer 1."), bouncer.version
    with psycopg.connect(bouncer.url("pgbouncer"), autocommit=True, prepare_threshold=None) as admin:
        cursor = admin.cursor()
        cursor.execute("SHOW CONFIG")
        config = {row[0]: row[1] for row in cursor.fetchall()}
    assert config["pool_mode"] == "transaction"


def test_timeouts_and_isolation_are_in_force_on_pooled_connections(migrated, sessions):
    # A fresh process, a fresh client connection, whichever server connection it lands on.
    assert sessions().ask("differences") == []
    assert migrated.ask("differences") == []
    ran_away = migrated.ask("sleep", 7)
    assert ran_away["outcome"] == "unavailable" and "statement timed out" in ran_away["detail"], ran_away
    assert 4.5 < ran_away["seconds"] < WITHIN_S, ran_away


def test_a_client_not_told_about_the_pooler_is_refused_with_a_hint(migrated, sessions):
    direct = sessions(ENERGYCTL_DB_POOLER="")
    refused = direct.ask("consume", 1, 1, "unconfigured")
    assert refused["outcome"] == "unavailable", refused
    assert "unsupported startup parameter" in refused["detail"]
    assert "ENERGYCTL_DB_POOLER=transaction" in refused["detail"]


def test_energyctl_migrate_through_pgbouncer_writes_the_settings_every_process_checks(bouncer, cluster):
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS fresh WITH (FORCE)")
        admin.execute("CREATE DATABASE fresh")
    url = bouncer.url("fresh")
    before = energyctl("consume", "--account", "1", "--amount", "5", "--key", "k", "--json", url=url)
    assert before.returncode == 75, before
    assert "lock_timeout is 0ms, expected 3000ms" in before.stdout and "energyctl migrate" in before.stdout
    migrated = energyctl("migrate", url=url)
    assert migrated.returncode == 0, migrated
    bouncer.reconnect()
    assert energyctl("seed", "--accounts", "1", "--energy", "100", url=url).returncode == 0
    done = energyctl("consume", "--account", "1", "--amount", "5", "--key", "k", "--json", url=url)
    assert (done.returncode, json.loads(done.stdout)["status"]) == (0, "applied"), done


def energyctl(*args: str, url: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "energyctl"
    return subprocess.run([str(script), *args], env={**os.environ, **POOLED, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=120)


def test_contract_outcomes_through_pgbouncer(migrated, cluster):
    ask = migrated.ask
    assert ask("consume", 1, 30, "k1")["outcome"] == "applied"
    assert ask("consume", 1, 30, "k1")["outcome"] == "replayed"
    assert ask("consume", 1, 31, "k1")["outcome"] == "idempotency_key_mismatch"
    assert ask("consume", 2, 11, "k2")["outcome"] == "insufficient_energy"
    assert ask("consume", 9, 1, "k3")["outcome"] == "account_not_found"
    with held_row_lock(cluster, 1):
        stuck = ask("consume", 1, 5, "k4")
    assert stuck["outcome"] == "unavailable" and "row lock" in stuck["detail"], stuck
    assert 2.5 < stuck["seconds"] < WITHIN_S, stuck
    assert ask("consume", 1, 5, "k4")["outcome"] == "applied"
    batch = ask("batch", [(1, 5, "k4"), (1, 10, "k5"), (2, 10, "k6"), (2, 1, "k7"), (9, 1, "k8")])
    assert batch["outcomes"] == ["replayed", "applied", "applied", "insufficient_energy", "account_not_found"]
    assert ask("ledger") == {"balances": {1: 55, 2: 0},
                             "records": [("k1", 1, 30), ("k4", 1, 5), ("k5", 1, 10), ("k6", 2, 10)]}


def test_same_key_storm_from_processes_applies_exactly_once(migrated, sessions, cluster):
    storm = [sessions() for _ in range(4)]
    for session in storm:  # started, connected and checked: ready to send at once
        assert session.ask("differences") == []
    with held_row_lock(cluster, 1) as holder:
        for session in storm:
            session.send("consume", 1, 25, "storm")
        # Every copy is inside PostgreSQL, queued on the lock at once.
        wait_for_waiters(cluster.url, holder, len(storm))
    outcomes = sorted(session.receive()["outcome"] for session in storm)
    assert outcomes == ["applied", "replayed", "replayed", "replayed"]
    assert migrated.ask("ledger")["balances"][1] == 75


def test_prepared_statements_forced_on_are_unavailable_never_an_error(cluster):
    """PgBouncer 1.18 cannot keep prepared statements: forcing them on mixes up two clients'
    statements on one server connection (42P05). That is `unavailable`, not a crash."""
    one_server = PgBouncer(str(cluster.info.socket_dir), cluster.info.port, "postgres", default_pool_size=1)
    forced = {**POOLED, "ENERGYCTL_PREPARE_THRESHOLD": "0"}
    first, second = Session(one_server.url("energyctl"), **forced), Session(one_server.url("energyctl"), **forced)
    # Set up by a session that prepares nothing, so that the two forced clients send the same
    # statements in the same order and give them the same names on the one server connection.
    setup = Session(one_server.url("energyctl"), **POOLED)
    opened = [first, second, setup]
    try:
        setup.ask("prepare", {1: 100})
        one_server.reconnect()
        assert first.ask("consume", 1, 1, "p1")["outcome"] == "applied"
        mixed_up = second.ask("consume", 1, 1, "p2")
        assert mixed_up["outcome"] == "unavailable", mixed_up
        assert "ENERGYCTL_PREPARE_THRESHOLD=off" in mixed_up["detail"]
        assert second.ask("batch", [(1, 1, "p3")])["outcomes"] == ["unavailable"]
        # As configured by default behind a pooler, nothing is prepared and both clients apply.
        third, fourth = Session(one_server.url("energyctl"), **POOLED), Session(one_server.url("energyctl"), **POOLED)
        opened.extend([third, fourth])
        assert [third.ask("consume", 1, 1, "p4")["outcome"], fourth.ask("consume", 1, 1, "p5")["outcome"],
                third.ask("batch", [(1, 1, "p6")])["outcomes"], fourth.ask("consume", 1, 1, "p4")["outcome"]] == [
                    "applied", "applied", ["applied"], "replayed"]
    finally:
        for session in opened:
            session.close()
        one_server.close()


def test_a_server_restart_behind_pgbouncer_is_unavailable_then_works():
    own = OwnCluster()
    bouncer = PgBouncer(str(own.info.socket_dir), own.info.port, "postgres")
    session = Session(bouncer.url("energyctl"), **POOLED)
    try:
        session.ask("prepare", {1: 100})
        bouncer.reconnect()
        assert session.ask("consume", 1, 10, "before")["outcome"] == "applied"
        own.stop()
        down = session.ask("consume", 1, 10, "during")
        assert down["outcome"] == "unavailable" and down["seconds"] < WITHIN_S, down
        own.ensure_up()
        # PgBouncer retries the server login after server_login_retry (1 s); a client that
        # retries the same key a little later gets through, once.
        retries = bounded_retries(lambda: session.ask("consume", 1, 10, "during"))
        assert retries[-1]["outcome"] == "applied", retries
        assert {a["outcome"] for a in retries[:-1]} <= {"unavailable"}, retries
        assert session.ask("consume", 1, 10, "during")["outcome"] == "replayed"
        assert session.ask("ledger") == {"balances": {1: 80}, "records": [("before", 1, 10), ("during", 1, 10)]}
    finally:
        session.close()
        bouncer.close()
        own.close()


def bounded_retries(call, attempts: int = 40, pause: float = 0.25) -> list[dict]:
    """``call`` until it is not `unavailable`, at most ``attempts`` times; every answer."""
    answers = [call()]
    while answers[-1]["outcome"] == "unavailable" and len(answers) < attempts:
        time.sleep(pause)
        answers.append(call())
    return answers


class held_row_lock:
    """A direct connection (not through PgBouncer) holding account ``account_id``'s row lock."""

    def __init__(self, cluster, account_id: int):
        self._conn = psycopg.connect(cluster.url)
        # This role's defaults in the database now bound every session of it, this one too.
        self._conn.execute("SET idle_in_transaction_session_timeout = 0")
        self._conn.execute("SELECT 1 FROM energy_account WHERE id = %s FOR UPDATE", [account_id])

    def __enter__(self) -> int:
        return self._conn.info.backend_pid

    def __exit__(self, *exc) -> None:
        self._conn.rollback()
        self._conn.close()
