"""Holds over HTTP: ``POST /api/energy/holds/``, ``POST /api/energy/holds/<key>/capture/`` and ``.../void/``,
and ``GET /api/energy/accounts/<id>/`` with what is held.

Scope ``consume``, per-client keys, allow-lists (a capture or void checked against its hold's account),
401 then 400 then 403, ``Idempotent-Replayed`` on replays; statuses are the contract's. Django's test
client in process, and one real ``energyctl serve``.
"""

from urllib.parse import quote

import pytest

from energy.application.clients import add_client
from energy.application.consume import consume
from energy.domain.requests import MAX_INT64
from tests.support import api, client_id, table_rows, test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

HOLDS = "/api/energy/holds/"
ALL_SCOPES = ["consume", "read", "credit"]


def capture_path(key: str) -> str:
    return f"{HOLDS}{quote(key, safe='')}/capture/"


def void_path(key: str) -> str:
    return f"{HOLDS}{quote(key, safe='')}/void/"


@pytest.fixture
def shop(accounts):
    """A client with the default scopes, allowed accounts 1, 2 and 9 (which does not exist); it consumed 30
    under order-1."""
    issued = add_client(name="shop", accounts=[1, 2, 9])
    consume(account_id=1, amount=30, idempotency_key="order-1", client_id=client_id("shop"))
    return api(issued.token)


@pytest.fixture
def reader(accounts):
    """A client with scope read only, allowed accounts 1 and 2."""
    return api(add_client(name="reader", accounts=[1, 2], scopes=["read"]).token)


def ledger_rows():
    """Every row but the clients' (a request moves its client's last_used_at)."""
    return {table: rows for table, rows in table_rows().items() if table != "energy_client"}


def as_read() -> dict:
    """What every read shows: each account as the API answers it, and the entries recorded (kind, amount).

    A writer that meets an expired hold may write its release down before refusing; that
    changes rows, never what a read shows.
    """
    from energy.application.accounts import get_account
    from energy.models import Account, Entry

    return {"accounts": [get_account(account_id=pk) for pk in Account.objects.order_by("pk").values_list("pk",
                                                                                                         flat=True)],
            "entries": list(Entry.objects.order_by("pk").values_list("pk", "kind", "amount"))}


def hold(client, body, **headers):
    return client.post(HOLDS, body, format="json", **headers)


def held(client, account_id: int = 1, amount: int = 40, key: str = "cart-1", **more):
    response = hold(client, {"account_id": account_id, "amount": amount, "idempotency_key": key, **more})
    assert response.status_code == 201, response.content
    return response.json()


def account(client, account_id: int) -> dict:
    response = client.get(f"/api/energy/accounts/{account_id}/")
    assert response.status_code == 200, response.content
    return response.json()


