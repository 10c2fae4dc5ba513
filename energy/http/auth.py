"""Who is calling, and may they: the DRF authentication and permission classes of the API.

Registered as REST_FRAMEWORK defaults in settings, so every API view is covered unless it
opts out explicitly (/healthz, /api/schema/). The order of answers is 401 (no or bad
token), then 400 (invalid input), then 403 (missing scope, account outside the allow-list):
authentication and ``IsClient`` run in DRF's ``initial()``, the other two are object
permissions checked on the validated request (see ``energy.http.views.ClientView``).
"""

from __future__ import annotations

import re

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from energy.application.clients import authenticate

SCHEME = "Bearer"
# Exactly "Bearer <token>": one scheme, one space, one token of the URL-safe base64 alphabet.
# Anything else (another scheme, extra spaces or parts, non-ASCII) is refused before the
# database is asked. The length cap keeps a huge header from costing a regex run.
_HEADER = re.compile(r"Bearer ([A-Za-z0-9._~+/-]+=*)")
MAX_HEADER_LENGTH = 512
# One message for every refused token, so a caller cannot tell a malformed token from an
# unknown or revoked one; none of them ever repeats what was sent.
REFUSED = "A valid 'Authorization: Bearer <token>' header is required."


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if header is None:
            return None  # IsClient then answers 401 with the same WWW-Authenticate
        match = _HEADER.fullmatch(header) if len(header) <= MAX_HEADER_LENGTH else None
        grant = authenticate(match.group(1)) if match else None
        if grant is None:
            raise exceptions.AuthenticationFailed(REFUSED)
        return grant, grant

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) with `WWW-Authenticate: Bearer`.
        return SCHEME


class IsClient(BasePermission):
    """An authenticated client; DRF turns a refusal into 401 when no token was accepted."""

    message = REFUSED

    def has_permission(self, request, view):
        return request.auth is not None


class HasScope(BasePermission):
    """The client holds the view's ``required_scope``; decided after the input is valid.

    A view that declares no scope is refused outright, so an endpoint added without
    thinking about access fails closed.
    """

    message = "This client's token does not grant the scope this endpoint needs."

    def has_permission(self, request, view):
        return getattr(view, "required_scope", None) is not None

    def has_object_permission(self, request, view, obj):
        return request.auth.may(view.required_scope)


class AccountAllowed(BasePermission):
    """The validated request's account is on the client's allow-list, whether it exists or not."""

    message = "This client may not use this account."

    def has_object_permission(self, request, view, obj):
        return request.auth.covers(obj.account_id)
