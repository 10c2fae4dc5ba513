"""The HTTP API: every outcome and status of the contract, and bad input changing nothing."""

import json

import pytest
from rest_framework.test import APIClient

from energy.models import Account, Entry

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/energy/consume/"


@pytest.fixture
def client():
    """A client of the API allowed every account, with its token on every request."""
    from energy.application.clients import add_client

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {add_client(name='shop', accounts=None).token}")
    return api


def post(client, body, **headers):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.generic("POST", URL, raw, content_type="application/json", headers=headers)


def assert_unchanged():
    assert Account.objects.get(pk=1).energy == 100
    assert not Entry.objects.exists()


def test_applied_is_201_with_result_body(client, account):
    response = post(client, {"account_id": 1, "amount": 30, "idempotency_key": "abc-123"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "applied"
    assert {k: body[k] for k in ("account_id", "amount", "idempotency_key", "balance_after")} == {
        "account_id": 1, "amount": 30, "idempotency_key": "abc-123", "balance_after": 70}
    assert isinstance(body["consumption_id"], int) and body["created_at"].endswith("+00:00")
    assert "Idempotent-Replayed" not in response.headers


def test_replay_is_200_with_identical_body_and_header(client, account):
    first = post(client, {"account_id": 1, "amount": 30, "idempotency_key": "abc"}).json()
    post(client, {"account_id": 1, "amount": 5, "idempotency_key": "other"})
    response = post(client, {"account_id": 1, "amount": 30, "idempotency_key": "abc"})
    assert response.status_code == 200
    assert response.headers["Idempotent-Replayed"] == "true"
    assert response.json() == {**first, "status": "replayed"}
    assert Account.objects.get(pk=1).energy == 65


def test_key_from_header(client, account):
    response = post(client, {"account_id": 1, "amount": 30}, **{"Idempotency-Key": "hdr-1"})
    assert response.status_code == 201
    assert response.json()["idempotency_key"] == "hdr-1"


def test_header_and_body_key_disagreeing_is_400(client, account):
    response = post(client, {"account_id": 1, "amount": 30, "idempotency_key": "a"}, **{"Idempotency-Key": "b"})
    assert response.status_code == 400
    assert response.json()["fields"]["idempotency_key"]
    assert_unchanged()


def test_mismatch_is_422(client, account):
    post(client, {"account_id": 1, "amount": 30, "idempotency_key": "abc"})
    response = post(client, {"account_id": 1, "amount": 40, "idempotency_key": "abc"})
    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_mismatch"
    assert Account.objects.get(pk=1).energy == 70


def test_insufficient_energy_is_409_and_records_nothing(client, account):
    response = post(client, {"account_id": 1, "amount": 101, "idempotency_key": "big"})
    assert response.status_code == 409
    assert response.json() == {"status": "error", "error": "insufficient_energy",
                               "detail": "Account 1 has 100 energy; 101 was requested."}
    assert_unchanged()


def test_missing_account_is_404(client, account):
    response = post(client, {"account_id": 7, "amount": 1, "idempotency_key": "k"})
    assert response.status_code == 404
    assert response.json()["error"] == "account_not_found"
    assert_unchanged()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"amount": 30, "idempotency_key": "k"}, "account_id"),
        ({"account_id": 1, "idempotency_key": "k"}, "amount"),
        ({"account_id": 1, "amount": 30}, "idempotency_key"),
        ({"account_id": 1, "amount": 0, "idempotency_key": "k"}, "amount"),
        ({"account_id": 1, "amount": -3, "idempotency_key": "k"}, "amount"),
        ({"account_id": 1, "amount": 2.5, "idempotency_key": "k"}, "amount"),
        ({"account_id": 1, "amount": True, "idempotency_key": "k"}, "amount"),
        ({"account_id": 1, "amount": 2**63, "idempotency_key": "k"}, "amount"),
        ({"account_id": "1", "amount": 30, "idempotency_key": "k"}, "account_id"),
        ({"account_id": 1, "amount": 30, "idempotency_key": "a\u0000b"}, "idempotency_key"),
        ({"account_id": 1, "amount": 30, "idempotency_key": "k" * 256}, "idempotency_key"),
        ({"account_id": 1, "amount": 30, "idempotency_key": "\ud800"}, "idempotency_key"),
        ([1, 30, "k"], "body"),
    ],
)
def test_invalid_input_is_400_naming_the_field(client, account, body, field):
    response = post(client, body)
    assert response.status_code == 400, response.content
    payload = response.json()
    assert payload["status"] == "error" and payload["error"] == "invalid_request"
    assert field in payload["fields"]
    assert_unchanged()


