"""Thin HTTP adapter for credit and reverse: validate, call one use case, serialize, respond.

Both need scope ``credit``. A credit is read like a consume (the key in the body or the
Idempotency-Key header) and its account is checked against the allow-list. A reverse names
its consumption by key, looked up in the calling client's own key space only, so another
client's key is a 404 like a key nobody sent; the allow-list is checked on the account of
the entry it names, known only once the entry is found (a client's own missing key is a 404
before any 403).
"""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from energy.application.consume import REPLAYED
from energy.application.entries import credit, reverse
from energy.application.ledger import get_record
from energy.domain.clients import CREDIT, HTTP
from energy.domain.requests import CreditRequest, ReverseRequest
from energy.http import openapi
from energy.http.auth import HasScope
from energy.http.errors import HTTP_STATUS
from energy.http.views import ClientView


@dataclass(frozen=True)
class Reversal:
    """A reverse as the allow-list sees it: the account of the entry recorded under the key."""

    account_id: int
    idempotency_key: str


class CreditView(ClientView):
    required_scope = CREDIT

    def validated(self, request, **kwargs):
        return CreditRequest.from_json(request.data, request.META.get("HTTP_IDEMPOTENCY_KEY"))

    @extend_schema(**openapi.CREDIT)
    def post(self, request):
        command = self.subject
        return _answer(credit(account_id=command.account_id, amount=command.amount,
                              idempotency_key=command.idempotency_key, client_id=request.auth.client_id,
                              channel=HTTP))


class ReverseView(ClientView):
    required_scope = CREDIT

    def validated(self, request, key: str):
        checked = ReverseRequest.from_text(key)
        # The lookup below reads the client's keys: one without the scope is refused before
        # it, so the answer never depends on what it holds.
        if not request.auth.may(self.required_scope):
            self.permission_denied(request, message=HasScope.message)
        target = get_record(client_id=request.auth.client_id, idempotency_key=checked.idempotency_key)
        return Reversal(target.account_id, checked.idempotency_key)

    @extend_schema(**openapi.REVERSE)
    def post(self, request, key: str):
        return _answer(reverse(idempotency_key=self.subject.idempotency_key, client_id=request.auth.client_id,
                               channel=HTTP))


def _answer(result) -> Response:
    headers = {"Idempotent-Replayed": "true"} if result.status == REPLAYED else None
    return Response(result.to_dict(), status=HTTP_STATUS[result.status], headers=headers)
