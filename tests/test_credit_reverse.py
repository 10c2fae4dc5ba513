"""Credit and reverse on real PostgreSQL: every outcome, the body of each, and what the database itself refuses."""

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energy.application.audit import audit_ledger
from energy.application.batch import apply_many
from energy.application.consume import consume
from energy.application.entries import credit, reverse
from energy.application.ledger import account_history, get_record
from energy.domain.decision import Apply, Record, Replay, decide
from energy.domain.exceptions import (
    AccountNotFound,
    EnergyError,
    IdempotencyKeyMismatch,
    InvalidRequest,
    InvalidState,
    KeyNotFound,
)
from energy.domain.requests import MAX_INT64, ConsumeRequest, CreditRequest, ReverseRequest
from energy.models import Account, Client, Entry
from tests.support import balance

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_credit_adds_the_amount_and_answers_the_contract_body(account):
    result = credit(account_id=1, amount=25, idempotency_key="top-up")

    entry = Entry.objects.get()
    assert result.to_dict() == {
        "status": "applied", "kind": "credit", "entry_id": entry.id, "account_id": 1, "amount": 25,
        "idempotency_key": "top-up", "balance_after": 125, "created_at": entry.created_at.isoformat(),
    }
    assert (result.status, result.outcome, result.kind, result.account_id) == ("applied", "applied", "credit", 1)
    assert balance() == 125 and (entry.kind, entry.seq) == ("credit", 1)
    assert Account.objects.get(pk=1).last_seq == 1


def test_a_retried_credit_is_replayed_with_the_original_body_and_credits_once(account):
    first = credit(account_id=1, amount=25, idempotency_key="top-up")
    consume(account_id=1, amount=100, idempotency_key="spend")

    again = credit(account_id=1, amount=25, idempotency_key="top-up")

    assert again.status == "replayed" and {**again.to_dict(), "status": "applied"} == first.to_dict()
    assert balance() == 25 and Entry.objects.count() == 2


@pytest.mark.parametrize("request_", [
    dict(account_id=1, amount=26, idempotency_key="top-up"),
    dict(account_id=2, amount=25, idempotency_key="top-up"),
])
def test_a_credit_key_sent_with_another_account_or_amount_is_a_mismatch(account, request_):
    Account.objects.create(id=2, energy=0, opening_energy=0)
    credit(account_id=1, amount=25, idempotency_key="top-up")

    with pytest.raises(IdempotencyKeyMismatch):
        credit(**request_)

    assert (balance(1), balance(2), Entry.objects.count()) == (125, 0, 1)


def test_keys_are_shared_across_kinds_in_both_directions_and_both_consume_paths(account):
    """A key a credit used, sent to consume, or the other way round: a mismatch, even with equal account and amount."""
    from energy.application.consume import _consume_with_orm

    credit(account_id=1, amount=10, idempotency_key="credited")
    consume(account_id=1, amount=10, idempotency_key="consumed")

    with pytest.raises(IdempotencyKeyMismatch):
        consume(account_id=1, amount=10, idempotency_key="credited")
    with pytest.raises(IdempotencyKeyMismatch):
        _consume_with_orm(1, ConsumeRequest(1, 10, "credited"))
    with pytest.raises(IdempotencyKeyMismatch):
        credit(account_id=1, amount=10, idempotency_key="consumed")
    [outcome] = apply_many([ConsumeRequest(1, 10, "credited")])
    assert isinstance(outcome, IdempotencyKeyMismatch)
    assert balance() == 100 and Entry.objects.count() == 2


def test_a_credit_to_a_missing_account_is_not_found_and_records_nothing():
    with pytest.raises(AccountNotFound):
        credit(account_id=9, amount=1, idempotency_key="nowhere")
    assert not Entry.objects.exists()


def test_a_credit_past_the_int64_range_is_invalid_and_changes_nothing(account):
    with pytest.raises(InvalidRequest) as caught:
        credit(account_id=1, amount=MAX_INT64 - 99, idempotency_key="too-much")

    assert caught.value.outcome == "invalid_request" and "amount" in caught.value.fields
    assert balance() == 100 and not Entry.objects.exists()
    assert credit(account_id=1, amount=MAX_INT64 - 100, idempotency_key="exactly").balance_after == MAX_INT64


def test_a_reverse_gives_the_consumption_back_and_answers_under_its_key(account):
    spent = consume(account_id=1, amount=30, idempotency_key="order-1")

    result = reverse(idempotency_key="order-1")

    reversal = Entry.objects.get(kind="reversal")
    assert result.to_dict() == {
        "status": "applied", "kind": "reversal", "entry_id": reversal.id, "account_id": 1, "amount": 30,
        "idempotency_key": "order-1", "balance_after": 100, "created_at": reversal.created_at.isoformat(),
        "reverses": "order-1",
    }
    assert balance() == 100
    assert (reversal.idempotency_key, reversal.target_id, reversal.seq) == (None, spent.consumption_id, 2)


