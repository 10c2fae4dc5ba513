"""The consume endpoint's plain path answers exactly as ConsumeView would, and hands it everything else.

Each request is built once and sent to both: ``consume_endpoint`` (what the URL serves) and
``ConsumeView`` alone (DRF's whole request cycle). Where the plain path serves a request the
answers must match in status, headers and body; where it must not serve one, ``_plain`` must
decline it, so ConsumeView answers it.
"""

import json

import pytest
from django.test import RequestFactory

from energy.application.clients import add_client
from energy.domain.exceptions import EnergyError
from energy.http import plain
from energy.models import Account, Consumption
from energy.views import ConsumeView

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/energy/consume/"
FULL_VIEW = ConsumeView.as_view()


@pytest.fixture
def token():
    Account.objects.create(id=1, energy=100, opening_energy=100)
    Account.objects.create(id=2, energy=100, opening_energy=100)
    return add_client(name="shop", accounts=None).token


def build(body, token=None, method="POST", content_type="application/json", path=URL, **meta):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    if token:
        meta["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return RequestFactory().generic(method, path, raw, content_type=content_type, HTTP_HOST="localhost", **meta)


def answer(view, request):
    response = view(request)
    if hasattr(response, "render"):
        response.render()
    return response.status_code, dict(response.headers), response.content


def both(body, **kwargs):
    """(plain endpoint's answer, ConsumeView's answer) to the same request, sent twice."""
    return answer(plain.consume_endpoint, build(body, **kwargs)), answer(FULL_VIEW, build(body, **kwargs))


def served_plainly(request) -> bool:
    """Whether the plain path answered ``request`` itself (with an answer or a use case's refusal)."""
    try:
        return plain._plain(request) is not None
    except EnergyError:
        return True


def test_the_plain_path_mirrors_this_configuration():
    assert plain._MIRRORED


@pytest.mark.parametrize("case", ["replayed", "insufficient_energy", "account_not_found", "key_mismatch"])
def test_answers_it_serves_equal_consume_views(token, case):
    answer(FULL_VIEW, build({"account_id": 1, "amount": 30, "idempotency_key": "seen"}, token))
    body = {
        "replayed": {"account_id": 1, "amount": 30, "idempotency_key": "seen"},
        "insufficient_energy": {"account_id": 1, "amount": 500, "idempotency_key": "big"},
        "account_not_found": {"account_id": 99, "amount": 1, "idempotency_key": "nobody"},
        "key_mismatch": {"account_id": 1, "amount": 31, "idempotency_key": "seen"},
    }[case]

    assert served_plainly(build(body, token))
    ours, theirs = both(body, token=token)

    assert ours == theirs
    assert Account.objects.get(pk=1).energy == 70


def test_an_applied_answer_matches_consume_views_but_for_the_new_records_own_fields(token):
    ours = answer(plain.consume_endpoint, build({"account_id": 1, "amount": 5, "idempotency_key": "a"}, token))
    theirs = answer(FULL_VIEW, build({"account_id": 2, "amount": 5, "idempotency_key": "b"}, token))

    (status, headers, content), (status2, headers2, content2) = ours, theirs
    mine, other = json.loads(content), json.loads(content2)
    own = {"consumption_id", "account_id", "idempotency_key", "created_at"}
    assert (status, headers.keys() - {"Content-Length"}) == (status2, headers2.keys() - {"Content-Length"}) == (
        201, {"Content-Type", "Allow"})
    assert headers["Content-Type"] == headers2["Content-Type"] and headers["Allow"] == headers2["Allow"]
    assert list(mine) == list(other)  # the same fields in the same order
    assert {k: v for k, v in mine.items() if k not in own} == {k: v for k, v in other.items() if k not in own}
    assert (mine["account_id"], mine["idempotency_key"], mine["balance_after"]) == (1, "a", 95)
    assert Consumption.objects.count() == 2


RAW = '{"account_id": 1, "amount": 1, "idempotency_key": "k"}'
DECLINED = {
    "no token": lambda t: build({"account_id": 1, "amount": 1, "idempotency_key": "k"}),
    "unknown token": lambda t: build({"account_id": 1, "amount": 1, "idempotency_key": "k"}, "ect_" + "A" * 43),
    "another scheme": lambda t: build({"account_id": 1, "amount": 1, "idempotency_key": "k"},
                                      HTTP_AUTHORIZATION=f"Basic {t['shop']}"),
    "invalid body": lambda t: build({"account_id": 1, "amount": 0, "idempotency_key": "k"}, t["shop"]),
    "not JSON": lambda t: build("{nope", t["shop"]),
    "NaN in an extra field": lambda t: build(RAW.replace("}", ', "x": NaN}'), t["shop"]),
    "not UTF-8": lambda t: build(RAW.encode("utf-16"), t["shop"]),
    "too large": lambda t: build({"account_id": 1, "amount": 1, "idempotency_key": "k" * 70_000}, t["shop"]),
    "form content": lambda t: build("account_id=1&amount=1&idempotency_key=k", t["shop"],
                                    content_type="application/x-www-form-urlencoded"),
    "Accept: text/html": lambda t: build({"account_id": 1, "amount": 1, "idempotency_key": "k"}, t["shop"],
                                         HTTP_ACCEPT="text/html"),
    "PUT": lambda t: build({"account_id": 1, "amount": 1, "idempotency_key": "k"}, t["shop"], method="PUT"),
    "OPTIONS": lambda t: build("", t["shop"], method="OPTIONS"),
    "read scope only": lambda t: build({"account_id": 1, "amount": 1, "idempotency_key": "k"},
                                       t["reader"]),
    "another client's account": lambda t: build({"account_id": 1, "amount": 1, "idempotency_key": "k"},
                                                t["other"]),
}


@pytest.mark.parametrize("case", list(DECLINED))
def test_everything_else_is_left_to_consume_view_and_changes_nothing(token, case):
    tokens = {"shop": token, "reader": add_client(name="reader", accounts=None, read_only=True).token,
              "other": add_client(name="other", accounts=[2]).token}

    assert not served_plainly(DECLINED[case](tokens))
    status, _, content = answer(plain.consume_endpoint, DECLINED[case](tokens))

    assert status in {400, 401, 403, 405, 406, 413, 415} or (case == "OPTIONS" and status == 200), (status, content)
    assert Account.objects.get(pk=1).energy == 100 and not Consumption.objects.exists()


@pytest.mark.parametrize("variant", [{"content_type": "application/json; charset=utf-8"},
                                     {"path": URL + "?format=json"}, {"HTTP_ACCEPT": "application/*"}])
def test_a_valid_request_it_does_not_mirror_is_applied_by_consume_view(token, variant):
    body = {"account_id": 1, "amount": 1, "idempotency_key": "k"}

    assert not served_plainly(build(body, token, **variant))
    status, _, _ = answer(plain.consume_endpoint, build(body, token, **variant))

    assert status == 201 and Account.objects.get(pk=1).energy == 99


def test_a_revoked_token_is_left_to_consume_view(token):
    from energy.application.clients import revoke_client

    revoke_client(name="shop")
    request = build({"account_id": 1, "amount": 1, "idempotency_key": "k"}, token)

    assert not served_plainly(request)
    assert answer(plain.consume_endpoint, build(RAW, token))[0] == 401


def test_the_schema_still_documents_the_consume_endpoint(db):
    from drf_spectacular.validation import validate_schema
    from rest_framework.test import APIClient

    document = json.loads(APIClient().get("/api/schema/").content)
    validate_schema(document)
    consume = document["paths"][URL]["post"]

    assert set(consume["responses"]) == {"200", "201", "400", "401", "403", "404", "409", "415", "422", "503"}
    assert consume["security"] == [{"bearerAuth": []}]
