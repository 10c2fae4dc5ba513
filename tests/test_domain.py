"""Input rules of a consume request: pure code, no database."""

import pytest

from energy.domain.exceptions import InvalidRequest
from energy.domain.requests import MAX_INT64, ConsumeRequest, parse_account_id

VALID = {"account_id": 1, "amount": 30, "idempotency_key": "abc-123"}


def fields_of(data, header=None):
    with pytest.raises(InvalidRequest) as caught:
        ConsumeRequest.from_json(data, header)
    return caught.value.fields


def test_valid_json_request_is_accepted():
    assert ConsumeRequest.from_json(VALID) == ConsumeRequest(1, 30, "abc-123")


def test_largest_int64_is_accepted():
    assert ConsumeRequest.from_json({**VALID, "amount": MAX_INT64}).amount == MAX_INT64


@pytest.mark.parametrize(
    "field, value",
    [
        ("amount", 0),
        ("amount", -5),
        ("amount", 1.5),
        ("amount", 30.0),
        ("amount", True),
        ("amount", "30"),
        ("amount", MAX_INT64 + 1),
        ("amount", 10**100),
        ("amount", None),
        ("amount", [30]),
        ("account_id", 0),
        ("account_id", False),
        ("account_id", "1"),
        ("account_id", 2**64),
        ("idempotency_key", ""),
        ("idempotency_key", "x" * 256),
        ("idempotency_key", "nul\x00byte"),
        ("idempotency_key", "tab\tkey"),
        ("idempotency_key", "del\x7f"),
        ("idempotency_key", "c1\x85"),
        ("idempotency_key", "\ud800"),
        ("idempotency_key", 123),
        ("idempotency_key", None),
    ],
)
def test_invalid_field_is_named(field, value):
    assert field in fields_of({**VALID, field: value})


@pytest.mark.parametrize("missing", ["account_id", "amount", "idempotency_key"])
def test_missing_field_is_required(missing):
    data = {k: v for k, v in VALID.items() if k != missing}
    assert fields_of(data)[missing] == "is required"


def test_every_bad_field_is_reported_at_once():
    assert set(fields_of({"account_id": -1, "amount": "x"})) == {"account_id", "amount", "idempotency_key"}


@pytest.mark.parametrize("body", [[1, 2], "text", 5, None])
def test_body_must_be_an_object(body):
    assert "body" in fields_of(body)


def test_unicode_key_of_255_characters_is_fine():
    key = "ключ" * 63 + "€€€"
    assert len(key) == 255
    assert ConsumeRequest.from_json({**VALID, "idempotency_key": key}).idempotency_key == key


def test_key_may_come_from_header():
    assert ConsumeRequest.from_json({"account_id": 1, "amount": 2}, "hdr").idempotency_key == "hdr"


def test_header_and_body_keys_must_agree():
    assert "idempotency_key" in fields_of(VALID, "other")
    assert ConsumeRequest.from_json(VALID, "abc-123").idempotency_key == "abc-123"


@pytest.mark.parametrize("text, expected", [("1", 1), (" 42 ", 42), ("+7", 7), (str(MAX_INT64), MAX_INT64)])
def test_text_integers_parse(text, expected):
    assert parse_account_id(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "1e3", "abc", "", "٣", str(MAX_INT64 + 1), "9" * 5000])
def test_bad_text_integers_are_invalid(text):
    with pytest.raises(InvalidRequest) as caught:
        parse_account_id(text)
    assert "account_id" in caught.value.fields


def test_from_text_validates_all_three():
    assert ConsumeRequest.from_text("1", "30", "k") == ConsumeRequest(1, 30, "k")
    with pytest.raises(InvalidRequest) as caught:
        ConsumeRequest.from_text("x", "0", "")
    assert set(caught.value.fields) == {"account_id", "amount", "idempotency_key"}


def test_missing_sqlite_table_is_unavailable_with_the_migrate_hint():
    from django.db import OperationalError

    from energy.db.guard import NOT_MIGRATED, database_guard
    from energy.domain.exceptions import Unavailable

    with pytest.raises(Unavailable) as caught, database_guard():
        raise OperationalError("no such table: energy_account")
    assert NOT_MIGRATED in caught.value.detail


def test_error_document_is_the_contract_shape():
    from energy.domain.exceptions import InsufficientEnergy, describe

    assert describe(InvalidRequest({"amount": "is required"})) == {
        "status": "error", "error": "invalid_request", "detail": "amount: is required",
        "fields": {"amount": "is required"}}
    assert describe(InsufficientEnergy(1, 5, 9)) == {
        "status": "error", "error": "insufficient_energy", "detail": "Account 1 has 5 energy; 9 was requested."}
