"""What the OpenAPI document says about each endpoint; drf-spectacular writes the document.

The serializers here describe bodies for the document only: the views validate with the
domain's own rules (energy.domain.requests), which the schema test holds this to.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from energy.domain.requests import MAX_INT64, MAX_KEY_LENGTH, MAX_PAGE_LIMIT
from energy.http.errors import HTTP_STATUS


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "energy.http.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A client token from `energyctl clients add` or `energyctl clients rotate`."}


class ConsumeBody(serializers.Serializer):
    account_id = serializers.IntegerField(min_value=1, max_value=MAX_INT64)
    amount = serializers.IntegerField(min_value=1, max_value=MAX_INT64)
    idempotency_key = serializers.CharField(
        min_length=1, max_length=MAX_KEY_LENGTH, required=False,
        help_text="Required here or in the Idempotency-Key header (both: they must agree). Scoped per client.")


class ConsumeResult(serializers.Serializer):
    status = serializers.ChoiceField(choices=["applied", "replayed"])
    consumption_id = serializers.IntegerField()
    account_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    idempotency_key = serializers.CharField()
    balance_after = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class LedgerEntry(ConsumeResult):
    status = serializers.ChoiceField(choices=["applied"])
    client = serializers.CharField(help_text="The client whose key it was.")


class AccountHistory(serializers.Serializer):
    account_id = serializers.IntegerField()
    energy = serializers.IntegerField()
    consumptions = LedgerEntry(many=True, help_text="Newest first: in the order they were applied.")
    next = serializers.URLField(allow_null=True, help_text="The next (older) page, or null on the last.")


class StoredRecord(ConsumeResult):
    status = serializers.ChoiceField(choices=["applied"])


class Balance(serializers.Serializer):
    account_id = serializers.IntegerField()
    energy = serializers.IntegerField()


class Health(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])


class Error(serializers.Serializer):
    status = serializers.ChoiceField(choices=["error"])
    error = serializers.ChoiceField(choices=[outcome for outcome, status in HTTP_STATUS.items() if status >= 400])
    detail = serializers.CharField()
    fields = serializers.DictField(child=serializers.CharField(), required=False,
                                   help_text="For invalid_request: each offending field and what is wrong.")


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(Error, description=description)


UNAUTHENTICATED = _error("unauthenticated: missing, malformed, unknown or revoked token "
                         "(with WWW-Authenticate: Bearer)")
FORBIDDEN = _error("forbidden: the token lacks the scope, or the account is outside the client's allow-list")
INVALID = _error("invalid_request: the input breaks a rule; `fields` names each field")
UNAVAILABLE = _error("unavailable: the database did not answer in time; retry (same key) after Retry-After")

CONSUME = {
    "summary": "Spend energy from an account, exactly once per idempotency key of this client",
    "description": "Needs scope `consume` and the account on the client's allow-list. Answers in this order: "
                   "401 (token), 400 (input), 403 (scope, allow-list), then the outcome.",
    "request": ConsumeBody,
    "parameters": [OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                    description="The idempotency key, instead of the body's.")],
    "responses": {
        201: OpenApiResponse(ConsumeResult, description="applied"),
        200: OpenApiResponse(ConsumeResult, description="replayed: the original result, with "
                                                        "Idempotent-Replayed: true"),
        400: INVALID,
        401: UNAUTHENTICATED,
        403: FORBIDDEN,
        404: _error("account_not_found"),
        409: _error("insufficient_energy: nothing recorded; a retry is evaluated afresh"),
        415: _error("invalid_request: the body must be application/json"),
        422: _error("idempotency_key_mismatch: this client used the key for another account or amount"),
        503: UNAVAILABLE,
    },
    "examples": [OpenApiExample("consume", {"account_id": 1, "amount": 30, "idempotency_key": "order-17"},
                                request_only=True)],
}

ACCOUNT = {
    "summary": "The energy left on an account",
    "description": "Needs scope `read` and the account on the client's allow-list.",
    "parameters": [OpenApiParameter("account_id", int, OpenApiParameter.PATH, description="A positive integer.")],
    "responses": {200: Balance, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                  404: _error("account_not_found"), 503: UNAVAILABLE},
}

HEALTH = {
    "summary": "Whether the service and its database answer (no token)",
    "description": "200 when the database answers `SELECT 1`, else 503 with Retry-After.",
    "auth": [],
    "responses": {200: Health, 503: UNAVAILABLE},
}

ACCOUNT_CONSUMPTIONS = {
    "summary": "An account's consumptions, newest first, a page at a time",
    "description": "Needs scope `read` and the account on the client's allow-list. Pages follow a cursor: "
                   "`next` links to the older ones (`before` = the last consumption id shown).",
    "parameters": [
        OpenApiParameter("account_id", int, OpenApiParameter.PATH, description="A positive integer."),
        OpenApiParameter("limit", int, OpenApiParameter.QUERY, required=False,
                         description=f"Consumptions per page, 1 to {MAX_PAGE_LIMIT} (default 20)."),
        OpenApiParameter("before", int, OpenApiParameter.QUERY, required=False,
                         description="Only consumptions older than this one of the account (from `next`)."),
    ],
    "responses": {200: AccountHistory, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                  404: _error("account_not_found"), 503: UNAVAILABLE},
}

CONSUMPTION = {
    "summary": "The stored record of one of this client's own idempotency keys; changes nothing",
    "description": "Needs scope `read`; the record's account must be on the client's allow-list. Another "
                   "client's key is a 404, like a key nobody sent.",
    "parameters": [OpenApiParameter("key", str, OpenApiParameter.PATH,
                                    description="The idempotency key, URL-encoded (a `/` as `%2F`).")],
    "responses": {200: StoredRecord, 400: INVALID, 401: UNAUTHENTICATED, 403: FORBIDDEN,
                  404: _error("key_not_found: this client has applied no request under this key"),
                  503: UNAVAILABLE},
}


# The schema view's own settings on top of SPECTACULAR_SETTINGS.
DOCUMENT_SETTINGS: dict = {}
