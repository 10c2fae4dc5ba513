"""Clients through a real server: energyctl serve on a port, real sockets, real processes, its logs.

An attacker's views (no token, a wrong one, a revoked one, another client's key or account)
change nothing; hostile Authorization headers are 401, never 500; no token is ever stored or
logged in clear; a same-key storm from two clients applies once per client.
"""

from __future__ import annotations

import base64
import re
import time

import pytest

from energy.application.clients import add_client, hash_token, revoke_client, rotate_token
from energy.models import Account, Entry
from tests import workers
from tests.http_server import Server, post_at_barrier
from tests.support import free_port, spawn_context, test_database_name, test_database_url, wait_until_blocked

# Every test here talks to a real server process.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
WORKERS = 4
BODY = {"account_id": 1, "amount": 30, "idempotency_key": "order-17"}


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        url = test_database_url()
    # The most talkative logs there are, so that the scan for tokens sees everything.
    running = Server(url, tmp_path_factory.mktemp("serve") / "server.log", workers=WORKERS,
                     ENERGYCTL_LOG_LEVEL="DEBUG", ENERGYCTL_LOG_FORMAT="json")
    yield running
    running.close()


def ledger():
    return sorted(Account.objects.values_list("id", "energy")), Entry.objects.count()


def assert_401(answer):
    status, headers, body = answer
    assert status == 401, (status, body)
    assert headers["WWW-Authenticate"] == "Bearer"
    assert body["status"] == "error" and body["error"] == "unauthenticated", body


def test_an_attacker_changes_nothing_whatever_it_tries(server, accounts):
    shop = add_client(name="shop", accounts=[1]).token
    game = add_client(name="game", accounts=[2]).token
    stale = add_client(name="gone", accounts=None).token
    revoke_client(name="gone")
    applied = server.consume(shop, BODY)
    assert applied[0] == 201
    before = ledger()
    assert_401(server.consume(None, {**BODY, "idempotency_key": "free-energy"}))
    assert_401(server.consume("ect_" + "A" * 43, BODY))
    assert_401(server.consume(stale, {**BODY, "idempotency_key": "late"}))
    assert_401(server.request("GET", "/api/energy/accounts/1/"))
    # game may not touch shop's account, whether it reuses shop's key or not, nor read it.
    assert server.consume(game, BODY)[0] == 403
    assert server.consume(game, {**BODY, "account_id": 99})[0] == 403
    assert server.request("GET", "/api/energy/accounts/1/", headers={"Authorization": f"Bearer {game}"})[0] == 403
    assert ledger() == before
    # shop's key used by game on game's own account is game's own request, never shop's answer.
    theirs = server.consume(game, {**BODY, "account_id": 2, "amount": 5})
    assert theirs[0] == 201 and theirs[2]["amount"] == 5
    status, headers, replay = server.consume(shop, BODY)
    assert (status, headers.get("Idempotent-Replayed")) == (200, "true")
    assert replay == {**applied[2], "status": "replayed"}


@pytest.mark.parametrize("header", [
    "", "Bearer", "Bearer ", "Basic c2hvcDpzZWNyZXQ=", "Token abc", "Bearer  ect_" + "A" * 43,
    "Bearer ect_" + "A" * 43 + " extra", "Bearer " + "A" * 6000, "Bearer\tect_" + "A" * 43,
    "Bearer ect_" + "A" * 43 + "=", b"Bearer \xe2\x98\x83", b"Bearer ect_" + b"\xff" * 43, "bearer",
], ids=lambda h: repr(h)[:24])
def test_hostile_authorization_headers_are_401_never_500(server, accounts, header):
    before = ledger()
    assert_401(server.request("POST", "/api/energy/consume/", BODY, [("Authorization", header)]))
    assert ledger() == before


def test_two_authorization_headers_are_401(server, accounts):
    token = add_client(name="shop", accounts=None).token
    before = ledger()
    assert_401(server.request("POST", "/api/energy/consume/", BODY,
                              [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]))
    assert ledger() == before


def test_a_huge_authorization_header_is_refused_not_a_500(server, accounts):
    before = ledger()
    status, _, _ = server.request("POST", "/api/energy/consume/", BODY, [("Authorization", "Bearer " + "A" * 9000)])
    assert 400 <= status < 500, status
    assert ledger() == before


def test_revoked_and_rotated_tokens_are_refused_by_every_worker_on_the_next_request(server, accounts):
    token = add_client(name="shop", accounts=None).token
    for n in range(2 * WORKERS):  # every worker has checked this token at least once, likely
        assert server.consume(token, {**BODY, "amount": 1, "idempotency_key": f"warm-{n}"})[0] == 201
    new = rotate_token(name="shop").token
    for n in range(2 * WORKERS):
        assert_401(server.consume(token, {**BODY, "idempotency_key": f"old-{n}"}))
        assert server.consume(new, {**BODY, "amount": 1, "idempotency_key": f"new-{n}"})[0] == 201
    revoke_client(name="shop")
    before = ledger()
    for n in range(2 * WORKERS):
        assert_401(server.consume(new, {**BODY, "idempotency_key": f"after-{n}"}))
    assert ledger() == before


