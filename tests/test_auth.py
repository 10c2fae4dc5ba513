"""Clients over HTTP, in process: who may call, in which order refusals come, whose keys are whose.

Every refusal is checked to change nothing: balances and the consumption count are compared
before and after. The real-server side (logs, sockets, processes) is in test_auth_http.py.
"""

from __future__ import annotations

import json
import logging

import pytest
from rest_framework.test import APIClient

from energy.application.clients import add_client, authenticate, revoke_client, rotate_token
from energy.models import OPERATOR_CLIENT_ID, Account, Client, Entry

pytestmark = pytest.mark.django_db(transaction=True)
CONSUME = "/api/energy/consume/"


@pytest.fixture
def shop(accounts):
    return add_client(name="shop", accounts=[1, 2]).token


@pytest.fixture
def meter(accounts):
    return add_client(name="meter", accounts=None, read_only=True).token


def post(token, body, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return APIClient().generic("POST", CONSUME, raw, content_type="application/json", headers=headers)


def get(token, path, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return APIClient().get(path, headers=headers)


def ledger():
    return (sorted(Account.objects.values_list("id", "energy")), Entry.objects.count())


def refused(response, status, error):
    assert response.status_code == status, response.content
    assert response.json()["status"] == "error" and response.json()["error"] == error, response.json()
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


BODY = {"account_id": 1, "amount": 30, "idempotency_key": "order-17"}


# --- 401, 400, 403: in that order, and nothing recorded --------------------------------------

@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "bearer x", "Basic dXNlcjpwYXNz", "Token abc", "Bearer ect_" + "A" * 43,
    "Bearer  ect_" + "A" * 43, "Bearer a b", "Bearer " + "x" * 100_000, "Bearer ü" * 3, "Bearer \u2603",
    "Bearer ect_" + "A" * 42 + "\u00e9", "Bearer\tect_" + "A" * 43, "Bearer ect_" + "A" * 43 + "\x00",
], ids=lambda h: repr(h)[:30])
def test_missing_malformed_or_unknown_tokens_are_401_and_change_nothing(accounts, header):
    before = ledger()
    headers = {} if header is None else {"Authorization": header}
    response = APIClient().generic("POST", CONSUME, json.dumps(BODY), content_type="application/json",
                                   headers=headers)
    refused(response, 401, "unauthenticated")
    assert "ect_" not in response.content.decode()
    assert ledger() == before


def test_401_comes_before_400_and_400_before_403(shop, meter):
    before = ledger()
    refused(post(None, "{not json"), 401, "unauthenticated")
    refused(post(shop, "{not json"), 400, "invalid_request")
    refused(post(shop, {"account_id": 3, "amount": 0, "idempotency_key": "k"}), 400, "invalid_request")
    refused(post(meter, {"account_id": 1, "amount": 0, "idempotency_key": "k"}), 400, "invalid_request")
    refused(post(meter, BODY), 403, "forbidden")
    refused(post(shop, {**BODY, "account_id": 3}), 403, "forbidden")
    refused(get(shop, "/api/energy/accounts/nope/"), 400, "invalid_request")
    refused(get(shop, "/api/energy/accounts/3/"), 403, "forbidden")
    assert ledger() == before


@pytest.mark.parametrize("account_id", [3, 999, 2**63 - 1], ids=["exists", "missing", "largest"])
def test_an_account_outside_the_allow_list_is_403_whether_or_not_it_exists(shop, account_id):
    before = ledger()
    refused(post(shop, {**BODY, "account_id": account_id}), 403, "forbidden")
    refused(get(shop, f"/api/energy/accounts/{account_id}/"), 403, "forbidden")
    assert ledger() == before


def test_a_read_only_client_reads_but_cannot_consume(meter):
    before = ledger()
    refused(post(meter, BODY), 403, "forbidden")
    assert get(meter, "/api/energy/accounts/3/").json() == {"account_id": 3, "energy": 100, "held": 0}
    assert ledger() == before


