"""Holds on real PostgreSQL: every outcome of hold, capture and void, the bodies, expiry seen by every
read and write from the moment it passes, a capture's reversal, and what the database itself refuses."""

import pytest
from django.db import IntegrityError, connection, transaction

from energy.application.accounts import get_account, get_balance
from energy.application.audit import audit_ledger
from energy.application.batch import apply_many
from energy.application.consume import consume
from energy.application.entries import credit, reverse
from energy.application.holds import capture, expire_holds, hold, void
from energy.application.ledger import account_history, get_record
from energy.domain.exceptions import (
    AccountNotFound,
    IdempotencyKeyMismatch,
    InsufficientEnergy,
    InvalidRequest,
    InvalidState,
    KeyNotFound,
)
from energy.domain.requests import MAX_INT64, ConsumeRequest
from energy.models import Account, Client, Entry
from tests.support import table_rows

pytestmark = pytest.mark.django_db(transaction=True)


def stored(account_id=1):
    """The account's stored (energy, held), as writers leave them."""
    return tuple(Account.objects.filter(pk=account_id).values_list("energy", "held").get())


def state_of(key):
    return Entry.objects.get(idempotency_key=key).state


def expire_now(key):
    """Move the hold's expiry to the database's present: from now on it has expired."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE energy_consumption SET expires_at = statement_timestamp() WHERE idempotency_key = %s",
                       [key])


def assert_audit_clean():
    report = audit_ledger()
    assert report.clean, report.violations


# --- hold -------------------------------------------------------------------------------------------

def test_a_hold_moves_energy_to_held_and_answers_the_contract_body(account):
    result = hold(account_id=1, amount=30, idempotency_key="h", expires_in=600)

    entry = Entry.objects.get()
    assert result.to_dict() == {
        "status": "applied", "kind": "hold", "entry_id": entry.id, "account_id": 1, "amount": 30,
        "idempotency_key": "h", "balance_after": 70, "created_at": entry.created_at.isoformat(),
        "held_after": 30, "state": "open", "expires_at": entry.expires_at.isoformat(),
    }
    assert (entry.expires_at - entry.created_at).total_seconds() == 600
    assert stored() == (70, 30) and get_account(account_id=1) == {"account_id": 1, "energy": 70, "held": 30}
    assert_audit_clean()


def test_a_retried_hold_is_replayed_with_the_original_body_and_holds_once(account):
    first = hold(account_id=1, amount=30, idempotency_key="h")
    again = hold(account_id=1, amount=30, idempotency_key="h")

    assert again.status == "replayed" and {**again.to_dict(), "status": "applied"} == first.to_dict()
    assert stored() == (70, 30) and Entry.objects.count() == 1


@pytest.mark.parametrize("other", [
    {"account_id": 1, "amount": 31}, {"account_id": 2, "amount": 30}, {"account_id": 1, "amount": 30, "expires_in": 60},
])
def test_a_hold_key_sent_again_with_another_account_amount_or_lifetime_is_a_mismatch(account, other):
    Account.objects.create(id=2, energy=100, opening_energy=100)
    hold(account_id=1, amount=30, idempotency_key="h")
    before = table_rows()

    with pytest.raises(IdempotencyKeyMismatch):
        hold(idempotency_key="h", **other)
    assert table_rows() == before


def test_one_key_names_one_request_whatever_its_kind(account):
    consume(account_id=1, amount=10, idempotency_key="c")
    hold(account_id=1, amount=10, idempotency_key="h")
    before = table_rows()

    with pytest.raises(IdempotencyKeyMismatch):
        hold(account_id=1, amount=10, idempotency_key="c")
    with pytest.raises(IdempotencyKeyMismatch):
        consume(account_id=1, amount=10, idempotency_key="h")
    with pytest.raises(IdempotencyKeyMismatch):
        credit(account_id=1, amount=10, idempotency_key="h")
    assert table_rows() == before


def test_a_hold_above_the_energy_is_refused_and_stores_nothing(account):
    hold(account_id=1, amount=60, idempotency_key="first")
    before = table_rows()

    with pytest.raises(InsufficientEnergy) as caught:
        hold(account_id=1, amount=41, idempotency_key="second")
    assert caught.value.balance == 40 and table_rows() == before


def test_a_hold_on_a_missing_account_is_not_found(account):
    with pytest.raises(AccountNotFound):
        hold(account_id=9, amount=1, idempotency_key="h")
    assert not Entry.objects.exists()


@pytest.mark.parametrize("seconds", [0, -1, 604_801, True])
def test_a_lifetime_outside_one_second_to_seven_days_is_invalid(account, seconds):
    with pytest.raises(InvalidRequest) as caught:
        hold(account_id=1, amount=1, idempotency_key="h", expires_in=seconds)
    assert "expires_in" in caught.value.fields and not Entry.objects.exists()


# --- capture and void ---------------------------------------------------------------------------------

def test_a_partial_capture_spends_part_and_returns_the_rest(account):
    hold(account_id=1, amount=30, idempotency_key="h")

    result = capture(idempotency_key="h", amount=20)

    entry = Entry.objects.get(kind="capture")
    assert result.to_dict() == {
        "status": "applied", "kind": "capture", "entry_id": entry.id, "account_id": 1, "amount": 20,
        "idempotency_key": "h", "balance_after": 80, "created_at": entry.created_at.isoformat(),
        "held_after": 0, "released": 10,
    }
    assert stored() == (80, 0) and state_of("h") == "captured"
    assert_audit_clean()


def test_a_capture_without_an_amount_spends_the_whole_hold(account):
    hold(account_id=1, amount=30, idempotency_key="h")

    result = capture(idempotency_key="h")

    assert (result.amount, result.released, result.balance_after) == (30, 0, 70)
    assert stored() == (70, 0)


def test_a_retried_capture_is_replayed_and_captures_once(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    first = capture(idempotency_key="h", amount=20)
    consume(account_id=1, amount=5, idempotency_key="later")

    for again in (capture(idempotency_key="h", amount=20), capture(idempotency_key="h", amount=20)):
        assert again.status == "replayed" and {**again.to_dict(), "status": "applied"} == first.to_dict()
    assert stored() == (75, 0) and Entry.objects.filter(kind="capture").count() == 1


def test_a_whole_capture_retried_without_or_with_the_amount_is_the_same_capture(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    capture(idempotency_key="h")

    assert capture(idempotency_key="h", amount=30).status == "replayed"
    assert capture(idempotency_key="h").status == "replayed"


def test_a_capture_of_another_amount_after_a_capture_is_a_mismatch(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    capture(idempotency_key="h", amount=20)
    before = table_rows()

    with pytest.raises(IdempotencyKeyMismatch):
        capture(idempotency_key="h", amount=10)
    with pytest.raises(IdempotencyKeyMismatch):
        capture(idempotency_key="h")
    assert table_rows() == before


def test_a_capture_above_the_hold_is_invalid_and_changes_nothing(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    before = table_rows()

    with pytest.raises(InvalidRequest) as caught:
        capture(idempotency_key="h", amount=31)
    assert "amount" in caught.value.fields and table_rows() == before


@pytest.mark.parametrize("amount", [0, -5, MAX_INT64 + 1, True, 2.0])
def test_a_capture_amount_that_is_no_positive_64_bit_integer_is_invalid(account, amount):
    hold(account_id=1, amount=30, idempotency_key="h")
    with pytest.raises(InvalidRequest):
        capture(idempotency_key="h", amount=amount)
    assert state_of("h") == "open"


def test_a_void_returns_the_hold_and_a_retry_replays_it(account):
    hold(account_id=1, amount=30, idempotency_key="h")

    first = void(idempotency_key="h")
    again = void(idempotency_key="h")

    entry = Entry.objects.get(kind="void")
    assert first.to_dict() == {
        "status": "applied", "kind": "void", "entry_id": entry.id, "account_id": 1, "amount": 30,
        "idempotency_key": "h", "balance_after": 100, "created_at": entry.created_at.isoformat(), "held_after": 0,
    }
    assert again.status == "replayed" and {**again.to_dict(), "status": "applied"} == first.to_dict()
    assert stored() == (100, 0) and state_of("h") == "voided"
    assert_audit_clean()


def test_a_voided_hold_cannot_be_captured_and_a_captured_one_cannot_be_voided(account):
    hold(account_id=1, amount=30, idempotency_key="voided")
    hold(account_id=1, amount=30, idempotency_key="captured")
    void(idempotency_key="voided")
    capture(idempotency_key="captured", amount=10)
    before = table_rows()

    with pytest.raises(InvalidState) as caught:
        capture(idempotency_key="voided")
    assert "voided hold" in caught.value.detail
    with pytest.raises(InvalidState) as caught:
        void(idempotency_key="captured")
    assert "captured hold" in caught.value.detail
    assert table_rows() == before


def test_capture_or_void_of_a_key_that_names_no_hold_is_an_invalid_state(account):
    consume(account_id=1, amount=10, idempotency_key="c")
    credit(account_id=1, amount=10, idempotency_key="cr")
    for key in ("c", "cr"):
        with pytest.raises(InvalidState):
            capture(idempotency_key=key)
        with pytest.raises(InvalidState):
            void(idempotency_key=key)


def test_capture_or_void_of_an_unknown_key_is_key_not_found(account):
    with pytest.raises(KeyNotFound):
        capture(idempotency_key="nothing")
    with pytest.raises(KeyNotFound):
        void(idempotency_key="nothing")


def test_a_hold_is_capturable_only_in_its_clients_key_space(account):
    shop = Client.objects.create(name="shop", scopes=["consume"])
    hold(account_id=1, amount=30, idempotency_key="h", client_id=shop.id)

    with pytest.raises(KeyNotFound):
        capture(idempotency_key="h")
    assert capture(idempotency_key="h", client_id=shop.id).status == "applied"


# --- expiry -------------------------------------------------------------------------------------------

def test_an_expired_hold_is_energy_to_every_read_before_any_write(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    expire_now("h")

    assert stored() == (70, 30)  # nothing has written it down yet
    assert get_account(account_id=1) == {"account_id": 1, "energy": 100, "held": 0}
    assert get_balance(account_id=1) == 100
    history = account_history(account_id=1)
    assert history.energy == 100 and history.held == 0
    assert history.to_dict()["entries"][0]["state"] == "expired"
    assert_audit_clean()


@pytest.mark.parametrize("write", [
    lambda: consume(account_id=1, amount=95, idempotency_key="all"),
    lambda: apply_many([ConsumeRequest(1, 95, "all")]),
    lambda: credit(account_id=1, amount=1, idempotency_key="more"),
    lambda: hold(account_id=1, amount=95, idempotency_key="again"),
    lambda: capture(idempotency_key="other", amount=1),
])
def test_every_write_releases_an_expired_hold_before_it_decides(account, write):
    hold(account_id=1, amount=30, idempotency_key="h")
    hold(account_id=1, amount=5, idempotency_key="other")
    expire_now("h")

    write()

    assert state_of("h") == "expired"
    open_holds = Entry.objects.filter(kind="hold", state="open").values_list("amount", flat=True)
    assert stored()[1] == sum(open_holds)
    assert_audit_clean()


def test_a_consume_spends_an_expired_holds_energy_in_the_one_statement(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    expire_now("h")

    result = consume(account_id=1, amount=100, idempotency_key="all")

    assert result.balance_after == 0 and stored() == (0, 0) and state_of("h") == "expired"
    assert Entry.objects.get(idempotency_key="all").held_after == 0


def test_a_replayed_or_refused_consume_still_writes_the_release_down(account):
    consume(account_id=1, amount=10, idempotency_key="c")
    hold(account_id=1, amount=30, idempotency_key="h")
    expire_now("h")

    assert consume(account_id=1, amount=10, idempotency_key="c").status == "replayed"
    assert stored() == (90, 0) and state_of("h") == "expired"
    assert_audit_clean()


def test_an_expired_hold_can_be_neither_captured_nor_voided(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    expire_now("h")

    with pytest.raises(InvalidState) as caught:
        capture(idempotency_key="h")
    assert "expired hold" in caught.value.detail
    with pytest.raises(InvalidState):
        void(idempotency_key="h")
    assert stored() == (100, 0) and not Entry.objects.filter(kind__in=("capture", "void")).exists()


def test_a_hold_expires_by_the_database_clock_when_its_lifetime_passes(account):
    hold(account_id=1, amount=30, idempotency_key="h", expires_in=1)
    with connection.cursor() as cursor:
        # Observed, not slept: ask the database until its clock is past the hold's expiry.
        cursor.execute("""DO $$ BEGIN
            WHILE clock_timestamp() <= (SELECT expires_at FROM energy_consumption WHERE idempotency_key = 'h') LOOP
                PERFORM pg_sleep(0.05);
            END LOOP; END $$""")

    assert get_balance(account_id=1) == 100
    with pytest.raises(InvalidState):
        capture(idempotency_key="h")


def test_expire_holds_releases_every_expired_hold_and_only_those(account):
    Account.objects.create(id=2, energy=50, opening_energy=50)
    hold(account_id=1, amount=30, idempotency_key="a")
    hold(account_id=1, amount=20, idempotency_key="b")
    hold(account_id=2, amount=5, idempotency_key="c")
    hold(account_id=2, amount=7, idempotency_key="kept")
    for key in ("a", "b", "c"):
        expire_now(key)

    assert expire_holds() == {"released": 3, "energy": 55, "accounts": 2}
    assert stored(1) == (100, 0) and stored(2) == (43, 7) and state_of("kept") == "open"
    assert expire_holds() == {"released": 0, "energy": 0, "accounts": 0}
    assert_audit_clean()


# --- reverse of a capture, the history -------------------------------------------------------------------

def test_a_captured_amount_is_given_back_once_by_reversing_the_holds_key(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    capture(idempotency_key="h", amount=20)

    first = reverse(idempotency_key="h")
    again = reverse(idempotency_key="h")

    assert (first.status, first.kind, first.amount, first.balance_after) == ("applied", "reversal", 20, 100)
    assert first.to_dict()["reverses"] == "h"
    assert again.status == "replayed" and stored() == (100, 0)
    assert_audit_clean()


@pytest.mark.parametrize("resolve", [None, "void", "expire"])
def test_a_hold_that_is_not_captured_cannot_be_reversed(account, resolve):
    hold(account_id=1, amount=30, idempotency_key="h")
    if resolve == "void":
        void(idempotency_key="h")
    elif resolve == "expire":
        expire_now("h")

    with pytest.raises(InvalidState):
        reverse(idempotency_key="h")
    assert not Entry.objects.filter(kind="reversal").exists()


def test_a_credit_or_reversal_past_the_64_bit_total_counts_what_is_held(account):
    Account.objects.filter(pk=1).update(energy=MAX_INT64 - 100, opening_energy=MAX_INT64 - 100)
    hold(account_id=1, amount=50, idempotency_key="h")

    with pytest.raises(InvalidRequest) as caught:
        credit(account_id=1, amount=101, idempotency_key="too-much")
    assert "energy + held" in caught.value.detail
    assert credit(account_id=1, amount=100, idempotency_key="fits").balance_after == MAX_INT64 - 50


def test_the_history_shows_every_kind_with_its_hold_fields_and_the_holds_state_now(account):
    hold(account_id=1, amount=30, idempotency_key="captured")
    capture(idempotency_key="captured", amount=10)
    hold(account_id=1, amount=5, idempotency_key="open")
    hold(account_id=1, amount=7, idempotency_key="voided")
    void(idempotency_key="voided")
    reverse(idempotency_key="captured")

    history = account_history(account_id=1).to_dict()

    kinds = [(e["kind"], e["idempotency_key"], e.get("state")) for e in history["entries"]]
    assert kinds == [("reversal", "captured", None), ("void", "voided", None), ("hold", "voided", "voided"),
                     ("hold", "open", "open"), ("capture", "captured", None), ("hold", "captured", "captured")]
    assert history["energy"] == 95 and history["held"] == 5
    assert history["entries"][0]["reverses"] == "captured"
    assert history["entries"][2]["expires_at"] and history["entries"][4]["released"] == 20
    assert get_record(client_id=1, idempotency_key="captured").to_dict()["state"] == "open"


# --- what the database refuses on its own ----------------------------------------------------------------

def test_the_database_refuses_a_second_resolution_of_one_hold(account):
    hold(account_id=1, amount=30, idempotency_key="h")
    capture(idempotency_key="h")
    hold_id = Entry.objects.get(kind="hold").id

    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.create(client_id=1, account_id=1, kind="void", amount=30, target_id=hold_id, balance_after=0)


@pytest.mark.parametrize("fields", [
    {"kind": "hold", "idempotency_key": "x", "state": None},
    {"kind": "hold", "idempotency_key": "x", "state": "gone"},
    {"kind": "consume", "idempotency_key": "x", "state": "open"},
    {"kind": "capture", "idempotency_key": "x"},
])
def test_the_database_refuses_an_entry_with_hold_fields_that_do_not_fit_its_kind(account, fields):
    from django.db.models.functions import Now

    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.create(client_id=1, account_id=1, amount=1, balance_after=0, expires_at=Now(),
                             **{"state": "open", **fields})


def test_the_database_refuses_a_negative_held(account):
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=1).update(held=-1)
