"""Through a real PgBouncer in transaction pooling mode, configured by docs/pgbouncer.ini.

The clients are real OS processes configured as a deployment behind PgBouncer is
(``ENERGYCTL_DB_POOLER=transaction``); the server is a throwaway embedded cluster of this
module's own, so it may be stopped and restarted.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from energyctl.torture.cluster import OwnCluster
from tests.deploy_sessions import Session
from tests.pgbouncer_server import PgBouncer, pgbouncer_binary
from tests.support import energyctl, wait_until_blocked

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


def fresh_database(cluster, name: str) -> None:
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def run(*args: str, url: str, **env: str):
    return energyctl(*args, url=url, env={**POOLED, **env})


def test_the_documented_set_up_works_on_the_first_try(bouncer, cluster):
    """docs/pgbouncer.ini, ENERGYCTL_DB_POOLER=transaction, `energyctl migrate` through PgBouncer, and go."""
    fresh_database(cluster, "first_try")
    with psycopg.connect(cluster.info.url("first_try"), autocommit=True) as admin:
        # A server whose defaults would let an answered 201 vanish in a crash.
        admin.execute("ALTER DATABASE first_try SET synchronous_commit = off")
    url = bouncer.url("first_try")
    migrated = run("migrate", url=url)
    assert migrated.returncode == 0 and "RECONNECT" not in migrated.stderr, migrated
    seeded = run("seed", "--accounts", "1", "--energy", "100", url=url)
    assert seeded.returncode == 0, seeded
    done = run("consume", "--account", "1", "--amount", "5", "--key", "k", "--json", url=url)
    assert (done.returncode, done.json and done.json["status"]) == (0, "applied"), done
    # A long-lived process started afterwards finds every setting in force, and it is bounded.
    server = Session(url, **POOLED)
    try:
        assert server.ask("differences") == []
        assert server.ask("show", "lock_timeout") == "3s"
        assert server.ask("show", "synchronous_commit") == "on"
    finally:
        server.close()


def test_a_consume_before_migrate_names_migrate_and_migrate_alone_fixes_it(bouncer, cluster):
    fresh_database(cluster, "migrate_later")
    url = bouncer.url("migrate_later")
    before = run("consume", "--account", "1", "--amount", "5", "--key", "k", "--json", url=url)
    assert before.returncode == 75, before
    assert "lock_timeout is 0ms, expected 3000ms" in before.stdout and "run `energyctl migrate`" in before.stdout
    # The server connection that consume opened is still pooled, older than the role settings.
    assert run("migrate", url=url).returncode == 0
    assert run("seed", "--accounts", "1", "--energy", "100", url=url).returncode == 0
    done = run("consume", "--account", "1", "--amount", "5", "--key", "k", "--json", url=url)
    assert (done.returncode, done.json and done.json["status"]) == (0, "applied"), done


def test_other_timeouts_than_migrate_wrote_are_refused_naming_migrate(bouncer, cluster):
    fresh_database(cluster, "other_timeouts")
    url = bouncer.url("other_timeouts")
    assert run("migrate", url=url).returncode == 0
    other = run("balance", "--account", "1", "--json", url=url, ENERGYCTL_LOCK_TIMEOUT_MS="4000")
    assert other.returncode == 75, other
    assert other.json["error"] == "unavailable", other
    assert "lock_timeout" in other.json["detail"] and "4000ms" in other.json["detail"], other
    assert "energyctl migrate` with the same ENERGYCTL_* settings" in other.json["detail"], other


def test_a_pooled_server_connection_older_than_the_role_settings_is_corrected_on_the_spot(cluster):
    """One server connection, opened before the role settings existed: energyctl is handed it,
    sets exactly the role's values on it, and goes on; nothing else is ever found on it."""
    fresh_database(cluster, "stale")
    one_server = PgBouncer(str(cluster.info.socket_dir), cluster.info.port, "postgres", default_pool_size=1)
    try:
        url = one_server.url("stale")
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as early:
            backend, lock_timeout = early.execute("SELECT pg_backend_pid(), current_setting('lock_timeout')").fetchone()
        assert lock_timeout == "0"
        # migrate run elsewhere (directly on the server): the role settings exist, the pooled
        # server connection predates them.
        migrated = energyctl("migrate", url=cluster.info.url("stale"), env=POOLED)
        assert migrated.returncode == 0, migrated
        assert "1 server connection(s)" in migrated.stderr and "RECONNECT" in migrated.stderr, migrated
        assert run("seed", "--accounts", "1", "--energy", "100", url=url).returncode == 0
        done = run("consume", "--account", "1", "--amount", "5", "--key", "k", "--json", url=url)
        assert (done.returncode, done.json and done.json["status"]) == (0, "applied"), done
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as later:
            assert later.execute("SELECT pg_backend_pid(), current_setting('lock_timeout'),"
                                 " current_setting('synchronous_commit')").fetchone() == (backend, "3s", "on")
    finally:
        one_server.close()


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
        wait_until_blocked(len(storm), holder_pid=holder, url=cluster.url)
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
