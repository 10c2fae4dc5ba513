"""Thin HTTP adapter for reading the ledger: validate, call one use case, serialize, respond.

An account's consumptions are paged with a cursor, not an offset: ``before`` is the id of the
last consumption of the previous page and the response's ``next`` is the link to the next
page (null on the last). New consumptions arriving between two requests then neither shift
nor repeat entries, and a deep page costs an index seek, not a scan of everything skipped.
"""

from __future__ import annotations

from urllib.parse import urlencode

from rest_framework.response import Response
from rest_framework.views import APIView

from energy.application.ledger import DEFAULT_HISTORY_LIMIT, account_history, get_record
from energy.domain.requests import check_page_limit, parse_account_id, parse_idempotency_key, parse_positive_int
from energy.models import OPERATOR_CLIENT_ID, Client


class AccountConsumptionsView(APIView):
    def get(self, request, account_id: str):
        account = parse_account_id(account_id)
        limit, before = _page(request.query_params)
        history = account_history(account_id=account, limit=limit, before=before)
        body = {**history.to_dict(), "next": _next_link(request, history, limit)}
        return Response(body)


class ConsumptionView(APIView):
    def get(self, request, key: str):
        checked = parse_idempotency_key(key)
        record = get_record(client_id=calling_client_id(request), idempotency_key=checked)
        return Response(record.to_dict())


def calling_client_id(request) -> int:
    """The client whose key space a request reads: the authenticated one."""
    for candidate in (request.auth, request.user):
        if isinstance(candidate, Client):
            return candidate.id
    return OPERATOR_CLIENT_ID


def _page(params) -> tuple[int, int | None]:
    limit = check_page_limit(parse_positive_int(params.get("limit", str(DEFAULT_HISTORY_LIMIT)), "limit"))
    before = params.get("before")
    return limit, (parse_positive_int(before, "before") if before is not None else None)


def _next_link(request, history, limit: int) -> str | None:
    if not history.more:
        return None
    last = history.entries[-1].result.consumption_id
    return request.build_absolute_uri(f"{request.path}?{urlencode({'limit': limit, 'before': last})}")
