"""What the OpenAPI document says about each endpoint; drf-spectacular writes the document.

The serializers here describe bodies for the document only: the views validate with the
domain's own rules (energy.domain.requests), which the schema test holds this to.
"""

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from energy.domain.holds import DEFAULT_EXPIRES_IN, MAX_EXPIRES_IN
from energy.domain.requests import MAX_INT64, MAX_KEY_LENGTH, MAX_PAGE_LIMIT
from energy.http.errors import HTTP_STATUS


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "energy.http.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A client token from `energyctl clients add` or `energyctl clients rotate`."}


# No control character (C0, DEL, C1) anywhere in a key.
NO_CONTROL = r"^[^\u0000-\u001f\u007f-\u009f]*$"


class ConsumeBody(serializers.Serializer):
    account_id = serializers.IntegerField(min_value=1, max_value=MAX_INT64)
    amount = serializers.IntegerField(min_value=1, max_value=MAX_INT64)
    idempotency_key = serializers.CharField(
        min_length=1, max_length=MAX_KEY_LENGTH, required=False, allow_null=True,
        validators=[RegexValidator(NO_CONTROL)],
        help_text="Required here or in the Idempotency-Key header (both: they must agree; null is the same as "
                  "absent). Scoped per client; no control characters.")


class ConsumeResult(serializers.Serializer):
    status = serializers.ChoiceField(choices=["applied", "replayed"])
    consumption_id = serializers.IntegerField()
    account_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    idempotency_key = serializers.CharField()
    balance_after = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class CreditBody(ConsumeBody):
    amount = serializers.IntegerField(min_value=1, max_value=MAX_INT64,
                                      help_text="Energy to add. A credit that would take the account past "
                                                "2**63 - 1 is invalid_request.")


class EntryResult(serializers.Serializer):
    status = serializers.ChoiceField(choices=["applied", "replayed"])
    kind = serializers.ChoiceField(choices=["credit", "reversal"])
    entry_id = serializers.IntegerField()
    account_id = serializers.IntegerField()
    amount = serializers.IntegerField()
    idempotency_key = serializers.CharField(help_text="The request's key; a reversal's is its consumption's.")
    balance_after = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class HoldBody(ConsumeBody):
    amount = serializers.IntegerField(min_value=1, max_value=MAX_INT64, help_text="Energy to reserve.")
    expires_in = serializers.IntegerField(
        min_value=1, max_value=MAX_EXPIRES_IN, required=False, allow_null=True,
        help_text=f"Whole seconds the hold lives, 1 to {MAX_EXPIRES_IN} (7 days); absent or null: "
                  f"{DEFAULT_EXPIRES_IN}. The database's clock decides when it has passed.")


class CaptureBody(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, max_value=MAX_INT64, required=False, allow_null=True,
                                      help_text="Energy to spend, at most the hold's; absent or null: all of it.")


class HoldResult(EntryResult):
    kind = serializers.ChoiceField(choices=["hold"])
    state = serializers.ChoiceField(choices=["open"], help_text="The hold's state when it was recorded.")
    expires_at = serializers.DateTimeField()
    held_after = serializers.IntegerField(help_text="The account's held energy after this entry.")


class ResolutionResult(EntryResult):
    kind = serializers.ChoiceField(choices=["capture", "void"])
    idempotency_key = serializers.CharField(help_text="The hold's key.")
    held_after = serializers.IntegerField(help_text="The account's held energy after this entry.")
    released = serializers.IntegerField(required=False,
                                        help_text="A capture's: what went back to energy (the hold less amount).")


class ReversalResult(EntryResult):
    kind = serializers.ChoiceField(choices=["reversal"])
    reverses = serializers.CharField(help_text="The key of the consumption given back.")


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
    energy = serializers.IntegerField(help_text="Spendable now; an expired hold's energy counts here.")
    held = serializers.IntegerField(help_text="Reserved by open holds that have not expired.")


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


# Parameters whose rules the views enforce, with the same bounds (energy.domain.requests).
POSITIVE_ID = {"type": "integer", "minimum": 1, "maximum": MAX_INT64}
ACCOUNT_ID = OpenApiParameter("account_id", POSITIVE_ID, OpenApiParameter.PATH, required=True,
                              description="A positive integer that fits a signed 64-bit column.")
# A key as the rules accept it: 1-255 characters, none of them a control character.
KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": NO_CONTROL}
# The Idempotency-Key header: an RFC 8941 sf-string ("abc", escapes \" and \\) or a bare token,
# naming a key of 1-255 characters (energy.domain.requests.key_from_header).
KEY_HEADER_PATTERN = (r'^(?:"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\]){1,255}"'
                      r"|[!#$%&'*+.^_`|~0-9A-Za-z:/-]{1,255})$")

