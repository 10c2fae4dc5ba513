"""The API's content negotiation answers its everyday cases without parsing, exactly as DRF would."""

import json

import pytest
from django.test import RequestFactory
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIClient

from energy.http.negotiation import JSONFirstNegotiation
from energy.models import Account, Consumption

ACCEPTS = [None, "*/*", "application/json", "application/json; indent=4", "application/*", "text/html",
           "text/html, */*;q=0.1", "application/xml", "", "*/*, application/json", "APPLICATION/JSON"]
QUERIES = ["", "format=json", "format=api", "limit=5"]


def outcome(negotiation, accept, query, renderers, suffix=None):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(RequestFactory().get(f"/api/energy/accounts/1/?{query}", **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except Exception as exc:  # noqa: BLE001 - the refusal itself is what is compared
        return type(exc).__name__
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", [[JSONRenderer()], [BrowsableAPIRenderer(), JSONRenderer()]],
                         ids=["json-only", "html-first"])
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_shortcut_picks_what_drf_picks(accept, query, renderers):
    assert outcome(JSONFirstNegotiation(), accept, query, renderers) == outcome(
        DefaultContentNegotiation(), accept, query, renderers)


@pytest.mark.parametrize("suffix", ["json", "api"])
def test_a_format_suffix_goes_through_drf(suffix):
    renderers = [JSONRenderer()]
    assert outcome(JSONFirstNegotiation(), None, "", renderers, suffix) == outcome(
        DefaultContentNegotiation(), None, "", renderers, suffix)


@pytest.mark.django_db(transaction=True)
def test_a_client_that_refuses_json_gets_406_and_nothing_is_recorded():
    from energy.application.clients import add_client

    Account.objects.create(id=1, energy=100, opening_energy=100)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {add_client(name='shop', accounts=None).token}")
    body = json.dumps({"account_id": 1, "amount": 30, "idempotency_key": "k"})
    refused = api.generic("POST", "/api/energy/consume/", body, content_type="application/json",
                          headers={"Accept": "text/html"})
    assert refused.status_code == 406 and refused.json()["error"] == "invalid_request", refused.content
    assert not Consumption.objects.exists()
    applied = api.generic("POST", "/api/energy/consume/", body, content_type="application/json",
                          headers={"Accept": "*/*"})
    assert applied.status_code == 201 and applied["Content-Type"] == "application/json"