@pytest.mark.parametrize(
    "raw",
    ["{", "", "nul\x00", '{"amount": NaN}', '{"account_id": Infinity}', "[" * 60_000, "[" * 100_000, b"\xff\xfe{}"],
)
def test_malformed_json_is_400(client, account, raw):
    response = post(client, raw)
    assert response.status_code in (400, 413), response.content
    assert response.json()["error"] == "invalid_request"
    assert_unchanged()


def test_huge_body_is_refused(client, account):
    body = json.dumps({"account_id": 1, "amount": 1, "idempotency_key": "k", "pad": "x" * 200_000})
    response = post(client, body)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"
    assert_unchanged()


def test_wrong_content_type_is_415(client, account):
    response = client.post(URL, "account_id=1&amount=3&idempotency_key=k",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"] == "invalid_request"
    assert_unchanged()


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/*",
                                    "text/html;q=0.1, application/json", "application/json; charset=utf-8"])
def test_every_accept_that_takes_json_gets_the_json_answer(client, account, accept):
    headers = {} if accept is None else {"Accept": accept}
    response = post(client, {"account_id": 1, "amount": 1, "idempotency_key": f"accept {accept}"}, **headers)
    assert response.status_code == 201, response.content
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["status"] == "applied"


def test_json_parameters_in_accept_shape_the_answer(client, account):
    response = post(client, {"account_id": 1, "amount": 1, "idempotency_key": "indented"},
                    Accept="application/json; indent=4")
    assert response.status_code == 201
    assert response.content.startswith(b'{\n    "status": "applied"'), response.content


def test_accept_without_json_is_406_and_records_nothing(client, account):
    response = post(client, {"account_id": 1, "amount": 1, "idempotency_key": "html"}, Accept="text/html")
    assert response.status_code == 406
    assert response.json()["status"] == "error"
    assert_unchanged()


def test_format_json_in_the_query_string_is_the_json_answer(client, account):
    response = client.generic("POST", f"{URL}?format=json",
                              json.dumps({"account_id": 1, "amount": 1, "idempotency_key": "fmt"}),
                              content_type="application/json")
    assert response.status_code == 201
    assert response.json()["idempotency_key"] == "fmt"


def test_a_body_is_read_in_the_charset_its_content_type_names(client, account):
    raw = json.dumps({"account_id": 1, "amount": 1, "idempotency_key": "clé"}, ensure_ascii=False).encode("latin-1")
    response = client.generic("POST", URL, raw, content_type="application/json; charset=latin-1")
    assert response.status_code == 201, response.content
    assert response.json()["idempotency_key"] == "clé"


def test_a_body_in_another_charset_than_declared_is_400(client, account):
    raw = json.dumps({"account_id": 1, "amount": 1, "idempotency_key": "clé"}, ensure_ascii=False).encode("latin-1")
    response = client.generic("POST", URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert_unchanged()


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_wrong_method_is_405(client, account, method):
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_balance_endpoint(client, account):
    response = client.get("/api/energy/accounts/1/")
    assert response.status_code == 200
    assert response.json() == {"account_id": 1, "energy": 100, "held": 0}


def test_balance_of_missing_account_is_404(client, account):
    response = client.get("/api/energy/accounts/2/")
    assert response.status_code == 404
    assert response.json()["error"] == "account_not_found"


@pytest.mark.parametrize("bad", ["abc", "0", "-1", str(2**63), "1.5"])
def test_balance_with_bad_id_is_400(client, account, bad):
    response = client.get(f"/api/energy/accounts/{bad}/")
    assert response.status_code == 400
    assert response.json()["fields"]["account_id"]


@pytest.mark.slow
def test_unavailable_is_503_with_retry_after(client, account, settings):
    """A lock held past lock_timeout ends in 503 + Retry-After, and the retry applies once."""
    from tests.workers import row_lock_held

    body = {"account_id": 1, "amount": 10, "idempotency_key": "retry-me"}
    with row_lock_held(account_id=1):
        response = post(client, body)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "unavailable"
    assert post(client, body).status_code == 201
    assert post(client, body).status_code == 200
    assert Account.objects.get(pk=1).energy == 90
