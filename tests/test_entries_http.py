"""Credit and reverse over HTTP: ``POST /api/energy/credit/`` and ``POST /api/energy/consumptions/<key>/reverse/``.

Scope ``credit``, per-client keys, allow-lists, 401 then 400 then 403, ``Idempotent-Replayed`` on
replays; statuses are the contract's. Django's test client in process, and one real ``energyctl serve``.
"""

import pytest

from energy.application.clients import add_client
from energy.application.consume import consume
from energy.domain.requests import MAX_INT64
from tests.support import api, client_id, table_rows, test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

CREDIT = "/api/energy/credit/"
ALL_SCOPES = ["consume", "read", "credit"]


def reverse_path(key: str) -> str:
    from urllib.parse import quote

    return f"/api/energy/consumptions/{quote(key, safe='')}/reverse/"


@pytest.fixture
def shop(accounts):
    """A client with every scope, allowed accounts 1, 2 and 9 (which does not exist); it consumed 30 under order-1."""
    issued = add_client(name="shop", accounts=[1, 2, 9], scopes=ALL_SCOPES)
    consume(account_id=1, amount=30, idempotency_key="order-1", client_id=client_id("shop"))
    return api(issued.token)


@pytest.fixture
def meter(accounts):
    """A client with the default scopes (consume, read): no credit."""
    return api(add_client(name="meter", accounts=[1, 2]).token)


def ledger_rows():
    """Every row but the clients' (a request moves its client's last_used_at)."""
    return {table: rows for table, rows in table_rows().items() if table != "energy_client"}


def energy(account_id: int) -> int:
    from energy.models import Account

    return Account.objects.get(pk=account_id).energy


def credit(client, body, **headers):
    return client.post(CREDIT, body, format="json", **headers)


# credit

