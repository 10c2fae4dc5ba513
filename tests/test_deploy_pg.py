"""Bounded waits and pinned isolation on real PostgreSQL: a caller's transaction, a black-holed
connection, a stalled batch and a server whose default isolation is SERIALIZABLE."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection, connections, transaction
from django.db.transaction import TransactionManagementError

from energy.application.consume import consume
from energy.db import role_settings as session
from energy.domain.exceptions import Unavailable
from energy.models import Account, Entry
from tests.deploy_sessions import Session
from tests.support import server_address, wait_until_blocked, wait_until_stopped
from tests.tcp_proxy import TcpProxy
from tests.workers import row_lock_held

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# A hang guard for a busy two-core machine, not a performance claim.
SLACK_S = 3.0


def url_for(database: str, host: str | None = None, port: int | None = None) -> str:
    """A DATABASE_URL reaching ``database`` on the suite's server (or through ``host``:``port``)."""
    settings = connection.settings_dict
    server_host, server_port = server_address()
    host, port = host or server_host, port or server_port
    user = quote(settings.get("USER") or "postgres", safe="")
    password = f":{quote(settings['PASSWORD'], safe='')}" if settings.get("PASSWORD") else ""
    return f"postgresql://{user}{password}@{quote(host, safe='')}:{port}/{database}"


@pytest.fixture
def sessions():
    opened = []

    def open_session(url: str, **env) -> Session:
        opened.append(Session(url, **env))
        return opened[-1]

    yield open_session
    for one in opened:
        one.close()


def test_every_connection_has_the_timeouts_isolation_and_keepalives():
    connection.ensure_connection()
    assert session.differences(connection) == []
    options = {o.keyword.decode(): (o.val or b"").decode() for o in connection.connection.pgconn.info}
    assert {k: options[k] for k in ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                                    "tcp_user_timeout")} == {"keepalives": "1", "keepalives_idle": "10",
                                                             "keepalives_interval": "5", "keepalives_count": "3",
                                                             "tcp_user_timeout": "25000"}
    assert connection.connection.isolation_level == psycopg.IsolationLevel.READ_COMMITTED


def test_a_lock_timeout_inside_a_callers_transaction_marks_it_for_rollback_and_keeps_the_connection():
    Account.objects.create(id=1, energy=100, opening_energy=100)
    with row_lock_held(account_id=1):
        with transaction.atomic():
            Account.objects.create(id=2, energy=5, opening_energy=5)  # the block's earlier work
            opened = connection.connection
            with pytest.raises(Unavailable) as caught:
                consume(account_id=1, amount=10, idempotency_key="in-block")
            assert "row lock" in caught.value.detail
            # The block can neither go on as if nothing happened nor lose its work silently.
            assert connection.needs_rollback and connection.connection is opened and not opened.closed
            with pytest.raises(TransactionManagementError):
                Account.objects.count()
    assert not Account.objects.filter(pk=2).exists()  # rolled back at the block's end, not committed
    assert connection.connection is opened  # the same connection, never dropped under the block
    assert consume(account_id=1, amount=10, idempotency_key="in-block").status == "applied"


def test_a_lock_timeout_in_a_savepoint_rolls_back_only_that_savepoint():
    Account.objects.create(id=1, energy=100, opening_energy=100)
    with row_lock_held(account_id=1), transaction.atomic():
        Account.objects.create(id=2, energy=5, opening_energy=5)
        with pytest.raises(Unavailable), transaction.atomic():
            consume(account_id=1, amount=10, idempotency_key="in-savepoint")
        # The outer block goes on after its savepoint's rollback.
        Account.objects.create(id=3, energy=5, opening_energy=5)
    assert sorted(Account.objects.values_list("id", flat=True)) == [1, 2, 3]
    assert not Entry.objects.exists()


def test_a_lock_timeout_outside_any_transaction_is_unavailable_and_the_next_call_works():
    Account.objects.create(id=1, energy=100, opening_energy=100)
    with row_lock_held(account_id=1), pytest.raises(Unavailable):
        consume(account_id=1, amount=10, idempotency_key="outside")
    assert consume(account_id=1, amount=10, idempotency_key="outside").status == "applied"
    assert Account.objects.get(pk=1).energy == 90


def test_a_black_holed_connection_ends_in_unavailable_within_the_client_deadline(sessions):
    proxy = TcpProxy(*server_address())
    try:
        client = sessions(url_for(connection.settings_dict["NAME"], "127.0.0.1", proxy.port),
                          ENERGYCTL_CLIENT_TIMEOUT_MS="1500", ENERGYCTL_CONNECT_TIMEOUT="2")
        client.ask("prepare", {1: 100, 2: 100})
        assert client.ask("consume", 1, 10, "before")["outcome"] == "applied"
        proxy.black_hole()  # the open connection stays open; nothing crosses it any more
        chunk = client.ask("batch", [(1, 10, "b1"), (2, 10, "b2")])
        assert chunk["outcomes"] == ["unavailable", "unavailable"] and 1.4 < chunk["seconds"] < 1.5 + SLACK_S, chunk
        hung = client.ask("consume", 1, 10, "c1")  # a new connection into the black hole
        assert hung["outcome"] == "unavailable" and hung["seconds"] < 2 + SLACK_S, hung
        proxy.restore()
        assert [client.ask("consume", 1, 10, "c1")["outcome"] for _ in range(2)] == ["applied", "replayed"]
        assert client.ask("batch", [(1, 10, "b1"), (2, 10, "b2")])["outcomes"] == ["applied", "applied"]
        assert client.ask("ledger")["balances"] == {1: 70, 2: 90}
    finally:
        proxy.close()