def test_a_consume_only_client_cannot_read(accounts):
    Client.objects.create(name="writer", scopes=["consume"], accounts=None)
    token = rotate_token(name="writer").token
    Client.objects.filter(name="writer").update(scopes=["consume"])
    refused(get(token, "/api/energy/accounts/1/"), 403, "forbidden")
    assert post(token, BODY).status_code == 201


def test_wrong_method_needs_a_token_first_then_is_405(shop):
    refused(APIClient().get(CONSUME), 401, "unauthenticated")
    response = get(shop, CONSUME)
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


# --- Revocation and rotation take effect on the very next request ------------------------------

def test_revoked_token_is_refused_on_the_next_request(shop):
    assert post(shop, BODY).status_code == 201
    revoke_client(name="shop")
    before = ledger()
    refused(post(shop, {**BODY, "idempotency_key": "after"}), 401, "unauthenticated")
    refused(post(shop, BODY), 401, "unauthenticated")  # not even a replay is answered
    assert ledger() == before
    assert Client.objects.get(name="shop").token_hash is None


def test_rotated_token_replaces_the_old_one_at_once(shop):
    first = post(shop, BODY).json()
    new = rotate_token(name="shop").token
    refused(post(shop, BODY), 401, "unauthenticated")
    replay = post(new, BODY)
    assert replay.status_code == 200 and replay.json() == {**first, "status": "replayed"}


def test_rotating_a_revoked_client_admits_it_again_with_the_new_token_only(shop):
    revoke_client(name="shop")
    new = rotate_token(name="shop").token
    refused(post(shop, BODY), 401, "unauthenticated")
    assert post(new, BODY).status_code == 201


def test_the_operator_can_never_authenticate(accounts):
    operator = Client.objects.get(pk=OPERATOR_CLIENT_ID)
    assert operator.token_hash is None
    # Even a hash planted on the operator's row does not make it usable over HTTP.
    from energy.application.clients import hash_token, new_token

    token = new_token()
    Client.objects.filter(pk=OPERATOR_CLIENT_ID).update(token_hash=hash_token(token))
    assert authenticate(token) is None
    refused(post(token, BODY), 401, "unauthenticated")


# --- Keys are scoped per client -------------------------------------------------------------------

def test_two_clients_with_the_same_key_are_both_applied(shop):
    other = add_client(name="game", accounts=[1]).token
    a, b = post(shop, BODY), post(other, BODY)
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["consumption_id"] != b.json()["consumption_id"]
    assert b.json()["balance_after"] == 40
    assert Account.objects.get(pk=1).energy == 40
    assert sorted(Entry.objects.values_list("client__name", flat=True)) == ["game", "shop"]


def test_a_client_can_neither_read_nor_spoil_another_clients_key(shop):
    other = add_client(name="game", accounts=[1, 2]).token
    original = post(shop, BODY).json()
    # Same key, different amount from the other client: applied for it, not a mismatch.
    spoiler = post(other, {**BODY, "amount": 5})
    assert spoiler.status_code == 201 and spoiler.json()["amount"] == 5
    # The other client's own use of the key is what it is held to from now on.
    assert post(other, {**BODY, "amount": 5}).status_code == 200
    refused(post(other, {**BODY, "account_id": 2}), 422, "idempotency_key_mismatch")
    replay = post(shop, BODY)
    assert replay.status_code == 200 and replay.json() == {**original, "status": "replayed"}
    assert Account.objects.get(pk=1).energy == 65


def test_the_http_client_and_the_operator_have_separate_key_spaces(shop):
    from energy.application.consume import consume

    mine = consume(account_id=1, amount=10, idempotency_key="order-17")
    theirs = post(shop, BODY)
    assert theirs.status_code == 201 and theirs.json()["consumption_id"] != mine.consumption_id


# --- Tokens: random, hashed, never shown again ----------------------------------------------------

def test_tokens_are_random_long_and_stored_only_as_sha256(accounts):
    import hashlib

    issued = [add_client(name=f"c{i}", accounts=None) for i in range(5)]
    tokens = [i.token for i in issued]
    assert len(set(tokens)) == 5 and all(len(t) == 47 and t.startswith("ect_") for t in tokens)
    stored = dict(Client.objects.filter(name__in=[i.client for i in issued]).values_list("name", "token_hash"))
    assert stored == {i.client: hashlib.sha256(i.token.encode()).hexdigest() for i in issued}


