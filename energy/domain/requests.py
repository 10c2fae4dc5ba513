"""The ledger's requests and their input rules, shared by every adapter (HTTP, CLI, replay files)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from energy.domain.exceptions import InvalidRequest
from energy.domain.holds import DEFAULT_EXPIRES_IN, check_expires_in

# Ids and amounts live in signed 64-bit columns (BIGINT); anything larger is refused as
# input instead of overflowing inside the database.
MAX_INT64 = 2**63 - 1
MAX_KEY_LENGTH = 255
# C0 and C1 control characters (NUL included) and DEL: invisible in logs, unsafe in keys.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Lone surrogates: JSON's \ud800 escapes decode to them, and no database can store them.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Text forms of integers accepted from the command line: optional sign, ASCII digits.
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
FIELDS = ("account_id", "amount", "idempotency_key")
# A history page longer than this is a dump, not a page: read further with a cursor instead.
MAX_PAGE_LIMIT = 1000
# The Idempotency-Key header (IETF Idempotency-Key draft) holds an RFC 8941 sf-string:
# printable ASCII in double quotes, where only \" and \\ are escapes. A bare token (HTTP's
# tchar, plus sf-token's ":" and "/") names the same key, as most clients send it unquoted.
KEY_HEADER = "Idempotency-Key"
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_SF_ESCAPE = re.compile(r'\\(["\\])')
_BARE_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class AmountRequest:
    """A request that names an account, an amount and a new key: a consume or a credit."""

    # The kind of entry the request records; its key cannot be used again for another kind.
    kind: ClassVar[str]
    account_id: int
    amount: int
    idempotency_key: str

    @classmethod
    def from_json(cls, data: Any, key_header: str | None = None) -> "AmountRequest":
        """Validate a decoded JSON body; numbers must be JSON integers, not strings or floats.

        ``key_header`` is the Idempotency-Key header's value as the server received it.
        """
        if not isinstance(data, Mapping):
            raise InvalidRequest({"body": "must be a JSON object"})
        problems: dict[str, str] = {}
        account_id = _json_int(data, "account_id", problems)
        amount = _json_int(data, "amount", problems)
        header_key = key_from_header(key_header, problems) if key_header is not None else None
        key = _key(data.get("idempotency_key"), header_key, problems) if KEY_HEADER not in problems else None
        return cls._checked(account_id, amount, key, problems)

    @classmethod
    def from_text(cls, account_id: str, amount: str, key: str) -> "AmountRequest":
        """Validate command-line text, where integers arrive as decimal strings."""
        problems: dict[str, str] = {}
        parsed_account = _text_int(account_id, "account_id", problems)
        parsed_amount = _text_int(amount, "amount", problems)
        checked_key = _key(key, None, problems)
        return cls._checked(parsed_account, parsed_amount, checked_key, problems)

    @classmethod
    def _checked(cls, account_id, amount, key, problems) -> "AmountRequest":
        if problems:
            raise InvalidRequest(problems)
        return cls(account_id=account_id, amount=amount, idempotency_key=key)


@dataclass(frozen=True)
class ConsumeRequest(AmountRequest):
    kind: ClassVar[str] = "consume"


@dataclass(frozen=True)
class CreditRequest(AmountRequest):
    kind: ClassVar[str] = "credit"


@dataclass(frozen=True)
class HoldRequest(AmountRequest):
    """Move ``amount`` from the account's energy to its held, for ``expires_in`` seconds at most."""

    kind: ClassVar[str] = "hold"
    expires_in: int = DEFAULT_EXPIRES_IN

    @classmethod
    def from_json(cls, data: Any, key_header: str | None = None) -> "HoldRequest":
        """A consume's body plus an optional ``expires_in`` (absent or null: the default)."""
        problems: dict[str, str] = {}
        try:
            request = ConsumeRequest.from_json(data, key_header)
        except InvalidRequest as exc:
            request, problems = None, dict(exc.fields)
        seconds = data.get("expires_in") if isinstance(data, Mapping) else None
        expires_in = _expires_in(DEFAULT_EXPIRES_IN if seconds is None else seconds, problems)
        if problems:
            raise InvalidRequest(problems)
        return cls(request.account_id, request.amount, request.idempotency_key, expires_in)

    @classmethod
    def from_text(cls, account_id: str, amount: str, key: str,
                  expires_in: str | None = None) -> "HoldRequest":
        """Command-line text; ``expires_in`` None is the default lifetime."""
        problems: dict[str, str] = {}
        try:
            request = ConsumeRequest.from_text(account_id, amount, key)
        except InvalidRequest as exc:
            request, problems = None, dict(exc.fields)
        seconds = DEFAULT_EXPIRES_IN if expires_in is None else _text_int(expires_in, "expires_in", problems)
        checked = _expires_in(seconds, problems) if "expires_in" not in problems else None
        if problems:
            raise InvalidRequest(problems)
        return cls(request.account_id, request.amount, request.idempotency_key, checked)


