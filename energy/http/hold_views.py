"""Thin HTTP adapter for holds: validate, call one use case, serialize, respond.

All three need scope ``consume``. A hold is read like a consume (the key in the body or the
Idempotency-Key header), plus its optional ``expires_in``, and its account is checked against
the allow-list. A capture or a void names its hold by key, looked up in the calling client's
own key space only, so another client's key is a 404 like a key nobody sent; the allow-list
is checked on the account of the entry the key names, known only once it is found (a
client's own missing key is a 404 before any 403).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from energy.application.consume import REPLAYED
from energy.application.holds import capture, hold, void
from energy.application.ledger import get_record
from energy.domain.clients import CONSUME, HTTP
from energy.domain.exceptions import InvalidRequest
from energy.domain.requests import CaptureRequest, HoldRequest, VoidRequest
from energy.http import openapi
from energy.http.auth import HasScope
from energy.http.errors import HTTP_STATUS
from energy.http.views import ClientView


@dataclass(frozen=True)
class Resolution:
    """A capture or a void as the allow-list sees it: the account of the entry recorded under the key."""

    account_id: int
    idempotency_key: str
    amount: int | None = None


class HoldView(ClientView):
    required_scope = CONSUME

    def validated(self, request, **kwargs):
        return HoldRequest.from_json(request.data, request.META.get("HTTP_IDEMPOTENCY_KEY"))

    @extend_schema(**openapi.HOLD)
    def post(self, request):
        command = self.subject
        return _answer(hold(account_id=command.account_id, amount=command.amount,
                            idempotency_key=command.idempotency_key, expires_in=command.expires_in,
                            client_id=request.auth.client_id, channel=HTTP))


class _ResolutionView(ClientView):
    """A request that names a hold by key: key and body checked (400), the scope (403), then the key looked up."""

    required_scope = CONSUME

    def validated(self, request, key: str):
        checked = self.resolution(request, key)
        # The lookup below reads the client's keys: one without the scope is refused before
        # it, so the answer never depends on what it holds.
        if not request.auth.may(self.required_scope):
            self.permission_denied(request, message=HasScope.message)
        target = get_record(client_id=request.auth.client_id, idempotency_key=checked.idempotency_key)
        return Resolution(target.account_id, checked.idempotency_key, getattr(checked, "amount", None))

    def resolution(self, request, key: str):
        raise NotImplementedError


class CaptureView(_ResolutionView):
    def resolution(self, request, key: str) -> CaptureRequest:
        """The key, and the body's optional ``amount`` (absent or null: the whole hold); no body at all is {}."""
        data = request.data
        if not isinstance(data, Mapping):
            raise InvalidRequest({"body": "must be a JSON object"})
        amount = data.get("amount")
        # JSON has integers of its own: "5" is text, not an amount (the command line's text is parsed).
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
            CaptureRequest.from_text(key)  # a bad key is named too
            raise InvalidRequest({"amount": "must be an integer"})
        return CaptureRequest.from_text(key, amount)

    @extend_schema(**openapi.CAPTURE)
    def post(self, request, key: str):
        return _answer(capture(idempotency_key=self.subject.idempotency_key, amount=self.subject.amount,
                               client_id=request.auth.client_id, channel=HTTP))


class VoidView(_ResolutionView):
    def resolution(self, request, key: str) -> VoidRequest:
        # No body is read: a void asks for nothing but its key.
        return VoidRequest.from_text(key)

    @extend_schema(**openapi.VOID)
    def post(self, request, key: str):
        return _answer(void(idempotency_key=self.subject.idempotency_key, client_id=request.auth.client_id,
                            channel=HTTP))


def _answer(result) -> Response:
    headers = {"Idempotent-Replayed": "true"} if result.status == REPLAYED else None
    return Response(result.to_dict(), status=HTTP_STATUS[result.status], headers=headers)