@pytest.mark.parametrize("name, problem", [
    ("", "empty"), ("x" * 65, "at most 64"), ("-shop", "letters"), ("shop keeper", "letters"), ("šop", "letters"),
    ("operator", "reserved"), ("OPERATOR", "reserved"),
])
def test_bad_client_names_are_refused(accounts, name, problem):
    from energy.domain.exceptions import InvalidRequest

    with pytest.raises(InvalidRequest) as caught:
        add_client(name=name, accounts=None)
    assert problem in caught.value.fields["name"]
    assert Client.objects.count() == 1


def test_last_used_at_is_written_at_most_once_per_resolution(shop):
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert Client.objects.get(name="shop").last_used_at is None
    with CaptureQueriesContext(connection) as first:
        assert authenticate(shop) is not None
    stamped = Client.objects.get(name="shop").last_used_at
    assert stamped is not None and sum("UPDATE" in q["sql"] for q in first.captured_queries) == 1
    with CaptureQueriesContext(connection) as later:
        for _ in range(5):
            assert authenticate(shop) is not None
    assert not any("UPDATE" in q["sql"] for q in later.captured_queries)
    assert Client.objects.get(name="shop").last_used_at == stamped
    Client.objects.filter(name="shop").update(last_used_at=stamped - timedelta(minutes=2))
    authenticate(shop)
    assert Client.objects.get(name="shop").last_used_at > stamped - timedelta(minutes=2)


# --- /healthz and /api/schema/ need no token ------------------------------------------------------

def test_healthz_is_200_without_a_token_and_ignores_a_bad_one(db):
    for headers in ({}, {"Authorization": "Bearer nonsense"}):
        response = APIClient().get("/healthz", headers=headers)
        assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_schema_documents_every_endpoint_error_and_the_bearer_scheme(db):
    response = APIClient().get("/api/schema/", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 200, response.content
    document = json.loads(response.content)
    from drf_spectacular.validation import validate_schema

    validate_schema(document)  # against the OpenAPI 3 JSON schema; raises on any deviation
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"][
            "bearerAuth"]["description"]}
    paths = document["paths"]
    assert set(paths) == {"/api/energy/consume/", "/api/energy/accounts/{account_id}/", "/healthz",
                          "/api/energy/accounts/{account_id}/consumptions/", "/api/energy/consumptions/{key}/",
                          "/api/energy/credit/", "/api/energy/consumptions/{key}/reverse/", "/api/energy/holds/",
                          "/api/energy/holds/{key}/capture/", "/api/energy/holds/{key}/void/"}
    consume = paths["/api/energy/consume/"]["post"]
    assert set(consume["responses"]) == {"200", "201", "400", "401", "403", "404", "406", "409", "413", "415", "422",
                                         "500", "503"}
    assert consume["security"] == [{"bearerAuth": []}]
    body = document["components"]["schemas"]["ConsumeBody"]
    assert set(body["properties"]) == {"account_id", "amount", "idempotency_key"}
    account = paths["/api/energy/accounts/{account_id}/"]["get"]
    assert set(account["responses"]) == {"200", "400", "401", "403", "404", "406", "500", "503"}
    assert paths["/healthz"]["get"].get("security") in (None, [])
    assert set(paths["/healthz"]["get"]["responses"]) == {"200", "400", "406", "500", "503"}
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"status", "error", "detail", "fields"}


def test_the_schema_declares_what_the_views_enforce(db):
    """The document's body serializer and the domain's rules agree on every edge of the input."""
    from energy.domain.exceptions import InvalidRequest
    from energy.domain.requests import ConsumeRequest
    from energy.http.openapi import ConsumeBody

    cases = [{"account_id": 1, "amount": 1, "idempotency_key": "k"}, {"account_id": 0, "amount": 1,
             "idempotency_key": "k"}, {"account_id": 1, "amount": 2**63, "idempotency_key": "k"},
             {"account_id": 2**63 - 1, "amount": 2**63 - 1, "idempotency_key": "k" * 255},
             {"account_id": 1, "amount": 1, "idempotency_key": "k" * 256}, {"account_id": 1, "amount": -1,
             "idempotency_key": "k"}, {"account_id": 1, "amount": 1, "idempotency_key": ""}]
    for case in cases:
        try:
            ConsumeRequest.from_json(case)
            valid = True
        except InvalidRequest:
            valid = False
        assert ConsumeBody(data=case).is_valid() == valid, case