def test_a_retried_reverse_is_replayed_and_gives_back_once(account):
    consume(account_id=1, amount=30, idempotency_key="order-1")
    first = reverse(idempotency_key="order-1")
    consume(account_id=1, amount=50, idempotency_key="order-2")

    again = reverse(idempotency_key="order-1")

    assert again.status == "replayed" and {**again.to_dict(), "status": "applied"} == first.to_dict()
    assert balance() == 50 and Entry.objects.filter(kind="reversal").count() == 1


def test_the_consume_replayed_after_its_reversal_answers_its_original_result(account):
    first = consume(account_id=1, amount=30, idempotency_key="order-1")
    reverse(idempotency_key="order-1")

    again = consume(account_id=1, amount=30, idempotency_key="order-1")

    assert again.status == "replayed" and {**again.to_dict(), "status": "applied"} == first.to_dict()
    assert balance() == 100


def test_a_reverse_of_an_unknown_key_or_another_clients_key_is_not_found(account):
    shop = Client.objects.create(name="shop", scopes=["consume", "credit"])
    consume(account_id=1, amount=30, idempotency_key="theirs", client_id=shop.id)

    for key, client in (("nobody-sent-this", None), ("theirs", None)):
        with pytest.raises(KeyNotFound) as caught:
            reverse(idempotency_key=key, **({} if client is None else {"client_id": client}))
        assert caught.value.outcome == "key_not_found"
    assert reverse(idempotency_key="theirs", client_id=shop.id).status == "applied"
    assert balance() == 100


def test_a_reverse_of_a_credit_is_an_invalid_state_and_changes_nothing(account):
    credit(account_id=1, amount=5, idempotency_key="gift")

    with pytest.raises(InvalidState) as caught:
        reverse(idempotency_key="gift")

    assert caught.value.outcome == "invalid_state" and "credit" in caught.value.detail
    assert balance() == 105 and Entry.objects.count() == 1


def test_a_reverse_past_the_int64_range_is_invalid_and_changes_nothing(account):
    consume(account_id=1, amount=30, idempotency_key="order-1")
    credit(account_id=1, amount=MAX_INT64 - 80, idempotency_key="fill")

    with pytest.raises(InvalidRequest):
        reverse(idempotency_key="order-1")

    assert balance() == MAX_INT64 - 10 and not Entry.objects.filter(kind="reversal").exists()


def test_the_database_refuses_a_second_reversal_and_a_reversal_with_a_key_of_its_own(account):
    spent = consume(account_id=1, amount=30, idempotency_key="order-1")
    reverse(idempotency_key="order-1")
    fields = dict(account_id=1, client_id=1, kind="reversal", amount=30, balance_after=130, seq=3)

    with pytest.raises(IntegrityError, match="energy_entry_one_reversal_per_target"), transaction.atomic():
        Entry.objects.create(target_id=spent.consumption_id, **fields)
    with pytest.raises(IntegrityError, match="energy_entry_key_or_target"), transaction.atomic():
        Entry.objects.create(target_id=spent.consumption_id, idempotency_key="own", **{**fields, "seq": 4})
    with pytest.raises(IntegrityError, match="energy_entry_kind_known"), transaction.atomic():
        Entry.objects.create(idempotency_key="odd", **{**fields, "kind": "gift", "seq": 5})
    with pytest.raises(IntegrityError, match="energy_entry_account_seq_unique"), transaction.atomic():
        Entry.objects.create(idempotency_key="twice-at-2", **{**fields, "kind": "credit", "seq": 2})


def test_show_finds_an_entry_of_any_kind_by_its_key(account):
    credit(account_id=1, amount=5, idempotency_key="gift")
    spent = consume(account_id=1, amount=30, idempotency_key="order-1")
    reverse(idempotency_key="order-1")

    assert get_record(client_id=1, idempotency_key="gift").to_dict()["kind"] == "credit"
    # A key names the request sent with it: the consumption, though it has been reversed since.
    assert get_record(client_id=1, idempotency_key="order-1").to_dict() == spent.to_dict()


def test_history_lists_every_kind_newest_first_in_the_order_applied(account):
    consume(account_id=1, amount=30, idempotency_key="a")
    credit(account_id=1, amount=50, idempotency_key="b")
    reverse(idempotency_key="a")
    consume(account_id=1, amount=10, idempotency_key="c")

    body = account_history(account_id=1).to_dict()

    assert [(e["kind"], e["idempotency_key"], e["balance_after"]) for e in body["entries"]] == [
        ("consume", "c", 140), ("reversal", "a", 150), ("credit", "b", 120), ("consume", "a", 70)]
    assert [e["idempotency_key"] for e in body["consumptions"]] == ["c", "a"]
    assert body["entries"][1]["reverses"] == "a" and all(e["client"] == "operator" for e in body["entries"])


