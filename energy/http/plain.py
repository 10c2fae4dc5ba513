"""``POST /api/energy/consume/``: the everyday request answered without DRF's request cycle.

Most consume requests are alike: JSON in, JSON accepted, a valid Bearer token, a valid body,
a client allowed to spend from the account. For exactly those, this view runs the same
pieces DRF would run — the API's authentication class, its parser, its permission classes,
the same request validation and use case, DRF's JSON renderer and the one outcome → status
map — in a plain Django view, and skips what DRF adds around them (its Request wrapper,
content negotiation, per-request instances of every class): a quarter of a consume's CPU in
the server (README, Performance).

Anything else — another method, content type, Accept header or query string, a missing or
refused token, a body that does not parse or validate, a refused permission — is handed to
``ConsumeView`` untouched, which answers it as before, in the contract's order (401, then
400, then 403). Nothing is decided here that ConsumeView would decide differently: the
tests send the same requests down both paths and compare status, headers and body.
"""

from __future__ import annotations

import functools
import io

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer

from energy.domain.exceptions import EnergyError, InvalidRequest
from energy.domain.requests import ConsumeRequest
from energy.http.auth import BearerTokenAuthentication
from energy.http.errors import energy_error
from energy.http.negotiation import JSON, accepts_json_by_default
from energy.http.parsers import BoundedJSONParser
from energy.views import ConsumeView, consume_answer

_full_view = ConsumeView.as_view()
# The classes and headers ConsumeView answers with, taken from it, not restated.
_view = ConsumeView()
_AUTHENTICATION = _view.get_authenticators()
_PERMISSIONS = _view.get_permissions()
_PARSERS = _view.get_parsers()
_RENDERERS = _view.get_renderers()
_HEADERS = _view.default_response_headers
# The plain path stands aside when the view is configured in a way it does not mirror.
_MIRRORED = ([type(a) for a in _AUTHENTICATION] == [BearerTokenAuthentication]
             and [type(r) for r in _RENDERERS] == [JSONRenderer]
             and [type(p) for p in _PARSERS] == [BoundedJSONParser]
             and not _view.get_throttles() and _view.versioning_class is None)


class _Caller:
    """What the permission classes read of a request: the authenticated grant."""

    __slots__ = ("auth",)

    def __init__(self, grant):
        self.auth = grant


# Wrapping ConsumeView's view function keeps what DRF attached to it (the view class the
# OpenAPI generator documents, csrf_exempt): to everything but a request, this is ConsumeView.
@functools.wraps(_full_view)
def consume_endpoint(request):
    try:
        answer = _plain(request) if _MIRRORED else None
    except EnergyError as exc:  # the use case's refusals, and an unreachable database
        return _json(*energy_error(exc))
    return answer if answer is not None else _full_view(request)


def _plain(request) -> HttpResponse | None:
    """The answer to an everyday consume request, or None to let ConsumeView answer."""
    meta = request.META
    if (request.method != "POST" or meta.get("CONTENT_TYPE") != JSON or meta.get("QUERY_STRING")
            or not accepts_json_by_default(meta)):
        return None
    grant = _authenticated(request)
    if grant is None:
        return None
    try:
        command = ConsumeRequest.from_json(_PARSERS[0].parse(io.BytesIO(request.body)),
                                           meta.get("HTTP_IDEMPOTENCY_KEY"))
    except (RequestDataTooBig, APIException, InvalidRequest):
        return None
    caller = _Caller(grant)
    for permission in _PERMISSIONS:
        if not (permission.has_permission(caller, _view) and permission.has_object_permission(caller, _view, command)):
            return None
    return _json(*consume_answer(command, grant.client_id))


def _authenticated(request):
    """The grant of a valid token, or None (ConsumeView then answers 401 itself)."""
    try:
        found = _AUTHENTICATION[0].authenticate(request)
    except APIException:
        return None
    return found[1] if found else None


def _json(status: int, document: dict, headers: dict[str, str]) -> HttpResponse:
    """The response ConsumeView would give: DRF's renderer, the view's default headers."""
    response = HttpResponse(_RENDERERS[0].render(document), content_type=JSON, status=status, headers=headers)
    for name, value in _HEADERS.items():
        response[name] = value
    return response