def test_an_api_view_that_declares_no_scope_is_refused_outright(shop):
    """The permission defaults fail closed: a new endpoint that forgets its scope answers 403."""
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    class Forgetful(APIView):
        def get(self, request):
            return Response({"secret": True})

    request = APIRequestFactory().get("/api/forgetful/", HTTP_AUTHORIZATION=f"Bearer {shop}")
    response = Forgetful.as_view()(request)
    assert response.status_code == 403 and response.data["error"] == "forbidden"
    anonymous = Forgetful.as_view()(APIRequestFactory().get("/api/forgetful/"))
    assert anonymous.status_code == 401


# --- Rotation that keeps the old token for a while -------------------------------------------------

def database_clock_passes(name: str) -> None:
    """Until the database's clock is past the end of ``name``'s kept token (polled, never guessed)."""
    import time

    from django.db import connection

    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT CURRENT_TIMESTAMP > previous_token_expires_at FROM energy_client WHERE name = %s",
                           [name])
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "the kept token's end never came"
            time.sleep(0.05)


def test_a_token_kept_by_a_rotation_works_beside_the_new_one(shop):
    new = rotate_token(name="shop", keep_old_for=3600).token
    old = post(shop, BODY)
    assert old.status_code == 201, old.content
    assert post(new, {**BODY, "idempotency_key": "new"}).status_code == 201
    # The same client, whichever of its tokens is sent: one key space.
    replay = post(new, BODY)
    assert replay.status_code == 200 and replay.json() == {**old.json(), "status": "replayed"}


def test_a_kept_token_stops_once_the_database_clock_passes_its_end(shop):
    new = rotate_token(name="shop", keep_old_for=1).token
    database_clock_passes("shop")
    before = ledger()
    refused(post(shop, BODY), 401, "unauthenticated")
    assert ledger() == before
    assert post(new, BODY).status_code == 201


def test_without_keep_old_for_the_old_token_stops_at_once(shop):
    new = rotate_token(name="shop", keep_old_for=0).token
    refused(post(shop, BODY), 401, "unauthenticated")
    assert post(new, BODY).status_code == 201
    assert Client.objects.filter(name="shop").values_list("previous_token_hash", flat=True).get() is None


def test_revoke_ends_the_kept_token_too(shop):
    new = rotate_token(name="shop", keep_old_for=3600).token
    revoke_client(name="shop")
    for token in (shop, new):
        refused(post(token, BODY), 401, "unauthenticated")
    # Re-admitted later, the client gets the new token only; nothing kept comes back.
    newest = rotate_token(name="shop", keep_old_for=3600).token
    for token in (shop, new):
        refused(post(token, BODY), 401, "unauthenticated")
    assert post(newest, BODY).status_code == 201


def test_a_second_rotation_ends_the_token_kept_by_the_first(shop):
    second = rotate_token(name="shop", keep_old_for=3600).token
    third = rotate_token(name="shop", keep_old_for=3600).token
    refused(post(shop, BODY), 401, "unauthenticated")
    assert post(second, BODY).status_code == 201
    assert post(third, {**BODY, "idempotency_key": "third"}).status_code == 201


def test_a_kept_token_is_stored_only_as_its_hash(shop):
    from energy.application.clients import hash_token

    new = rotate_token(name="shop", keep_old_for=60).token
    row = Client.objects.filter(name="shop").values().get()
    assert (row["token_hash"], row["previous_token_hash"]) == (hash_token(new), hash_token(shop))
    assert not any(token in str(value) for value in row.values() for token in (shop, new))