def test_history_pages_run_from_numbered_entries_into_those_recorded_before_numbering(account):
    """Entries from before the migration (seq NULL) are older than every numbered one, in balance_after order."""
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after,"
                       " created_at) VALUES (1, 1, 20, 'old-2', 70, now()), (1, 1, 10, 'old-1', 90, now())")
    Account.objects.filter(pk=1).update(energy=70)
    credit(account_id=1, amount=5, idempotency_key="new-1")
    consume(account_id=1, amount=15, idempotency_key="new-2")

    keys, before = [], None
    while True:
        page = account_history(account_id=1, limit=1, before=before)
        keys += [e.result.idempotency_key for e in page.entries]
        if not page.more:
            break
        before = page.entries[-1].result.entry_id

    assert keys == ["new-2", "new-1", "old-2", "old-1"]
    assert audit_ledger().clean


def test_apply_many_applies_every_kind_in_order(account):
    requests = [ConsumeRequest(1, 60, "a"), ConsumeRequest(1, 60, "b"), ReverseRequest("a"),
                ConsumeRequest(1, 60, "c"), CreditRequest(1, 1, "d"), ReverseRequest("d"), ReverseRequest("zz")]

    outcomes = apply_many(requests)

    assert [o.outcome for o in outcomes] == ["applied", "insufficient_energy", "applied", "applied", "applied",
                                             "invalid_state", "key_not_found"]
    assert balance() == 41 and audit_ledger().clean


def test_each_credit_and_reverse_logs_one_structured_record(account):
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("energy.ledger")
    logger.addHandler(handler)
    try:
        credit(account_id=1, amount=5, idempotency_key="gift")
        with pytest.raises(InvalidState):
            reverse(idempotency_key="gift", channel="http")
    finally:
        logger.removeHandler(handler)
    assert [(r.getMessage(), r.idempotency_key, r.channel, r.outcome) for r in records] == [
        ("credit applied", "gift", "cli", "applied"), ("reverse invalid_state", "gift", "http", "invalid_state")]


# --- The use cases held to the rule, over generated request sequences ---------------------------

KEYS = "abcdef"
generated = st.lists(st.one_of(
    st.builds(ConsumeRequest, st.sampled_from([1, 2]), st.integers(1, 40), st.sampled_from(KEYS)),
    st.builds(CreditRequest, st.sampled_from([1, 2, 3]), st.integers(1, 40), st.sampled_from(KEYS)),
    st.builds(ReverseRequest, st.sampled_from(KEYS)),
), max_size=25)


def expected_outcomes(requests, balances):
    """What the rule answers, request by request, with facts kept in memory instead of a database."""
    by_key, reversed_, answers = {}, {}, []
    for request in requests:
        earlier = by_key.get(request.idempotency_key)
        if isinstance(request, ReverseRequest):
            account = earlier.account_id if earlier else None
        else:
            account = request.account_id
        decision = decide(request, earlier=earlier, balance=balances.get(account),
                          reversal=reversed_.get(request.idempotency_key))
        if isinstance(decision, Apply):
            balances[account] = decision.balance_after
            record = Record(0, account, earlier.amount if isinstance(request, ReverseRequest) else request.amount,
                            request.idempotency_key, decision.balance_after, None, request.kind)
            (reversed_ if isinstance(request, ReverseRequest) else by_key)[request.idempotency_key] = record
            answers.append(("applied", decision.balance_after))
        elif isinstance(decision, Replay):
            answers.append(("replayed", decision.earlier.balance_after))
        else:
            answers.append((decision.error.outcome, None))
    return answers, balances


def through_use_cases(request):
    try:
        if isinstance(request, ConsumeRequest):
            result = consume(account_id=request.account_id, amount=request.amount,
                             idempotency_key=request.idempotency_key)
        elif isinstance(request, CreditRequest):
            result = credit(account_id=request.account_id, amount=request.amount,
                            idempotency_key=request.idempotency_key)
        else:
            result = reverse(idempotency_key=request.idempotency_key)
    except EnergyError as exc:
        return exc.outcome, None
    return result.status, result.balance_after


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=generated)
def test_the_use_cases_answer_every_sequence_as_the_rule_does(requests):
    Entry.objects.all().delete()
    Account.objects.all().delete()
    Account.objects.bulk_create([Account(id=1, energy=50, opening_energy=50),
                                 Account(id=2, energy=0, opening_energy=0)])

    expected, balances = expected_outcomes(requests, {1: 50, 2: 0})

    assert [through_use_cases(r) for r in requests] == expected
    assert dict(Account.objects.values_list("id", "energy")) == balances
    report = audit_ledger()
    assert report.clean, report.violations