UNAUTHENTICATED = _error("unauthenticated: missing, malformed, unknown or revoked token "
                         "(with WWW-Authenticate: Bearer)")
FORBIDDEN = _error("forbidden: the token lacks the scope, or the account is outside the client's allow-list")
INVALID = _error("invalid_request: the input breaks a rule; `fields` names each field")
NOT_ACCEPTABLE = _error("invalid_request: the Accept header allows no JSON answer")
UNAVAILABLE = _error("unavailable: the service cannot answer right now; retry (the same key) after Retry-After. "
                     "The detail is a fixed sentence with an error id; the server's log says why under that id")
INTERNAL_ERROR = _error("internal_error: the server failed; the detail carries an error id, its log the traceback")
WITH_TOKEN = {401: UNAUTHENTICATED, 403: FORBIDDEN}
ALWAYS = {406: NOT_ACCEPTABLE, 500: INTERNAL_ERROR, 503: UNAVAILABLE}
RETRY_AFTER = OpenApiParameter("Retry-After", int, OpenApiParameter.HEADER, response=[503], required=True,
                               description="Seconds to wait before retrying.")
WWW_AUTHENTICATE = OpenApiParameter("WWW-Authenticate", {"type": "string", "enum": ["Bearer"]},
                                    OpenApiParameter.HEADER, response=[401], required=True)

CONSUME = {
    "summary": "Spend energy from an account, exactly once per idempotency key of this client",
    "description": "Needs scope `consume` and the account on the client's allow-list. Answers in this order: "
                   "401 (token), 400 (input), 403 (scope, allow-list), then the outcome. The key comes in the "
                   "body or in the Idempotency-Key header (one of them is required; both: they must agree).",
    "request": ConsumeBody,
    "parameters": [
        OpenApiParameter("Idempotency-Key", {"type": "string", "pattern": KEY_HEADER_PATTERN},
                         OpenApiParameter.HEADER, required=False,
                         description='The idempotency key, instead of the body\'s: a structured-field string '
                                     '("abc", with \\" and \\\\ as its only escapes) or a bare token (abc); both '
                                     "name the key abc. A key with other characters goes in the body."),
        OpenApiParameter("Idempotent-Replayed", {"type": "string", "enum": ["true"]}, OpenApiParameter.HEADER,
                         response=[200], required=True, description="This answer is the original one, replayed."),
        RETRY_AFTER, WWW_AUTHENTICATE,
    ],
    "responses": {
        201: OpenApiResponse(ConsumeResult, description="applied"),
        200: OpenApiResponse(ConsumeResult, description="replayed: the original result, with "
                                                        "Idempotent-Replayed: true"),
        400: INVALID,
        **WITH_TOKEN,
        404: _error("account_not_found"),
        409: _error("insufficient_energy: nothing recorded; a retry is evaluated afresh"),
        413: _error("invalid_request: the body is larger than 64 KiB"),
        415: _error("invalid_request: the body must be application/json"),
        422: _error("idempotency_key_mismatch: this client used the key for another account or amount"),
        **ALWAYS,
    },
    "examples": [OpenApiExample("consume", {"account_id": 1, "amount": 30, "idempotency_key": "order-17"},
                                request_only=True)],
}

KEY_HEADER_PARAMETER = OpenApiParameter(
    "Idempotency-Key", {"type": "string", "pattern": KEY_HEADER_PATTERN}, OpenApiParameter.HEADER, required=False,
    description='The idempotency key, instead of the body\'s: a structured-field string ("abc", with \\" and '
                '\\\\ as its only escapes) or a bare token (abc); both name the key abc. A key with other '
                "characters goes in the body.")
REPLAYED_HEADER = OpenApiParameter("Idempotent-Replayed", {"type": "string", "enum": ["true"]},
                                   OpenApiParameter.HEADER, response=[200], required=True,
                                   description="This answer is the original one, replayed.")

CREDIT = {
    "summary": "Add energy to an account, exactly once per idempotency key of this client",
    "description": "Needs scope `credit` and the account on the client's allow-list. Answers in this order: "
                   "401 (token), 400 (input), 403 (scope, allow-list), then the outcome. The key comes in the "
                   "body or in the Idempotency-Key header (one of them is required; both: they must agree). "
                   "Keys are shared by every kind of request: a key used for a consume is a 422 here.",
    "request": CreditBody,
    "parameters": [KEY_HEADER_PARAMETER, REPLAYED_HEADER, RETRY_AFTER, WWW_AUTHENTICATE],
    "responses": {
        201: OpenApiResponse(EntryResult, description="applied"),
        200: OpenApiResponse(EntryResult, description="replayed: the original result, with "
                                                      "Idempotent-Replayed: true"),
        400: _error("invalid_request: the input breaks a rule, or the credit would take the account past "
                    "2**63 - 1; `fields` names each field"),
        **WITH_TOKEN,
        404: _error("account_not_found"),
        413: _error("invalid_request: the body is larger than 64 KiB"),
        415: _error("invalid_request: the body must be application/json"),
        422: _error("idempotency_key_mismatch: this client used the key for another kind, account or amount"),
        **ALWAYS,
    },
    "examples": [OpenApiExample("credit", {"account_id": 1, "amount": 50, "idempotency_key": "topup-17"},
                                request_only=True)],
}