def test_a_credit_is_applied_once_and_its_retry_replays_the_original(shop):
    body = {"account_id": 2, "amount": 50, "idempotency_key": "topup-1"}

    first = credit(shop, body)
    again = credit(shop, body)

    assert first.status_code == 201, first.content
    assert first.json() | {"entry_id": 0, "created_at": ""} == {
        "status": "applied", "kind": "credit", "entry_id": 0, "account_id": 2, "amount": 50,
        "idempotency_key": "topup-1", "balance_after": 150, "created_at": ""}
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200, again.content
    assert again.json() == {**first.json(), "status": "replayed"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert energy(2) == 150


def test_a_credits_key_may_come_in_the_header(shop):
    first = credit(shop, {"account_id": 2, "amount": 5}, HTTP_IDEMPOTENCY_KEY='"topup-2"')
    again = credit(shop, {"account_id": 2, "amount": 5, "idempotency_key": "topup-2"})

    assert first.status_code == 201, first.content
    assert first.json()["idempotency_key"] == "topup-2"
    assert again.status_code == 200, again.content


@pytest.mark.parametrize("body, headers, field", [
    ({"account_id": 1, "amount": MAX_INT64, "idempotency_key": "huge"}, {}, "amount"),  # past 2**63 - 1
    ({"account_id": 1, "amount": MAX_INT64 + 1, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": 1, "amount": 0, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": 1, "amount": -1, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": 1, "amount": 1.5, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": 1, "amount": True, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": "1", "amount": 5, "idempotency_key": "k"}, {}, "account_id"),
    ({"account_id": 1, "amount": 5}, {}, "idempotency_key"),
    ({"account_id": 1, "amount": 5, "idempotency_key": ""}, {}, "idempotency_key"),
    ({"account_id": 1, "amount": 5, "idempotency_key": "a"}, {"HTTP_IDEMPOTENCY_KEY": "b"}, "idempotency_key"),
    ({"account_id": 1, "amount": 5}, {"HTTP_IDEMPOTENCY_KEY": "caf\u00e9"}, "Idempotency-Key"),
])
def test_invalid_credits_are_400_naming_the_field_and_change_nothing(shop, body, headers, field):
    before = ledger_rows()

    response = credit(shop, body, **headers)

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"], response.json()
    assert ledger_rows() == before


def test_a_credit_past_the_largest_balance_says_so(shop):
    response = credit(shop, {"account_id": 1, "amount": MAX_INT64 - 69, "idempotency_key": "huge"})

    assert response.status_code == 400, response.content
    assert "2**63 - 1" in response.json()["fields"]["amount"]


@pytest.mark.parametrize("body, status, error", [
    ({"account_id": 1, "amount": 30, "idempotency_key": "order-1"}, 422, "idempotency_key_mismatch"),  # a consume's
    ({"account_id": 9, "amount": 5, "idempotency_key": "k9"}, 404, "account_not_found"),
])
def test_refused_credits_answer_the_contracts_status_and_change_nothing(shop, body, status, error):
    before = ledger_rows()

    response = credit(shop, body)

    assert response.status_code == status, response.content
    assert response.json()["error"] == error
    assert ledger_rows() == before


def test_a_consume_with_a_credits_key_is_422(shop):
    credit(shop, {"account_id": 2, "amount": 5, "idempotency_key": "topup-1"})

    response = shop.post("/api/energy/consume/", {"account_id": 2, "amount": 5, "idempotency_key": "topup-1"},
                         format="json")

    assert response.status_code == 422, response.content
    assert energy(2) == 105


def test_a_credit_without_a_token_is_401(shop):
    response = credit(api(None), {"account_id": 1, "amount": 5, "idempotency_key": "k"})

    assert response.status_code == 401, response.content
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("account", [1, 3, 99])  # allowed but no scope; outside the allow-list, existing or not
def test_a_credit_without_the_scope_or_the_account_is_403_and_changes_nothing(shop, meter, account):
    caller = meter if account == 1 else shop
    before = ledger_rows()

    response = credit(caller, {"account_id": account, "amount": 5, "idempotency_key": "k"})

    assert response.status_code == 403, response.content
    assert response.json()["error"] == "forbidden"
    assert ledger_rows() == before


def test_an_invalid_credit_is_400_before_403(meter):
    response = credit(meter, {"account_id": 1, "amount": 0, "idempotency_key": "k"})

    assert response.status_code == 400, response.content


def test_wrong_method_and_content_type_are_405_and_415(shop):
    assert shop.get(CREDIT).status_code == 405
    assert shop.post(CREDIT, "account_id=1", content_type="text/plain").status_code == 415


# reverse

def test_a_reverse_gives_the_consumption_back_once_and_replays_after(shop):
    first = shop.post(reverse_path("order-1"))
    again = shop.post(reverse_path("order-1"))

    assert first.status_code == 201, first.content
    assert first.json() | {"entry_id": 0, "created_at": ""} == {
        "status": "applied", "kind": "reversal", "entry_id": 0, "account_id": 1, "amount": 30,
        "idempotency_key": "order-1", "reverses": "order-1", "balance_after": 100, "created_at": ""}
    assert again.status_code == 200, again.content
    assert again.json() == {**first.json(), "status": "replayed"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert energy(1) == 100


def test_a_key_with_a_slash_is_reversed_through_its_encoded_path(shop):
    consume(account_id=2, amount=10, idempotency_key="order/2", client_id=client_id("shop"))

    response = shop.post(reverse_path("order/2"))

    assert response.status_code == 201, response.content
    assert response.json()["reverses"] == "order/2"
    assert shop.get("/api/energy/consumptions/order%2F2/").status_code == 200


@pytest.mark.parametrize("key, status, error", [
    ("nobody-sent-this", 404, "key_not_found"),
    ("topup-1", 409, "invalid_state"),  # a credit cannot be reversed
    ("by-the-operator", 404, "key_not_found"),  # another client's key
    ("x" * 256, 400, "invalid_request"),
])
def test_refused_reverses_answer_the_contracts_status_and_change_nothing(shop, key, status, error):
    credit(shop, {"account_id": 1, "amount": 5, "idempotency_key": "topup-1"})
    consume(account_id=1, amount=5, idempotency_key="by-the-operator")
    before = ledger_rows()

    response = shop.post(reverse_path(key))

    assert response.status_code == status, response.content
    assert response.json()["error"] == error
    assert ledger_rows() == before


def test_a_reverse_without_the_scope_is_403_before_the_key_is_looked_up(shop, meter):
    consume(account_id=1, amount=5, idempotency_key="meters", client_id=client_id("meter"))
    before = ledger_rows()

    known, unknown = meter.post(reverse_path("meters")), meter.post(reverse_path("nobody-sent-this"))

    assert (known.status_code, unknown.status_code) == (403, 403), (known.content, unknown.content)
    assert ledger_rows() == before


def test_a_reverse_of_a_consumption_outside_the_allow_list_is_403(accounts):
    narrow = api(add_client(name="narrow", accounts=[1], scopes=ALL_SCOPES).token)
    # Recorded while account 3 was allowed (the use case itself checks no allow-list).
    consume(account_id=3, amount=10, idempotency_key="on-3", client_id=client_id("narrow"))
    before = ledger_rows()

    response = narrow.post(reverse_path("on-3"))

    assert response.status_code == 403, response.content
    assert ledger_rows() == before


def test_a_reverse_without_a_token_is_401(shop):
    response = api(None).post(reverse_path("order-1"))

    assert response.status_code == 401, response.content
    assert energy(1) == 70


def test_a_consume_replayed_after_its_reversal_answers_the_original(shop):
    original = consume(account_id=1, amount=30, idempotency_key="order-1", client_id=client_id("shop"))
    shop.post(reverse_path("order-1"))

    response = shop.post("/api/energy/consume/", {"account_id": 1, "amount": 30, "idempotency_key": "order-1"},
                         format="json")

    assert response.status_code == 200, response.content
    assert response.json() == original.to_dict()


def test_the_document_describes_credit_and_reverse(db):
    document = api(None).get("/api/schema/").json()

    credit_op = document["paths"][CREDIT]["post"]
    reverse_op = document["paths"]["/api/energy/consumptions/{key}/reverse/"]["post"]
    assert set(credit_op["responses"]) == {"200", "201", "400", "401", "403", "404", "406", "413", "415", "422",
                                           "500", "503"}
    assert set(reverse_op["responses"]) == {"200", "201", "400", "401", "403", "404", "406", "409", "500", "503"}
    for operation in (credit_op, reverse_op):
        assert operation["responses"]["200"]["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"]


# a real server

@pytest.mark.slow
def test_credit_and_reverse_through_a_real_server(accounts, tmp_path):
    from tests.http_server import Server

    token = add_client(name="shop", accounts=[1, 2], scopes=ALL_SCOPES).token
    other = add_client(name="other", accounts=None, scopes=ALL_SCOPES).token
    server = Server(test_database_url(), tmp_path / "serve.log", workers=1)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        consumed = server.consume(token, {"account_id": 1, "amount": 30, "idempotency_key": "order-1"})
        credited = server.request("POST", CREDIT, {"account_id": 2, "amount": 7}, {**auth, "Idempotency-Key": "t1"})
        retried = server.request("POST", CREDIT, {"account_id": 2, "amount": 7, "idempotency_key": "t1"}, auth)
        reversed_ = server.request("POST", reverse_path("order-1"), None, auth)
        replayed = server.request("POST", reverse_path("order-1"), None, auth)
        invalid = server.request("POST", reverse_path("t1"), None, auth)
        foreign = server.request("POST", reverse_path("order-1"), None, {"Authorization": f"Bearer {other}"})
    finally:
        server.close()

    assert consumed[0] == 201, consumed
    assert (credited[0], credited[2]["balance_after"]) == (201, 107), credited
    assert (retried[0], retried[1]["Idempotent-Replayed"], retried[2]) == (200, "true", {**credited[2],
                                                                                        "status": "replayed"})
    assert (reversed_[0], reversed_[2]["reverses"], reversed_[2]["balance_after"]) == (201, "order-1", 100)
    assert (replayed[0], replayed[1]["Idempotent-Replayed"]) == (200, "true"), replayed
    assert (invalid[0], invalid[2]["error"]) == (409, "invalid_state"), invalid
    assert (foreign[0], foreign[2]["error"]) == (404, "key_not_found"), foreign
    assert (energy(1), energy(2)) == (100, 107)
