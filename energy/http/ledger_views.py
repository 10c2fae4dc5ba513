"""Thin HTTP adapter for reading the ledger: validate, call one use case, serialize, respond.

Both need scope ``read``. An account's consumptions are paged with a cursor, not an offset:
``before`` is the id of the last consumption of the previous page and the response's ``next``
is the link to the next page (null on the last). New consumptions arriving between two
requests then neither shift nor repeat entries, and a deep page costs an index seek, not a
scan of everything skipped.

A key is looked up in the calling client's own key space only, so another client's key is a
404 like a key nobody sent. The account the allow-list is checked on is the record's: it is
known only once the record is found, so a client's own missing key is a 404 before any 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from energy.application.ledger import DEFAULT_HISTORY_LIMIT, account_history, get_record
from energy.domain.clients import READ
from energy.domain.requests import check_page_limit, parse_account_id, parse_idempotency_key, parse_positive_int
from energy.http import openapi
from energy.http.auth import HasScope
from energy.http.views import ClientView


@dataclass(frozen=True)
class HistoryPage:
    """One page of an account's consumptions, as asked for."""

    account_id: int
    limit: int
    before: int | None


class AccountConsumptionsView(ClientView):
    required_scope = READ

    def validated(self, request, account_id: str):
        params = request.query_params
        limit = check_page_limit(parse_positive_int(params.get("limit", str(DEFAULT_HISTORY_LIMIT)), "limit"))
        before = params.get("before")
        return HistoryPage(parse_account_id(account_id), limit,
                           parse_positive_int(before, "before") if before is not None else None)

    @extend_schema(**openapi.ACCOUNT_CONSUMPTIONS)
    def get(self, request, account_id: str):
        page = self.subject
        history = account_history(account_id=page.account_id, limit=page.limit, before=page.before,
                                  client_id=request.auth.client_id)
        return Response({**history.to_dict(), "next": _next_link(request, history, page.limit)})


class ConsumptionView(ClientView):
    required_scope = READ

    def validated(self, request, key: str):
        checked = parse_idempotency_key(key)
        # The lookup below is a read: a client without the scope is refused before it, so
        # the answer never depends on what it holds.
        if not request.auth.may(self.required_scope):
            self.permission_denied(request, message=HasScope.message)
        # The subject is the record itself, found in the caller's key space (404 if absent);
        # its account_id is what the allow-list is checked on.
        return get_record(client_id=request.auth.client_id, idempotency_key=checked)

    @extend_schema(**openapi.CONSUMPTION)
    def get(self, request, key: str):
        return Response(self.subject.to_dict())


def _next_link(request, history, limit: int) -> str | None:
    if not history.more:
        return None
    last = history.entries[-1].result.entry_id
    return request.build_absolute_uri(f"{request.path}?{urlencode({'limit': limit, 'before': last})}")