REVERSE = {
    "summary": "Give back, exactly once, the consumption recorded under one of this client's keys",
    "description": "Needs scope `credit`; the consumption's account must be on the client's allow-list. The "
                   "first call records a reversal (201), later ones replay it (200). Another client's key is a "
                   "404, like a key nobody sent; a key that names a credit is 409 invalid_state.",
    "request": None,
    "parameters": [OpenApiParameter("key", KEY_SCHEMA, OpenApiParameter.PATH, required=True,
                                    description="The consumption's idempotency key, URL-encoded (a `/` as `%2F`)."),
                   REPLAYED_HEADER, RETRY_AFTER, WWW_AUTHENTICATE],
    "responses": {
        201: OpenApiResponse(ReversalResult, description="applied: the reversal recorded"),
        200: OpenApiResponse(ReversalResult, description="replayed: the original reversal, with "
                                                         "Idempotent-Replayed: true"),
        400: INVALID,
        **WITH_TOKEN,
        404: _error("key_not_found: this client has recorded nothing under this key"),
        409: _error("invalid_state: the key names an entry that cannot be reversed (a credit)"),
        **ALWAYS,
    },
}

HOLD = {
    "summary": "Reserve energy on an account, exactly once per idempotency key of this client",
    "description": "Needs scope `consume` and the account on the client's allow-list. Answers in this order: "
                   "401 (token), 400 (input), 403 (scope, allow-list), then the outcome. Moves `amount` from "
                   "the account's energy to held until it is captured, voided or expires. The key comes in the "
                   "body or in the Idempotency-Key header (one of them is required; both: they must agree).",
    "request": HoldBody,
    "parameters": [KEY_HEADER_PARAMETER, REPLAYED_HEADER, RETRY_AFTER, WWW_AUTHENTICATE],
    "responses": {
        201: OpenApiResponse(HoldResult, description="applied: the hold is open"),
        200: OpenApiResponse(HoldResult, description="replayed: the original result, with "
                                                     "Idempotent-Replayed: true"),
        400: INVALID,
        **WITH_TOKEN,
        404: _error("account_not_found"),
        409: _error("insufficient_energy: nothing recorded; a retry is evaluated afresh"),
        413: _error("invalid_request: the body is larger than 64 KiB"),
        415: _error("invalid_request: the body must be application/json"),
        422: _error("idempotency_key_mismatch: this client used the key for another kind, account or amount"),
        **ALWAYS,
    },
    "examples": [OpenApiExample("hold", {"account_id": 1, "amount": 40, "idempotency_key": "cart-17",
                                         "expires_in": 600}, request_only=True)],
}

HOLD_KEY = OpenApiParameter("key", KEY_SCHEMA, OpenApiParameter.PATH, required=True,
                            description="The hold's idempotency key, URL-encoded (a `/` as `%2F`).",
                            examples=[OpenApiExample("the hold of the example above", value="cart-17")])

CAPTURE = {
    "summary": "Spend all or part of one of this client's open holds; the rest goes back to energy",
    "description": "Needs scope `consume`; the hold's account must be on the client's allow-list. The first "
                   "call records a capture (201), the same capture again replays it (200). Another client's key "
                   "is a 404, like a key nobody sent.",
    "request": CaptureBody,
    "parameters": [HOLD_KEY, REPLAYED_HEADER, RETRY_AFTER, WWW_AUTHENTICATE],
    "responses": {
        201: OpenApiResponse(ResolutionResult, description="applied: the capture recorded"),
        200: OpenApiResponse(ResolutionResult, description="replayed: the original capture, with "
                                                           "Idempotent-Replayed: true"),
        400: _error("invalid_request: the input breaks a rule, or the amount is above the hold's"),
        **WITH_TOKEN,
        404: _error("key_not_found: this client has recorded nothing under this key"),
        409: _error("invalid_state: the hold was voided or has expired, or the key names no hold"),
        415: _error("invalid_request: the body must be application/json"),
        422: _error("idempotency_key_mismatch: the hold was captured with another amount"),
        **ALWAYS,
    },
}