@pytest.mark.parametrize("seconds", [-1, 604_801, 1.5, True, "60", None])
def test_keep_old_for_must_be_whole_seconds_up_to_a_week(shop, seconds):
    from energy.domain.exceptions import InvalidRequest

    with pytest.raises(InvalidRequest) as caught:
        rotate_token(name="shop", keep_old_for=seconds)
    assert "keep_old_for" in caught.value.fields
    assert post(shop, BODY).status_code == 201  # nothing was rotated


# --- Logs: one record per client change, the channel of each consume, never a token -----------------

def rendered(record: logging.LogRecord) -> str:
    """A record as both of the server's formats write it, every extra field included."""
    from pythonjsonlogger.json import JsonFormatter

    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record)
    return plain + "\n" + JsonFormatter("%(levelname)s %(name)s %(message)s").format(record)


def test_each_client_change_logs_one_record_that_never_holds_a_token(accounts, caplog):
    from energy.application.clients import hash_token
    from energy.domain.exceptions import ClientNotFound

    caplog.set_level(logging.INFO, logger="energy")
    first = add_client(name="shop", accounts=[1, 2]).token
    second = rotate_token(name="shop", keep_old_for=300).token
    third = rotate_token(name="shop").token
    revoke_client(name="shop")
    with pytest.raises(ClientNotFound):
        rotate_token(name="nobody", keep_old_for=60)
    records = [r for r in caplog.records if r.name == "energy.clients"]
    assert [(r.event, r.client, getattr(r, "keep_old_for", None)) for r in records] == [
        ("client_added", "shop", None),
        ("client_rotated", "shop", 300),
        ("client_rotated", "shop", 0),
        ("client_revoked", "shop", None),
    ]
    assert (records[0].scopes, records[0].accounts) == (["consume", "read"], [1, 2])
    assert all(r.levelno == logging.INFO for r in records)
    text = "\n".join(rendered(r) for r in records)
    assert "keep_old_for" in text and "300" in text
    for token in (first, second, third):
        assert token not in text and token[4:] not in text and hash_token(token) not in text


def test_the_consume_log_names_the_channel_each_request_came_by(shop, caplog):
    from energy.application.consume import consume

    caplog.set_level(logging.INFO, logger="energy")
    assert post(shop, BODY).status_code == 201
    consume(account_id=2, amount=5, idempotency_key="from-the-command-line")
    records = [r for r in caplog.records if r.name == "energy.consume"]
    assert [(r.idempotency_key, r.channel) for r in records] == [("order-17", "http"),
                                                                  ("from-the-command-line", "cli")]
    assert shop not in "\n".join(rendered(r) for r in records)


@pytest.mark.slow
def test_through_a_real_server_a_kept_token_works_until_its_end_then_is_401(shop, tmp_path):
    from tests.http_server import Server
    from tests.support import test_database_url

    log = tmp_path / "server.log"
    small = {**BODY, "amount": 10}
    server = Server(test_database_url(), log, workers=1, ENERGYCTL_LOG_LEVEL="INFO", ENERGYCTL_LOG_FORMAT="json")
    try:
        second = rotate_token(name="shop", keep_old_for=3600).token
        assert server.consume(shop, small)[0] == 201
        assert server.consume(second, {**small, "idempotency_key": "second"})[0] == 201
        third = rotate_token(name="shop", keep_old_for=1).token
        status, headers, _ = server.consume(shop, {**small, "idempotency_key": "first-again"})
        assert (status, headers["WWW-Authenticate"]) == (401, "Bearer")  # ended by the later rotation
        assert server.consume(second, {**small, "idempotency_key": "still"})[0] == 201
        database_clock_passes("shop")
        assert server.consume(second, {**small, "idempotency_key": "late"})[0] == 401
        assert server.consume(third, {**small, "idempotency_key": "third"})[0] == 201
    finally:
        server.close()
    records = [json.loads(text) for text in log.read_text().splitlines() if text.startswith("{")]
    consumes = [r for r in records if r.get("name") == "energy.consume"]
    assert [(r["idempotency_key"], r["channel"]) for r in consumes] == [
        ("order-17", "http"), ("second", "http"), ("still", "http"), ("third", "http")]
    assert not any(token in log.read_text() for token in (shop, second, third))
