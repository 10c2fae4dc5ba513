"""The one place where outcomes become HTTP statuses and error bodies.

Whatever the API refuses is answered with the contract's JSON error document: a view's
refusal (through DRF's exception handler below) and Django's own (an unknown path, a Host
that is not allowed, an unexpected failure: the ``handler*`` views that energy.urls names).
A public answer carries no infrastructure detail: ``unavailable`` and ``internal_error`` say
a fixed sentence and an error id, and the server logs the reason under that id.
"""

from __future__ import annotations

import logging
import secrets

from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from energy.domain.exceptions import EnergyError, Unavailable, describe, error_document
from energy.http import log_lines

HTTP_STATUS = {
    "applied": 201,
    "replayed": 200,
    "invalid_request": 400,
    "account_not_found": 404,
    "key_not_found": 404,
    "not_found": 404,
    "insufficient_energy": 409,
    "invalid_state": 409,
    "idempotency_key_mismatch": 422,
    "internal_error": 500,
    "unavailable": 503,
    "unauthenticated": 401,
    "forbidden": 403,
}
# Seconds a client should wait before retrying after `unavailable`.
RETRY_AFTER_SECONDS = 1
UNAVAILABLE = ("The service cannot answer right now; retry the same request, with the same idempotency key, "
               "after Retry-After seconds.")
INTERNAL_ERROR = "The server failed to answer this request."
NOT_FOUND = "No endpoint answers at this path."
BAD_HOST = "The Host header names a host this server does not answer to."
BAD_REQUEST = "The request is malformed."
# Where a refusal leaves its reason (or error id) in the WSGI environ for the access log line,
# and where an error id is kept for Django's record of the failure (ErrorIdFilter).
LOG_NOTE = "energy.log_note"
ERROR_ID = log_lines.ERROR_ID

log = logging.getLogger("energy.http")


def energy_error(exc: EnergyError, request=None) -> tuple[int, dict, dict[str, str]]:
    """A use case's refusal as HTTP: status, the contract's error body, extra headers."""
    if isinstance(exc, Unavailable):
        error_id = _logged("unavailable", exc.reason, request)
        document = error_document("unavailable", f"{UNAVAILABLE} Error id: {error_id}.")
        return HTTP_STATUS["unavailable"], document, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return HTTP_STATUS[exc.outcome], describe(exc), {}


def exception_handler(exc, context):
    if isinstance(exc, EnergyError):
        status, document, headers = energy_error(exc, context.get("request"))
        return Response(document, status=status, headers=headers)
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        response = Response(error_document("unauthenticated", _text(exc.detail)), status=401)
        # DRF sets auth_header from the authentication class: always "Bearer" here.
        response["WWW-Authenticate"] = getattr(exc, "auth_header", None) or "Bearer"
        return response
    if isinstance(exc, drf.PermissionDenied):
        return Response(error_document("forbidden", _text(exc.detail)), status=403)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_document("invalid_request", "Request body is too large."), status=413)
    if isinstance(exc, drf.APIException):
        # Malformed JSON (400), wrong method (405), unacceptable Accept (406), wrong content type (415).
        response = Response(error_document("invalid_request", _text(exc.detail)), status=exc.status_code)
        if isinstance(exc, drf.MethodNotAllowed):
            allowed = context["view"].allowed_methods if context.get("view") else []
            response["Allow"] = ", ".join(allowed)
        return response
    return None


# Django's error views (energy.urls names them): used for what never reaches a DRF view.

def not_found(request, exception=None):
    return _answer(error_document("not_found", NOT_FOUND), 404)


def bad_request(request, exception=None):
    if isinstance(exception, DisallowedHost):
        host = request.META.get("HTTP_HOST", request.META.get("SERVER_NAME"))
        _note(request, f"refused: Host {host!r} is not in ENERGYCTL_ALLOWED_HOSTS")
        return _answer(error_document("invalid_request", BAD_HOST), 400)
    _note(request, f"refused: {type(exception).__name__}: {exception}")
    return _answer(error_document("invalid_request", BAD_REQUEST), 400)


def permission_denied(request, exception=None):
    return _answer(error_document("forbidden", "This request is not allowed."), 403)


def server_error(request):
    """Django logs the traceback on ``django.request``; ``ErrorIdFilter`` adds this error id to it."""
    error_id = _new_error_id()
    _note(request, f"error id {error_id}", error_id)
    return _answer(error_document("internal_error", f"{INTERNAL_ERROR} Error id: {error_id}."), 500)


def _answer(document: dict, status: int) -> JsonResponse:
    response = JsonResponse(document, status=status)
    # Sent with its length, like every other answer: these bypass the middleware that adds it.
    response["Content-Length"] = str(len(response.content))
    return response


def _logged(outcome: str, reason: str, request) -> str:
    error_id = _new_error_id()
    where = f"{request.method} {request.path}" if request is not None else "-"
    log.warning("%s (error id %s) on %s: %s", outcome, error_id, where, reason)
    _note(request, f"error id {error_id}", error_id)
    return error_id


def _new_error_id() -> str:
    return secrets.token_hex(6)


def _note(request, text: str, error_id: str | None = None) -> None:
    # META is the WSGI environ itself, for a Django request and for DRF's wrapper of one.
    if request is not None:
        request.META[LOG_NOTE] = text
        if error_id:
            request.META[ERROR_ID] = error_id


def _text(detail) -> str:
    if isinstance(detail, (list, tuple)):
        return " ".join(_text(item) for item in detail)
    if isinstance(detail, dict):
        return " ".join(f"{key}: {_text(value)}" for key, value in detail.items())
    return str(detail)
