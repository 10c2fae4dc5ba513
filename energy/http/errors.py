"""The one place where outcomes become HTTP statuses and error bodies."""

from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions as drf
from rest_framework.response import Response

from energy.domain.exceptions import EnergyError, Unavailable, describe, error_document

HTTP_STATUS = {
    "applied": 201,
    "replayed": 200,
    "invalid_request": 400,
    "account_not_found": 404,
    "key_not_found": 404,
    "insufficient_energy": 409,
    "idempotency_key_mismatch": 422,
    "unavailable": 503,
    "unauthenticated": 401,
    "forbidden": 403,
}
# Seconds a client should wait before retrying after `unavailable`.
RETRY_AFTER_SECONDS = 1


def energy_error(exc: EnergyError) -> tuple[int, dict, dict[str, str]]:
    """A use case's refusal as HTTP: status, the contract's error body, extra headers."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(exc, Unavailable) else {}
    return HTTP_STATUS[exc.outcome], describe(exc), headers


def exception_handler(exc, context):
    if isinstance(exc, EnergyError):
        status, document, headers = energy_error(exc)
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
        # Malformed JSON (400), too large (413), wrong method (405), wrong content type (415).
        response = Response(error_document("invalid_request", _text(exc.detail)), status=exc.status_code)
        if isinstance(exc, drf.MethodNotAllowed):
            allowed = context["view"].allowed_methods if context.get("view") else []
            response["Allow"] = ", ".join(allowed)
        return response
    return None


def _text(detail) -> str:
    if isinstance(detail, (list, tuple)):
        return " ".join(_text(item) for item in detail)
    if isinstance(detail, dict):
        return " ".join(f"{key}: {_text(value)}" for key, value in detail.items())
    return str(detail)