def expire_now(key: str) -> None:
    """Make the hold under ``key`` expired by the database's clock, as if its time had passed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE energy_consumption SET expires_at = now() - interval '1 second' "
                       "WHERE idempotency_key = %s AND kind = 'hold'", [key])
        assert cursor.rowcount == 1


# hold

def test_a_hold_is_applied_once_and_its_retry_replays_the_original(shop):
    body = {"account_id": 1, "amount": 40, "idempotency_key": "cart-1", "expires_in": 600}

    first = hold(shop, body)
    again = hold(shop, body)

    assert first.status_code == 201, first.content
    assert first.json() | {"entry_id": 0, "created_at": "", "expires_at": ""} == {
        "status": "applied", "kind": "hold", "entry_id": 0, "account_id": 1, "amount": 40,
        "idempotency_key": "cart-1", "balance_after": 30, "held_after": 40, "state": "open",
        "created_at": "", "expires_at": ""}
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200, again.content
    assert again.json() == {**first.json(), "status": "replayed"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert account(shop, 1) == {"account_id": 1, "energy": 30, "held": 40}


def test_a_holds_key_may_come_in_the_header(shop):
    first = hold(shop, {"account_id": 2, "amount": 5}, HTTP_IDEMPOTENCY_KEY='"cart-2"')
    again = hold(shop, {"account_id": 2, "amount": 5, "idempotency_key": "cart-2"}, HTTP_IDEMPOTENCY_KEY="cart-2")

    assert first.status_code == 201, first.content
    assert first.json()["idempotency_key"] == "cart-2"
    assert again.status_code == 200, again.content


@pytest.mark.parametrize("body, headers, field", [
    ({"account_id": 1, "amount": 5, "idempotency_key": "k", "expires_in": 0}, {}, "expires_in"),
    ({"account_id": 1, "amount": 5, "idempotency_key": "k", "expires_in": 604801}, {}, "expires_in"),
    ({"account_id": 1, "amount": 5, "idempotency_key": "k", "expires_in": 1.5}, {}, "expires_in"),
    ({"account_id": 1, "amount": 5, "idempotency_key": "k", "expires_in": "60"}, {}, "expires_in"),
    ({"account_id": 1, "amount": 5, "idempotency_key": "k", "expires_in": True}, {}, "expires_in"),
    ({"account_id": 1, "amount": 0, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": 1, "amount": -1, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": 1, "amount": MAX_INT64 + 1, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": 1, "amount": 1.5, "idempotency_key": "k"}, {}, "amount"),
    ({"account_id": "1", "amount": 5, "idempotency_key": "k"}, {}, "account_id"),
    ({"account_id": 1, "amount": 5}, {}, "idempotency_key"),
    ({"account_id": 1, "amount": 5, "idempotency_key": "a"}, {"HTTP_IDEMPOTENCY_KEY": "b"}, "idempotency_key"),
    ({"account_id": 1, "amount": 5}, {"HTTP_IDEMPOTENCY_KEY": "caf\u00e9"}, "Idempotency-Key"),
    ([1, 2], {}, "body"),
])
def test_invalid_holds_are_400_naming_the_field_and_change_nothing(shop, body, headers, field):
    before = ledger_rows()

    response = hold(shop, body, **headers)

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"], response.json()
    assert ledger_rows() == before


def test_a_hold_of_the_longest_life_with_null_expiry_fields_is_applied(shop):
    longest = hold(shop, {"account_id": 1, "amount": 5, "idempotency_key": "week", "expires_in": 604800})
    default = hold(shop, {"account_id": 1, "amount": 5, "idempotency_key": "null", "expires_in": None})

    assert (longest.status_code, default.status_code) == (201, 201), (longest.content, default.content)


@pytest.mark.parametrize("body, status, error", [
    ({"account_id": 1, "amount": 71, "idempotency_key": "k"}, 409, "insufficient_energy"),
    ({"account_id": 1, "amount": 30, "idempotency_key": "order-1"}, 422, "idempotency_key_mismatch"),  # a consume's
    ({"account_id": 9, "amount": 5, "idempotency_key": "k9"}, 404, "account_not_found"),
])
def test_refused_holds_answer_the_contracts_status_and_change_nothing(shop, body, status, error):
    before = ledger_rows()

    response = hold(shop, body)

    assert response.status_code == status, response.content
    assert response.json()["error"] == error
    assert ledger_rows() == before


def test_a_hold_without_a_token_is_401(shop):
    response = hold(api(None), {"account_id": 1, "amount": 5, "idempotency_key": "k"})

    assert response.status_code == 401, response.content
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("account_id", [1, 3, 99])  # allowed but no scope; outside the allow-list, existing or not
def test_a_hold_without_the_scope_or_the_account_is_403_and_changes_nothing(shop, reader, account_id):
    caller = reader if account_id == 1 else shop
    before = ledger_rows()

    response = hold(caller, {"account_id": account_id, "amount": 5, "idempotency_key": "k"})

    assert response.status_code == 403, response.content
    assert response.json()["error"] == "forbidden"
    assert ledger_rows() == before


def test_an_invalid_hold_is_400_before_403(reader):
    response = hold(reader, {"account_id": 3, "amount": 5, "idempotency_key": "k", "expires_in": 0})

    assert response.status_code == 400, response.content


def test_wrong_method_and_content_type_are_405_and_415(shop):
    held(shop)

    assert shop.get(HOLDS).status_code == 405
    assert shop.get(capture_path("cart-1")).status_code == 405
    assert shop.post(HOLDS, "account_id=1", content_type="text/plain").status_code == 415
    assert shop.post(capture_path("cart-1"), "amount=1", content_type="text/plain").status_code == 415


# capture

def test_a_capture_of_all_is_applied_once_and_replayed_after(shop):
    held(shop)

    first = shop.post(capture_path("cart-1"))
    again = shop.post(capture_path("cart-1"), {}, format="json")

    assert first.status_code == 201, first.content
    assert first.json() | {"entry_id": 0, "created_at": ""} == {
        "status": "applied", "kind": "capture", "entry_id": 0, "account_id": 1, "amount": 40,
        "idempotency_key": "cart-1", "balance_after": 30, "held_after": 0, "released": 0, "created_at": ""}
    assert again.status_code == 200, again.content
    assert again.json() == {**first.json(), "status": "replayed"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert account(shop, 1) == {"account_id": 1, "energy": 30, "held": 0}


def test_a_capture_of_part_releases_the_rest(shop):
    held(shop)

    first = shop.post(capture_path("cart-1"), {"amount": 25}, format="json")
    again = shop.post(capture_path("cart-1"), {"amount": 25}, format="json")

    assert first.status_code == 201, first.content
    assert (first.json()["amount"], first.json()["released"], first.json()["balance_after"]) == (25, 15, 45)
    assert (again.status_code, again.json()) == (200, {**first.json(), "status": "replayed"})
    assert account(shop, 1) == {"account_id": 1, "energy": 45, "held": 0}


@pytest.mark.parametrize("setup, body, status, error", [
    ("capture-10", {"amount": 20}, 422, "idempotency_key_mismatch"),
    (None, {"amount": 41}, 400, "invalid_request"),  # above the hold
    (None, {"amount": 0}, 400, "invalid_request"),
    (None, {"amount": "5"}, 400, "invalid_request"),
    (None, {"amount": True}, 400, "invalid_request"),
    (None, {"amount": MAX_INT64 + 1}, 400, "invalid_request"),
    (None, [5], 400, "invalid_request"),
    ("void", {"amount": 5}, 409, "invalid_state"),
    ("expired", None, 409, "invalid_state"),
])
def test_refused_captures_answer_the_contracts_status_and_change_nothing(shop, setup, body, status, error):
    held(shop)
    if setup == "capture-10":
        assert shop.post(capture_path("cart-1"), {"amount": 10}, format="json").status_code == 201
    elif setup == "void":
        assert shop.post(void_path("cart-1")).status_code == 201
    elif setup == "expired":
        expire_now("cart-1")
    unchanged = as_read if setup == "expired" else ledger_rows
    before = unchanged()

    response = shop.post(capture_path("cart-1"), body, format="json")

    assert response.status_code == status, response.content
    assert response.json()["error"] == error
    assert unchanged() == before


@pytest.mark.parametrize("path", [capture_path, void_path])
@pytest.mark.parametrize("key, status, error", [
    ("nobody-sent-this", 404, "key_not_found"),
    ("order-1", 409, "invalid_state"),  # a consume is no hold
    ("by-the-operator", 404, "key_not_found"),  # another client's key
    ("x" * 256, 400, "invalid_request"),
])
def test_capture_and_void_of_what_is_not_this_clients_hold_are_refused(shop, path, key, status, error):
    from energy.application.holds import hold as hold_use_case

    hold_use_case(account_id=1, amount=5, idempotency_key="by-the-operator")
    before = ledger_rows()

    response = shop.post(path(key))

    assert response.status_code == status, response.content
    assert response.json()["error"] == error
    assert ledger_rows() == before


def test_a_key_with_a_slash_is_captured_through_its_encoded_path(shop):
    held(shop, key="cart/2")

    response = shop.post(capture_path("cart/2"))

    assert response.status_code == 201, response.content
    assert response.json()["idempotency_key"] == "cart/2"


@pytest.mark.parametrize("path", [capture_path, void_path])
def test_capture_and_void_without_the_scope_are_403_before_the_key_is_looked_up(shop, reader, path):
    held(shop)
    before = ledger_rows()

    known, unknown = reader.post(path("cart-1")), reader.post(path("nobody-sent-this"))

    assert (known.status_code, unknown.status_code) == (403, 403), (known.content, unknown.content)
    assert ledger_rows() == before


@pytest.mark.parametrize("path", [capture_path, void_path])
def test_capture_and_void_of_a_hold_outside_the_allow_list_are_403(accounts, path):
    from energy.application.holds import hold as hold_use_case

    narrow = api(add_client(name="narrow", accounts=[1]).token)
    # Recorded while account 3 was allowed (the use case itself checks no allow-list).
    hold_use_case(account_id=3, amount=10, idempotency_key="on-3", client_id=client_id("narrow"))
    before = ledger_rows()

    response = narrow.post(path("on-3"))

    assert response.status_code == 403, response.content
    assert ledger_rows() == before


@pytest.mark.parametrize("path", [capture_path, void_path])
def test_capture_and_void_without_a_token_are_401(shop, path):
    held(shop)

    response = api(None).post(path("cart-1"))

    assert response.status_code == 401, response.content
    assert account(shop, 1) == {"account_id": 1, "energy": 30, "held": 40}


# void

def test_a_void_gives_the_hold_back_once_and_replays_after(shop):
    held(shop)

    first = shop.post(void_path("cart-1"))
    again = shop.post(void_path("cart-1"))

    assert first.status_code == 201, first.content
    assert first.json() | {"entry_id": 0, "created_at": ""} == {
        "status": "applied", "kind": "void", "entry_id": 0, "account_id": 1, "amount": 40,
        "idempotency_key": "cart-1", "balance_after": 70, "held_after": 0, "created_at": ""}
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (200, "true")
    assert again.json() == {**first.json(), "status": "replayed"}
    assert account(shop, 1) == {"account_id": 1, "energy": 70, "held": 0}


@pytest.mark.parametrize("setup", ["capture", "expired"])
def test_a_void_of_a_captured_or_expired_hold_is_409(shop, setup):
    held(shop)
    if setup == "capture":
        assert shop.post(capture_path("cart-1"), {"amount": 5}, format="json").status_code == 201
    else:
        expire_now("cart-1")
    unchanged = as_read if setup == "expired" else ledger_rows
    before = unchanged()

    response = shop.post(void_path("cart-1"))

    assert response.status_code == 409, response.content
    assert response.json()["error"] == "invalid_state"
    assert unchanged() == before


# the account, expiry

def test_the_account_counts_an_expired_hold_as_energy_and_a_consume_spends_it(shop):
    held(shop, amount=70)
    short = shop.post("/api/energy/consume/", {"account_id": 1, "amount": 1, "idempotency_key": "early"},
                      format="json")
    expire_now("cart-1")

    shown = account(shop, 1)
    spent = shop.post("/api/energy/consume/", {"account_id": 1, "amount": 70, "idempotency_key": "later"},
                      format="json")

    assert short.status_code == 409, short.content
    assert shown == {"account_id": 1, "energy": 70, "held": 0}
    assert spent.status_code == 201, spent.content
    assert account(shop, 1) == {"account_id": 1, "energy": 0, "held": 0}


def test_the_document_describes_the_holds_endpoints(db):
    document = api(None).get("/api/schema/").json()

    hold_op = document["paths"][HOLDS]["post"]
    capture_op = document["paths"]["/api/energy/holds/{key}/capture/"]["post"]
    void_op = document["paths"]["/api/energy/holds/{key}/void/"]["post"]
    assert set(hold_op["responses"]) == {"200", "201", "400", "401", "403", "404", "406", "409", "413", "415",
                                         "422", "500", "503"}
    assert set(capture_op["responses"]) == {"200", "201", "400", "401", "403", "404", "406", "409", "415", "422",
                                            "500", "503"}
    assert set(void_op["responses"]) == {"200", "201", "400", "401", "403", "404", "406", "409", "500", "503"}
    for operation in (hold_op, capture_op, void_op):
        assert operation["responses"]["200"]["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"]
    balance = document["components"]["schemas"]["Balance"]["properties"]
    assert {"account_id", "energy", "held"} <= set(balance)


# a real server

@pytest.mark.slow
def test_holds_through_a_real_server(accounts, tmp_path):
    from tests.http_server import Server

    token = add_client(name="shop", accounts=[1, 2]).token
    other = add_client(name="other", accounts=None).token
    server = Server(test_database_url(), tmp_path / "serve.log", workers=1)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        first = server.request("POST", HOLDS, {"account_id": 1, "amount": 40, "expires_in": 60},
                               {**auth, "Idempotency-Key": "cart-1"})
        retried = server.request("POST", HOLDS, {"account_id": 1, "amount": 40, "idempotency_key": "cart-1",
                                                 "expires_in": 60}, auth)
        second = server.request("POST", HOLDS, {"account_id": 1, "amount": 20, "idempotency_key": "cart-2"}, auth)
        short = server.request("POST", HOLDS, {"account_id": 1, "amount": 41, "idempotency_key": "cart-3"}, auth)
        shown = server.request("GET", "/api/energy/accounts/1/", None, auth)
        foreign = server.request("POST", capture_path("cart-1"), None, {"Authorization": f"Bearer {other}"})
        captured = server.request("POST", capture_path("cart-1"), {"amount": 15}, auth)
        replayed = server.request("POST", capture_path("cart-1"), {"amount": 15}, auth)
        voided = server.request("POST", void_path("cart-2"), None, auth)
        late = server.request("POST", void_path("cart-1"), None, auth)
        after = server.request("GET", "/api/energy/accounts/1/", None, auth)
    finally:
        server.close()

    assert (first[0], first[2]["held_after"]) == (201, 40), first
    assert (retried[0], retried[1]["Idempotent-Replayed"], retried[2]) == (200, "true", {**first[2],
                                                                                        "status": "replayed"})
    assert (second[0], short[0], short[2]["error"]) == (201, 409, "insufficient_energy"), (second, short)
    assert shown[2] == {"account_id": 1, "energy": 40, "held": 60}, shown
    assert (foreign[0], foreign[2]["error"]) == (404, "key_not_found"), foreign
    assert (captured[0], captured[2]["released"]) == (201, 25), captured
    assert (replayed[0], replayed[1]["Idempotent-Replayed"]) == (200, "true"), replayed
    assert voided[0] == 201, voided
    assert (late[0], late[2]["error"]) == (409, "invalid_state"), late
    assert after[2] == {"account_id": 1, "energy": 85, "held": 0}, after