def test_the_client_deadline_reason_names_its_setting(sessions):
    proxy = TcpProxy(*server_address())
    try:
        client = sessions(url_for(connection.settings_dict["NAME"], "127.0.0.1", proxy.port),
                          ENERGYCTL_CLIENT_TIMEOUT_MS="1000")
        client.ask("prepare", {1: 100})
        assert client.ask("consume", 1, 1, "warm")["outcome"] == "applied"
        proxy.black_hole()
        hung = client.ask("consume", 1, 1, "hung")
        assert "no answer within 1000 ms (ENERGYCTL_CLIENT_TIMEOUT_MS)" in hung["detail"], hung
    finally:
        proxy.close()


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="freezes a backend process of the suite's own cluster")
def test_a_frozen_backend_ends_in_unavailable_within_the_client_deadline(sessions):
    """The server cannot enforce statement_timeout in a stopped process; the client's deadline ends the wait."""
    client = sessions(url_for(connection.settings_dict["NAME"]), ENERGYCTL_CLIENT_TIMEOUT_MS="1500",
                      ENERGYCTL_STATEMENT_TIMEOUT_MS="500")
    client.ask("prepare", {1: 100})
    backend = client.ask("backend_pid")
    os.kill(backend, signal.SIGSTOP)
    try:
        frozen = client.ask("consume", 1, 10, "frozen")
    finally:
        os.kill(backend, signal.SIGCONT)
    assert frozen["outcome"] == "unavailable" and 1.4 < frozen["seconds"] < 1.5 + SLACK_S, frozen
    # The statement may have reached the frozen backend whole, which then ran it once resumed:
    # its answer was lost, so the retry is the replay of it. Either way the key applied once.
    retries = [client.ask("consume", 1, 10, "frozen")["outcome"] for _ in range(2)]
    assert retries in (["applied", "replayed"], ["replayed", "replayed"]), retries
    assert client.ask("ledger") == {"balances": {1: 90}, "records": [("frozen", 1, 10)]}


def test_a_stalled_batch_loses_its_locks_after_the_idle_in_transaction_timeout(sessions):
    url = url_for(connection.settings_dict["NAME"])
    stalled = sessions(url, ENERGYCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS="1500")
    other = sessions(url, ENERGYCTL_LOCK_TIMEOUT_MS="20000")
    stalled.ask("prepare", {1: 100, 2: 100})
    other.ask("ledger")  # started and connected
    stalled.send("batch", [(1, 10, "s1"), (2, 10, "s2")], True)
    wait_until_stopped(stalled.pid)  # SIGSTOPped mid-chunk, holding both accounts' locks
    other.send("consume", 1, 5, "other")
    wait_until_blocked(1, url=url)  # queued behind the stalled client
    answer = other.receive()
    assert answer["outcome"] == "applied" and answer["seconds"] < 1.5 + SLACK_S, answer
    assert _state(stalled.pid) == "T"  # the server released the locks, not the client
    os.kill(stalled.pid, signal.SIGCONT)
    assert stalled.receive()["outcomes"] == ["unavailable", "unavailable"]
    assert other.ask("ledger") == {"balances": {1: 95, 2: 100}, "records": [("other", 1, 5)]}


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def serializable_database():
    """A copy of the test database whose default isolation is SERIALIZABLE."""
    name = f"{connection.settings_dict['NAME']}_serializable"
    template = connection.settings_dict["NAME"]
    Account.objects.create(id=1, energy=1000, opening_energy=1000)
    connections.close_all()
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        admin.execute(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'serializable'")
    yield name
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_serializable_server_default_gives_no_serialization_failures_on_a_hot_account(
        serializable_database, sessions):
    url = url_for(serializable_database)
    with psycopg.connect(url) as plain:
        assert plain.execute("SHOW default_transaction_isolation").fetchone() == ("serializable",)
    burst = [sessions(url) for _ in range(4)]
    for one in burst:
        one.ask("ledger")  # started and connected
    with psycopg.connect(url) as holder:
        # Every consumer takes its snapshot while this update of the hot row is uncommitted.
        holder.execute("UPDATE energy_account SET energy = energy - 1 WHERE id = 1")
        for n, one in enumerate(burst[:3]):
            one.send("consume", 1, 10, f"hot-{n}")
        burst[3].send("batch", [(1, 10, "hot-batch-1"), (1, 10, "hot-batch-2")])
        wait_until_blocked(len(burst), holder_pid=holder.info.backend_pid, url=url)
        holder.commit()
    outcomes = [burst[n].receive() for n in range(3)]
    assert [o["outcome"] for o in outcomes] == ["applied"] * 3, outcomes
    assert burst[3].receive()["outcomes"] == ["applied", "applied"]
    assert burst[0].ask("ledger")["balances"] == {1: 1000 - 1 - 50}


@pytest.fixture
def relaxed_database():
    """A database of its own where this role's default is synchronous_commit = off."""
    name = f"{connection.settings_dict['NAME']}_relaxed"
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f'ALTER ROLE CURRENT_USER IN DATABASE "{name}" SET synchronous_commit = off')
    yield name
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # its role settings go with it


def test_a_role_default_of_synchronous_commit_off_never_reaches_an_energyctl_connection(relaxed_database, sessions):
    """An answered `applied` must survive a crash: every energyctl commit waits for its WAL flush."""
    url = url_for(relaxed_database)
    with psycopg.connect(url) as plain:
        assert plain.execute("SHOW synchronous_commit").fetchone() == ("off",)
    client = sessions(url)
    client.ask("prepare", {1: 100})
    assert client.ask("show", "synchronous_commit") == "on"
    assert client.ask("differences") == []
    assert client.ask("consume", 1, 10, "durable")["outcome"] == "applied"
