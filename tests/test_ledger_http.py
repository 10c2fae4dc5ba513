"""Reading the ledger over HTTP: an account's consumptions, paged newest first, and one's own key.

Every request carries a client's token; 401 and 403 are checked to come as for every endpoint.
"""

import json

import pytest
from rest_framework.test import APIClient

from energy.application.clients import add_client
from energy.application.consume import consume

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop():
    """A client allowed accounts 1 and 2, both scopes."""
    return add_client(name="shop", accounts=[1, 2])


@pytest.fixture
def client(shop):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {shop.token}")
    return api


@pytest.fixture
def spent(shop):
    """Account 1 (100 energy) spent seven times, 1..7, by the shop; accounts 2 and 3 untouched."""
    from energy.application.accounts import seed_accounts
    from energy.models import Client

    seed_accounts(count=3, energy=100)
    shop_id = Client.objects.get(name="shop").id
    return [consume(account_id=1, amount=n, idempotency_key=f"k{n}", client_id=shop_id) for n in range(1, 8)]


def consumptions(client, account="1", **params):
    return client.get(f"/api/energy/accounts/{account}/consumptions/", params)


def test_an_accounts_consumptions_newest_first_and_only_the_callers_own(client, spent):
    consume(account_id=1, amount=2, idempotency_key="by-the-operator")
    other = add_client(name="meter", accounts=[1])
    from energy.models import Client

    consume(account_id=1, amount=3, idempotency_key="by-the-meter", client_id=Client.objects.get(name="meter").id)

    response = consumptions(client)

    assert response.status_code == 200, response.content
    body = response.json()
    # The balance is the account's; the records are the shop's alone: no other client's keys.
    assert (body["account_id"], body["energy"], body["next"]) == (1, 67, None)
    assert body["consumptions"] == [{**result.to_dict(), "kind": "consume", "client": "shop"}
                                    for result in reversed(spent)]
    assert body["entries"] == body["consumptions"]
    meter = APIClient()
    meter.credentials(HTTP_AUTHORIZATION=f"Bearer {other.token}")
    assert [c["idempotency_key"] for c in consumptions(meter).json()["consumptions"]] == ["by-the-meter"]


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
    ("2", {"before": "1"}, 400, "invalid_request"),  # consumption 1 is account 1's
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


def test_a_missing_account_on_the_allow_list_is_404(spent):
    everything = APIClient()
    everything.credentials(HTTP_AUTHORIZATION=f"Bearer {add_client(name='all', accounts=None).token}")

    response = consumptions(everything, "9")

    assert response.status_code == 404 and response.json()["error"] == "account_not_found"


def test_a_key_shows_its_original_result_as_applied(client, spent):
    response = client.get("/api/energy/consumptions/k3/")

    assert response.status_code == 200, response.content
    assert response.json() == spent[2].to_dict()


def test_a_key_with_a_slash_and_unicode_is_found(client, spent):
    from energy.models import Client

    applied = consume(account_id=2, amount=4, idempotency_key="shop/ördér 17",
                      client_id=Client.objects.get(name="shop").id)

    response = client.get("/api/energy/consumptions/shop%2F%C3%B6rd%C3%A9r%2017/")

    assert response.status_code == 200, response.content
    assert response.json()["consumption_id"] == applied.consumption_id


@pytest.mark.parametrize("key, status, error", [
    ("nope", 404, "key_not_found"),
    ("nul%00", 400, "invalid_request"),
    ("line%0Abreak", 400, "invalid_request"),
    ("k" * 256, 400, "invalid_request"),
])
def test_an_unknown_or_invalid_key_is_the_contract_error(client, spent, key, status, error):
    response = client.get(f"/api/energy/consumptions/{key}/")

    assert response.status_code == status, response.content
    assert response.json()["error"] == error


def test_another_clients_key_is_404_and_never_its_data(client, spent):
    consume(account_id=2, amount=9, idempotency_key="operator-only")

    response = client.get("/api/energy/consumptions/operator-only/")

    assert response.status_code == 404, response.content
    assert response.json()["error"] == "key_not_found" and "9" not in response.content.decode()