def test_no_token_is_stored_in_clear_in_any_table(server, accounts):
    from django.db import connection
    from psycopg import sql

    tokens = [add_client(name="shop", accounts=None).token, add_client(name="meter", accounts=[1]).token]
    tokens.append(rotate_token(name="shop").token)
    assert server.consume(tokens[2], BODY)[0] == 201
    with connection.cursor() as cursor:
        cursor.execute("""SELECT table_name, column_name FROM information_schema.columns
                          WHERE table_schema = current_schema()
                          AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')""")
        columns = cursor.fetchall()
        assert ("energy_client", "token_hash") in columns and ("energy_consumption", "idempotency_key") in columns
        for table, column in columns:
            for token in tokens:
                query = sql.SQL("SELECT count(*) FROM {} WHERE {}::text LIKE %s").format(
                    sql.Identifier(table), sql.Identifier(column))
                cursor.execute(query, [f"%{token[4:]}%"])
                assert cursor.fetchone()[0] == 0, (table, column)
    stored = set(connection.cursor().execute("SELECT token_hash FROM energy_client").fetchall())
    assert (hash_token(tokens[2]),) in stored and (hash_token(tokens[0]),) not in stored


@pytest.mark.slow
def test_no_token_reaches_the_servers_logs_not_even_a_near_miss(accounts, tmp_path):
    # A server of its own in debug mode, where Django's request log is printed too.
    with_debug = Server(test_database_url(), tmp_path / "debug.log", workers=1, ENERGYCTL_DEBUG="1",
                        ENERGYCTL_LOG_LEVEL="DEBUG", ENERGYCTL_LOG_FORMAT="json")
    try:
        token = add_client(name="shop", accounts=None).token
        near_miss = token[:-1] + ("A" if token[-1] != "A" else "B")
        wrong = "ect_" + "Z" * 43
        basic = base64.b64encode(f"{token}:".encode()).decode()
        assert with_debug.consume(token, {**BODY, "idempotency_key": "logged-1"})[0] == 201
        assert_401(with_debug.consume(near_miss, {**BODY, "idempotency_key": "logged-2"}))
        assert_401(with_debug.consume(wrong, {**BODY, "idempotency_key": "logged-3"}))
        assert_401(with_debug.request("POST", "/api/energy/consume/", BODY, {"Authorization": f"Basic {basic}"}))
        assert_401(with_debug.request("POST", f"/api/energy/consume/?token={token}", BODY))
        read = with_debug.request("GET", "/api/energy/accounts/1/", headers={"Authorization": f"Bearer {token}"})
        assert read[0] == 200
    finally:
        with_debug.close()  # every log line is written once the server has stopped
    log = with_debug.log.read_text(errors="replace")
    # The access log line; in JSON records its quotes come escaped.
    assert re.search(r'"POST /api/energy/consume/ HTTP/1\.1\\?" 201', log), log[-2000:]
    assert "logged-1" in log, "the application's consume log record is missing"
    assert "Unauthorized: /api/energy/consume/" in log, "Django's request log is missing"
    for secret in (token, near_miss, wrong):
        assert secret[4:] not in log and secret[4:24] not in log
    assert basic not in log


@pytest.mark.slow
def test_a_same_key_storm_from_two_clients_applies_exactly_once_per_client(server, accounts):
    from django.db import connections

    tokens = {"shop": add_client(name="shop", accounts=None).token,
              "game": add_client(name="game", accounts=None).token}
    connections.close_all()
    ctx = spawn_context()
    holding, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=workers.hold_row_lock, args=(test_database_name(), holding, release, 1))
    holder.start()
    assert holding.wait(60), "the lock holder never got the lock"
    per_client = 4
    barrier, results = ctx.Barrier(2 * per_client), ctx.Queue()
    senders = [ctx.Process(target=post_at_barrier, args=(server.port, token, barrier, results))
               for token in tokens.values() for _ in range(per_client)]
    for sender in senders:
        sender.start()
    # Overlap shown, not assumed: while the row stays locked, the server's workers queue on
    # it at the same time, each for a request of one of the two clients.
    wait_until_blocked(2, holder_pid=None, alive=[holder])
    released_at = time.monotonic()
    release.set()
    holder.join(30)
    answers = [results.get(timeout=120) for _ in senders]
    for sender in senders:
        sender.join(30)
    for name, token in tokens.items():
        mine = [a for a in answers if a["token"] == token]
        assert sorted(a["status"] for a in mine) == [200] * (per_client - 1) + [201], (name, mine)
        assert len({a["body"]["consumption_id"] for a in mine}) == 1, name
        assert any(a["started"] < released_at < a["ended"] for a in mine), f"no request of {name} was in flight"
    assert Account.objects.get(pk=1).energy == 100 - 2 * 10
    assert sorted(Entry.objects.values_list("client__name", "idempotency_key")) == [
        ("game", "storm"), ("shop", "storm")]


@pytest.mark.slow
def test_healthz_is_503_with_retry_after_when_the_database_is_down(tmp_path):
    down = Server(f"postgresql://energy@127.0.0.1:{free_port()}/energyctl", tmp_path / "down.log",
                  workers=1, ready_status=503)
    try:
        status, headers, body = down.request("GET", "/healthz")
    finally:
        down.close()
    assert (status, headers.get("Retry-After"), body["error"]) == (503, "1", "unavailable")
    # No database detail in the answer: the log has it, under the error id the answer gives.
    assert "127.0.0.1" not in body["detail"] and "energy" not in body["detail"], body
    error_id = body["detail"].rsplit("Error id: ", 1)[1].rstrip(".")
    assert any(error_id in line and "Connection refused" in line for line in down.log.read_text().splitlines())


def test_healthz_and_schema_answer_without_a_token_over_http(server):
    assert server.request("GET", "/healthz")[:3:2] == (200, {"status": "ok"})
    status, headers, document = server.request("GET", "/api/schema/", headers={"Authorization": "Bearer junk"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert "bearerAuth" in document["components"]["securitySchemes"]