VOID = {
    "summary": "Give one of this client's open holds back to energy",
    "description": "Needs scope `consume`; the hold's account must be on the client's allow-list. The first "
                   "call records a void (201), later ones replay it (200). Another client's key is a 404.",
    "request": None,
    "parameters": [HOLD_KEY, REPLAYED_HEADER, RETRY_AFTER, WWW_AUTHENTICATE],
    "responses": {
        201: OpenApiResponse(ResolutionResult, description="applied: the void recorded"),
        200: OpenApiResponse(ResolutionResult, description="replayed: the original void, with "
                                                           "Idempotent-Replayed: true"),
        400: INVALID,
        **WITH_TOKEN,
        404: _error("key_not_found: this client has recorded nothing under this key"),
        409: _error("invalid_state: the hold was captured or has expired, or the key names no hold"),
        **ALWAYS,
    },
}

ACCOUNT = {
    "summary": "The energy left on an account, and the energy its open holds reserve",
    "description": "Needs scope `read` and the account on the client's allow-list.",
    "parameters": [ACCOUNT_ID, RETRY_AFTER, WWW_AUTHENTICATE],
    "responses": {200: Balance, 400: INVALID, **WITH_TOKEN, 404: _error("account_not_found"), **ALWAYS},
}

HEALTH = {
    "summary": "Whether the service and its database answer (no token)",
    "description": "200 when the database answers `SELECT 1`, else 503 with Retry-After.",
    "auth": [],
    "parameters": [RETRY_AFTER],
    "responses": {200: Health, 400: _error("invalid_request: the Host header names no host this server answers to"),
                  **ALWAYS},
}

ACCOUNT_CONSUMPTIONS = {
    "summary": "An account's consumptions, newest first, a page at a time",
    "description": "Needs scope `read` and the account on the client's allow-list. Pages follow a cursor: "
                   "`next` links to the older ones (`before` = the last consumption id shown).",
    "parameters": [
        ACCOUNT_ID,
        OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_LIMIT, "default": 20},
                         OpenApiParameter.QUERY, required=False,
                         description=f"Consumptions per page, 1 to {MAX_PAGE_LIMIT} (default 20)."),
        OpenApiParameter("before", POSITIVE_ID, OpenApiParameter.QUERY, required=False,
                         description="Only consumptions older than this one (from `next`); an id that is not "
                                     "one of this client's consumptions of the account is 400."),
        RETRY_AFTER, WWW_AUTHENTICATE,
    ],
    "responses": {200: AccountHistory, 400: INVALID, **WITH_TOKEN, 404: _error("account_not_found"), **ALWAYS},
}

CONSUMPTION = {
    "summary": "The stored record of one of this client's own idempotency keys; changes nothing",
    "description": "Needs scope `read`; the record's account must be on the client's allow-list. Another "
                   "client's key is a 404, like a key nobody sent.",
    "parameters": [OpenApiParameter("key", KEY_SCHEMA, OpenApiParameter.PATH, required=True,
                                    description="The idempotency key, URL-encoded (a `/` as `%2F`)."),
                   RETRY_AFTER, WWW_AUTHENTICATE],
    "responses": {200: StoredRecord, 400: INVALID, **WITH_TOKEN,
                  404: _error("key_not_found: this client has applied no request under this key"), **ALWAYS},
}


# What an answer leads to: path of a POST -> link name -> (operation, its parameter, the answer's field).
_LINKS = {
    "/api/energy/consume/": {
        "TheStoredRecord": ("api_energy_consumptions_retrieve", "key", "idempotency_key"),
        "TheAccount": ("api_energy_accounts_retrieve", "account_id", "account_id"),
        "TheAccountsConsumptions": ("api_energy_accounts_consumptions_retrieve", "account_id", "account_id"),
        "TheReversal": ("api_energy_consumptions_reverse_create", "key", "idempotency_key"),
    },
    "/api/energy/holds/": {
        "TheCapture": ("api_energy_holds_capture_create", "key", "idempotency_key"),
        "TheVoid": ("api_energy_holds_void_create", "key", "idempotency_key"),
        "TheAccount": ("api_energy_accounts_retrieve", "account_id", "account_id"),
    },
}


def add_links(result, generator, request, public):
    """drf-spectacular post-processing: what a consume's or a hold's answer leads to (OpenAPI links),
    for readers and for tools that follow them (schemathesis' stateful phase)."""
    for path, links in _LINKS.items():
        operation = result["paths"].get(path, {}).get("post")
        if not operation:
            continue
        document = {name: {"operationId": operation_id, "parameters": {parameter: f"$response.body#/{field}"}}
                    for name, (operation_id, parameter, field) in links.items()}
        for status in ("200", "201"):
            operation["responses"][status]["links"] = document
    return result


# The schema view's own settings on top of SPECTACULAR_SETTINGS.
DOCUMENT_SETTINGS: dict = {
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "energy.http.openapi.add_links"],
}