@dataclass(frozen=True)
class CaptureRequest:
    """Spend ``amount`` (None: all) of the open hold recorded under ``idempotency_key``; the rest goes back."""

    kind: ClassVar[str] = "capture"
    idempotency_key: str
    amount: int | None = None

    @classmethod
    def from_text(cls, key: Any, amount: Any = None) -> "CaptureRequest":
        """A key and an optional amount from the command line, a URL, a JSON body or a replay line."""
        problems: dict[str, str] = {}
        checked = _key(key, None, problems)
        spend = None
        if amount is not None:
            if isinstance(amount, bool) or not isinstance(amount, (int, str)):
                problems["amount"] = "must be an integer"
            else:
                spend = positive_int64(amount, "amount", problems) if isinstance(amount, int) else (
                    _text_int(amount, "amount", problems))
        if problems:
            raise InvalidRequest(problems)
        return cls(checked, spend)


@dataclass(frozen=True)
class VoidRequest:
    """Give the open hold recorded under ``idempotency_key`` back to the account's energy."""

    kind: ClassVar[str] = "void"
    idempotency_key: str

    @classmethod
    def from_text(cls, key: Any) -> "VoidRequest":
        return cls(parse_idempotency_key(key))


def _expires_in(seconds: Any, problems: dict[str, str]) -> int | None:
    if seconds is None:
        return None
    try:
        return check_expires_in(seconds)
    except InvalidRequest as exc:
        problems.update(exc.fields)
        return None


@dataclass(frozen=True)
class ReverseRequest:
    """Give back, once, what the entry recorded under ``idempotency_key`` took."""

    kind: ClassVar[str] = "reversal"
    idempotency_key: str

    @classmethod
    def from_text(cls, key: Any) -> "ReverseRequest":
        """Validate a key from the command line, a URL or a replay line."""
        return cls(parse_idempotency_key(key))


def positive_int64(value: int, field: str, problems: dict[str, str]) -> int | None:
    if value < 1:
        problems[field] = "must be a positive integer"
    elif value > MAX_INT64:
        problems[field] = f"must be at most {MAX_INT64}"
    else:
        return value
    return None


def parse_account_id(text: str) -> int:
    """An account id given as text (URL path, command line)."""
    return parse_positive_int(text, "account_id")


def parse_positive_int(text: Any, field: str) -> int:
    """A positive 64-bit integer given as text (URL path, query string, command line)."""
    problems: dict[str, str] = {}
    value = _text_int(text, field, problems)
    if problems:
        raise InvalidRequest(problems)
    return value


def parse_idempotency_key(text: Any) -> str:
    """An idempotency key to look up, under the same rules as a key sent with a request."""
    problems: dict[str, str] = {}
    key = _key(text, None, problems)
    if problems:
        raise InvalidRequest(problems)
    return key


def key_from_header(value: str, problems: dict[str, str]) -> str | None:
    """The key an Idempotency-Key header names: its sf-string unquoted and unescaped, or its bare token.

    WSGI hands header values over as Latin-1, so bytes beyond ASCII would come out as another
    spelling of the key than the client meant: such values are refused, never guessed at.
    """
    value = value.strip(" \t")
    if not _PRINTABLE_ASCII.fullmatch(value):
        problems[KEY_HEADER] = ("must be printable ASCII; send a key with other characters "
                                "in the JSON body as idempotency_key")
        return None
    quoted = _SF_STRING.fullmatch(value)
    if quoted:
        return _SF_ESCAPE.sub(r"\1", quoted.group(1))
    if _BARE_TOKEN.fullmatch(value):
        return value
    problems[KEY_HEADER] = ('must be a structured-field string ("abc", with \\" and \\\\ as the only escapes) '
                            "or a bare token (letters, digits and !#$%&'*+-.^_`|~:/)")
    return None


def _json_int(data: Mapping, field: str, problems: dict[str, str]) -> int | None:
    if field not in data or data[field] is None:
        problems[field] = "is required"
        return None
    value = data[field]
    # bool is a subclass of int in Python; `true` is not an amount.
    if isinstance(value, bool) or not isinstance(value, int):
        problems[field] = "must be an integer"
        return None
    return positive_int64(value, field, problems)


def _text_int(text: Any, field: str, problems: dict[str, str]) -> int | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        problems[field] = "is required"
        return None
    text = str(text).strip()
    # Cap the length before int(): a huge digit string is refused, not converted.
    if len(text) > 25 or not _INTEGER_TEXT.fullmatch(text):
        problems[field] = "must be an integer" if len(text) <= 25 else f"must be at most {MAX_INT64}"
        return None
    return positive_int64(int(text), field, problems)


def _key(body_key: Any, header_key: str | None, problems: dict[str, str]) -> str | None:
    if header_key is not None and body_key is not None and header_key != body_key:
        problems["idempotency_key"] = "differs between the body and the Idempotency-Key header"
        return None
    key = body_key if body_key is not None else header_key
    if key is None:
        problems["idempotency_key"] = "is required"
    elif not isinstance(key, str):
        problems["idempotency_key"] = "must be a string"
    elif not key:
        problems["idempotency_key"] = "must not be empty"
    elif len(key) > MAX_KEY_LENGTH:
        problems["idempotency_key"] = f"must be at most {MAX_KEY_LENGTH} characters"
    elif _CONTROL.search(key):
        problems["idempotency_key"] = "must not contain control characters"
    elif _SURROGATE.search(key):
        problems["idempotency_key"] = "must be valid Unicode (no lone surrogates)"
    else:
        return key
    return None


def check_page_limit(limit: int) -> int:
    """How many records one page of a history may hold."""
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidRequest({"limit": f"must be an integer between 1 and {MAX_PAGE_LIMIT}"})
    return limit