def test_reads_change_nothing_and_refuse_writes(client, spent):
    from tests.support import table_rows as snapshot

    def ledger():  # authentication itself notes the client's last_used_at; the ledger stays as it was
        return {table: rows for table, rows in snapshot().items() if table != "energy_client"}

    before = ledger()
    consumptions(client)
    client.get("/api/energy/consumptions/k1/")
    posted = client.post("/api/energy/consumptions/k1/", {}, format="json")

    assert posted.status_code == 405
    assert ledger() == before


# --- Who may read: 401, then 400, then 403 ---------------------------------------------------------

PATHS = ["/api/energy/accounts/1/consumptions/", "/api/energy/consumptions/k1/"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("header", [None, "Bearer ect_" + "A" * 43, "Basic dXNlcjpwYXNz"], ids=["none", "unknown",
                                                                                               "basic"])
def test_without_a_valid_token_reads_are_401(spent, path, header):
    headers = {"Authorization": header} if header else {}

    response = APIClient().get(path, headers=headers)

    assert response.status_code == 401, response.content
    assert response.json()["error"] == "unauthenticated" and response.headers["WWW-Authenticate"] == "Bearer"
    assert "k1" not in response.content.decode()


def test_a_revoked_token_reads_nothing(client, spent):
    from energy.application.clients import revoke_client

    revoke_client(name="shop")

    assert [client.get(path).status_code for path in PATHS] == [401, 401]


def test_a_client_without_scope_read_is_403_even_for_its_own_keys(client, spent):
    from energy.models import Client

    Client.objects.filter(name="shop").update(scopes=["consume"])

    for path in [*PATHS, "/api/energy/consumptions/never-sent/"]:
        response = client.get(path)
        assert response.status_code == 403, (path, response.content)
        assert response.json()["error"] == "forbidden" and "balance_after" not in response.json()


def test_a_read_only_client_reads(spent):
    token = add_client(name="meter", accounts=None, read_only=True).token
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert api.get(PATHS[0]).status_code == 200


@pytest.mark.parametrize("account", ["3", "9"], ids=["exists", "missing"])
def test_an_account_outside_the_allow_list_is_403_whether_or_not_it_exists(client, spent, account):
    response = consumptions(client, account)

    assert response.status_code == 403, response.content
    assert response.json()["error"] == "forbidden" and "energy" not in response.json()


def test_400_comes_before_403(client, spent):
    response = consumptions(client, "3", limit="0")

    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_an_own_key_on_an_account_no_longer_allowed_is_403(client, spent):
    from energy.models import Client

    Client.objects.filter(name="shop").update(accounts=[2])

    response = client.get("/api/energy/consumptions/k1/")

    assert response.status_code == 403, response.content
    assert response.json()["error"] == "forbidden" and "balance_after" not in response.json()


def test_the_schema_documents_both_reads_with_their_errors(db):
    from drf_spectacular.validation import validate_schema

    document = json.loads(APIClient().get("/api/schema/").content)
    validate_schema(document)
    history = document["paths"]["/api/energy/accounts/{account_id}/consumptions/"]["get"]
    record = document["paths"]["/api/energy/consumptions/{key}/"]["get"]

    assert set(history["responses"]) == {"200", "400", "401", "403", "404", "406", "500", "503"}
    assert set(record["responses"]) == {"200", "400", "401", "403", "404", "406", "500", "503"}
    assert history["security"] == record["security"] == [{"bearerAuth": []}]
    assert {p["name"] for p in history["parameters"]} == {"account_id", "limit", "before"}
    assert "key_not_found" in json.dumps(document["components"]["schemas"])


def test_the_next_link_keeps_the_scheme_the_request_came_in_with(client, spent):
    """Behind a TLS proxy waitress sets the scheme (ENERGYCTL_TRUSTED_PROXY); a client's own header changes nothing."""
    secure = client.get("/api/energy/accounts/1/consumptions/", {"limit": 2}, secure=True)
    claimed = client.get("/api/energy/accounts/1/consumptions/", {"limit": 2}, HTTP_X_FORWARDED_PROTO="https")

    assert secure.json()["next"].startswith("https://testserver/api/energy/accounts/1/consumptions/?")
    assert claimed.json()["next"].startswith("http://testserver/")
