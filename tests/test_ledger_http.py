"""Reading the ledger over HTTP: an account's consumptions, paged newest first, and one's own key."""

import pytest
from rest_framework.test import APIClient

from energy.application.consume import consume

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def spent():
    """Account 1 (100 energy) spent seven times, 1..7; account 2 untouched."""
    from energy.application.accounts import seed_accounts

    seed_accounts(count=2, energy=100)
    return [consume(account_id=1, amount=n, idempotency_key=f"k{n}") for n in range(1, 8)]


def consumptions(client, account="1", **params):
    return client.get(f"/api/energy/accounts/{account}/consumptions/", params)


def test_an_accounts_consumptions_newest_first_with_the_client_of_each(client, spent):
    response = consumptions(client)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["account_id"], body["energy"], body["next"]) == (1, 72, None)
    assert body["consumptions"] == [{**result.to_dict(), "client": "operator"} for result in reversed(spent)]


def test_pages_follow_the_next_link_without_gaps_or_repeats(client, spent):
    seen, url, pages = [], "/api/energy/accounts/1/consumptions/?limit=3", 0
    while url:
        body = client.get(url).json()
        seen += [c["idempotency_key"] for c in body["consumptions"]]
        url, pages = body["next"], pages + 1
        if pages == 2:  # a new consumption between two pages shifts nothing
            consume(account_id=1, amount=1, idempotency_key="late")

    assert pages == 3
    assert seen == ["k7", "k6", "k5", "k4", "k3", "k2", "k1"]


@pytest.mark.parametrize("account, params, status, error", [
    ("9", {}, 404, "account_not_found"),
    ("0", {}, 400, "invalid_request"),
    ("abc", {}, 400, "invalid_request"),
    ("1", {"limit": "0"}, 400, "invalid_request"),
    ("1", {"limit": "1001"}, 400, "invalid_request"),
    ("1", {"limit": "x"}, 400, "invalid_request"),
    ("1", {"before": "-3"}, 400, "invalid_request"),
    ("1", {"before": "999999"}, 400, "invalid_request"),
])
def test_bad_account_or_page_is_the_contract_error(client, spent, account, params, status, error):
    response = consumptions(client, account, **params)

    assert response.status_code == status, response.content
    assert response.json()["error"] == error


def test_a_cursor_from_another_account_is_refused(client, spent):
    consume(account_id=2, amount=1, idempotency_key="other")
    other = consume(account_id=2, amount=1, idempotency_key="other-2")

    response = consumptions(client, "1", before=str(other.consumption_id))

    assert response.status_code == 400 and "before" in response.json()["fields"]


def test_a_key_shows_its_original_result_as_applied(client, spent):
    response = client.get("/api/energy/consumptions/k3/")

    assert response.status_code == 200, response.content
    assert response.json() == spent[2].to_dict()


def test_a_key_with_a_slash_and_unicode_is_found(client, spent):
    applied = consume(account_id=2, amount=4, idempotency_key="shop/ördér 17")

    response = client.get("/api/energy/consumptions/shop%2F%C3%B6rd%C3%A9r%2017/")

    assert response.status_code == 200, response.content
    assert response.json()["consumption_id"] == applied.consumption_id


def test_an_unknown_key_is_404_key_not_found(client, spent):
    response = client.get("/api/energy/consumptions/nope/")

    assert response.status_code == 404
    assert response.json()["error"] == "key_not_found"


def test_another_clients_key_is_404_and_never_its_data(client, spent):
    from energy.models import Client

    shop = Client.objects.create(name="shop", scopes=["consume", "read"], accounts=None)
    consume(account_id=2, amount=9, idempotency_key="shop-only", client_id=shop.id)

    response = client.get("/api/energy/consumptions/shop-only/")

    assert response.status_code == 404, response.content
    assert response.json()["error"] == "key_not_found" and "9" not in response.content.decode()


def test_reads_change_nothing_and_refuse_writes(client, spent):
    from tests.test_ledger_cli import snapshot

    before = snapshot()
    consumptions(client)
    client.get("/api/energy/consumptions/k1/")
    posted = client.post("/api/energy/consumptions/k1/", {}, format="json")

    assert posted.status_code == 405
    assert snapshot() == before
