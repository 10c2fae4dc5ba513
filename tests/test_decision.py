"""The one decision rule, pure: no database, no Django."""

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy.domain.decision import Apply, Pending, Record, Refuse, Replay, decide, plan
from energy.domain.requests import (
    MAX_INT64,
    CaptureRequest,
    ConsumeRequest,
    CreditRequest,
    HoldRequest,
    ReverseRequest,
    VoidRequest,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def record(account_id, amount, key, balance_after=0):
    return Record(7, account_id, amount, key, balance_after, NOW)


def test_a_known_key_with_the_same_request_is_a_replay_whatever_the_balance():
    earlier = record(1, 30, "k")
    assert decide(ConsumeRequest(1, 30, "k"), earlier=earlier, balance=0) == Replay(earlier)
    assert decide(ConsumeRequest(1, 30, "k"), earlier=earlier, balance=None) == Replay(earlier)


def test_a_known_key_with_another_account_or_amount_is_a_mismatch_before_anything_else():
    for request in (ConsumeRequest(1, 31, "k"), ConsumeRequest(2, 30, "k")):
        decision = decide(request, earlier=record(1, 30, "k"), balance=None)
        assert isinstance(decision, Refuse) and decision.error.outcome == "idempotency_key_mismatch"


def test_a_new_key_on_a_missing_account_is_not_found():
    decision = decide(ConsumeRequest(9, 1, "k"), earlier=None, balance=None)
    assert isinstance(decision, Refuse) and decision.error.outcome == "account_not_found"


def test_too_little_energy_is_refused_and_says_how_much_there_was():
    decision = decide(ConsumeRequest(1, 11, "k"), earlier=None, balance=10)
    assert isinstance(decision, Refuse) and decision.error.outcome == "insufficient_energy"
    assert (decision.error.balance, decision.error.amount) == (10, 11)


def test_enough_energy_is_applied_down_to_zero():
    assert decide(ConsumeRequest(1, 10, "k"), earlier=None, balance=10) == Apply(0)


def test_a_plan_sees_what_earlier_requests_of_the_list_applied():
    requests = [ConsumeRequest(1, 6, "a"), ConsumeRequest(1, 6, "a"), ConsumeRequest(1, 5, "a"),
                ConsumeRequest(1, 6, "b"), ConsumeRequest(1, 4, "c"), ConsumeRequest(1, 30, "old")]
    old = record(1, 30, "old")
    decisions = plan(requests, stored={"old": old}, balances={1: 10})
    assert decisions[0] == Apply(4)
    assert decisions[1] == Replay(Pending(0, 1, 6))
    assert decisions[2].error.outcome == "idempotency_key_mismatch"
    assert decisions[3].error.outcome == "insufficient_energy" and decisions[3].error.balance == 4
    assert decisions[4] == Apply(0)
    assert decisions[5] == Replay(old)


requests = st.lists(st.builds(ConsumeRequest, st.sampled_from([1, 2, 3]), st.integers(1, 12),
                              st.sampled_from("abcdef")), max_size=30)


@settings(max_examples=300)
@given(requests=requests, stored=st.dictionaries(st.sampled_from("abc"), st.tuples(st.sampled_from([1, 2]),
                                                                                   st.integers(1, 12))))
def test_a_plan_decides_like_the_rule_applied_one_request_at_a_time(requests, stored):
    """plan() is decide() in a loop that remembers balances and keys: checked against that loop."""
    records = {key: record(account, amount, key) for key, (account, amount) in stored.items()}
    balances = {1: 20, 2: 5}
    got = plan(requests, stored=records, balances=balances)
    known, left = dict(records), dict(balances)
    for position, (request, decision) in enumerate(zip(requests, got, strict=True)):
        expected = decide(request, earlier=known.get(request.idempotency_key), balance=left.get(request.account_id))
        if isinstance(expected, Apply):
            left[request.account_id] = expected.balance_after
            known[request.idempotency_key] = record(request.account_id, request.amount, request.idempotency_key)
        if isinstance(decision, Replay) and isinstance(decision.earlier, Pending):
            assert requests[decision.earlier.position].idempotency_key == request.idempotency_key
            assert isinstance(expected, Replay)
        elif isinstance(decision, Refuse):
            assert isinstance(expected, Refuse) and expected.error.outcome == decision.error.outcome
        else:
            assert decision == expected, (position, request)


# --- Credit and reverse: the same rule, grown to the kinds --------------------------------------

def entry(kind, account_id, amount, key, balance_after=0):
    return Record(8, account_id, amount, key, balance_after, NOW, kind)


def outcome(decision):
    return decision.error.outcome if isinstance(decision, Refuse) else type(decision).__name__


def test_a_key_names_one_request_whatever_its_kind():
    """The same key, account and amount sent as another kind is a mismatch, both ways."""
    credited, consumed = entry("credit", 1, 30, "k"), entry("consume", 1, 30, "k")
    assert outcome(decide(ConsumeRequest(1, 30, "k"), earlier=credited, balance=100)) == "idempotency_key_mismatch"
    assert outcome(decide(CreditRequest(1, 30, "k"), earlier=consumed, balance=100)) == "idempotency_key_mismatch"
    assert decide(CreditRequest(1, 30, "k"), earlier=credited, balance=0) == Replay(credited)
    assert outcome(decide(CreditRequest(1, 31, "k"), earlier=credited, balance=0)) == "idempotency_key_mismatch"


def test_a_credit_raises_the_balance_up_to_the_largest_int64_and_not_past_it():
    assert decide(CreditRequest(1, 5, "k"), earlier=None, balance=10) == Apply(15)
    assert decide(CreditRequest(1, 5, "k"), earlier=None, balance=MAX_INT64 - 5) == Apply(MAX_INT64)
    refused = decide(CreditRequest(1, 6, "k"), earlier=None, balance=MAX_INT64 - 5)
    assert outcome(refused) == "invalid_request" and "amount" in refused.error.fields
    assert outcome(decide(CreditRequest(9, 5, "k"), earlier=None, balance=None)) == "account_not_found"


def test_a_reverse_gives_back_the_consumption_once_and_replays_after():
    consumed = entry("consume", 1, 30, "k")
    assert decide(ReverseRequest("k"), earlier=consumed, balance=70) == Apply(100)
    reversal = entry("reversal", 1, 30, "k", balance_after=100)
    # Replayed whatever the balance is now, even one that could no longer take the amount back.
    assert decide(ReverseRequest("k"), earlier=consumed, balance=MAX_INT64, reversal=reversal) == Replay(reversal)


def test_a_reverse_of_nothing_is_not_found_and_of_a_credit_an_invalid_state():
    assert outcome(decide(ReverseRequest("k"), earlier=None, balance=None)) == "key_not_found"
    assert outcome(decide(ReverseRequest("k"), earlier=entry("credit", 1, 5, "k"), balance=5)) == "invalid_state"


def test_a_reverse_that_would_pass_the_largest_int64_is_invalid():
    refused = decide(ReverseRequest("k"), earlier=entry("consume", 1, 30, "k"), balance=MAX_INT64 - 29)
    assert outcome(refused) == "invalid_request"


def test_a_plan_of_consumes_sees_a_credit_stored_under_its_key_as_a_mismatch():
    decisions = plan([ConsumeRequest(1, 5, "c"), ConsumeRequest(1, 5, "n")],
                     stored={"c": entry("credit", 1, 5, "c")}, balances={1: 10})
    assert outcome(decisions[0]) == "idempotency_key_mismatch" and decisions[1] == Apply(5)


# --- Holds: the same rule, with held beside energy ------------------------------------------------

def a_hold(amount=30, key="h", state="open", lifetime=900, account_id=1):
    return Record(9, account_id, amount, key, 70, NOW, "hold", amount, NOW + timedelta(seconds=lifetime), state)


def resolution(kind, amount, key="h"):
    return Record(10, 1, amount, key, 0, NOW, kind)


def test_a_hold_moves_energy_to_held_and_is_refused_like_a_consume_when_there_is_too_little():
    assert decide(HoldRequest(1, 30, "h"), earlier=None, balance=100, held=5) == Apply(70, 35)
    refused = decide(HoldRequest(1, 31, "h"), earlier=None, balance=30, held=70)
    assert outcome(refused) == "insufficient_energy" and refused.error.balance == 30
    assert outcome(decide(HoldRequest(9, 1, "h"), earlier=None, balance=None)) == "account_not_found"


def test_a_hold_replays_only_the_same_account_amount_and_lifetime():
    earlier = a_hold(lifetime=600)
    assert decide(HoldRequest(1, 30, "h", 600), earlier=earlier, balance=0) == Replay(earlier)
    for other in (HoldRequest(1, 30, "h", 900), HoldRequest(1, 31, "h", 600), HoldRequest(2, 30, "h", 600),
                  ConsumeRequest(1, 30, "h"), CreditRequest(1, 30, "h")):
        assert outcome(decide(other, earlier=earlier, balance=100)) == "idempotency_key_mismatch", other
    assert outcome(decide(HoldRequest(1, 30, "c"), earlier=entry("consume", 1, 30, "c"),
                          balance=100)) == "idempotency_key_mismatch"


def test_a_capture_spends_part_of_the_hold_and_returns_the_rest():
    assert decide(CaptureRequest("h", 20), earlier=a_hold(), balance=70, held=30) == Apply(80, 0)
    assert decide(CaptureRequest("h"), earlier=a_hold(), balance=70, held=45) == Apply(70, 15)


def test_a_void_returns_the_whole_hold():
    assert decide(VoidRequest("h"), earlier=a_hold(), balance=70, held=30) == Apply(100, 0)


@pytest.mark.parametrize("request_, resolved, expected", [
    (CaptureRequest("h", 20), "capture:20", "Replay"),
    (CaptureRequest("h"), "capture:30", "Replay"),
    (CaptureRequest("h", 30), "capture:30", "Replay"),
    (CaptureRequest("h", 10), "capture:20", "idempotency_key_mismatch"),
    (CaptureRequest("h"), "capture:20", "idempotency_key_mismatch"),
    (CaptureRequest("h", 20), "void:30", "invalid_state"),
    (VoidRequest("h"), "void:30", "Replay"),
    (VoidRequest("h"), "capture:20", "invalid_state"),
])
def test_a_resolved_hold_replays_the_same_resolution_and_refuses_any_other(request_, resolved, expected):
    kind, amount = resolved.split(":")
    state = "captured" if kind == "capture" else "voided"
    done = resolution(kind, int(amount))
    # Whatever the balances are now: a replay answers the original.
    decision = decide(request_, earlier=a_hold(state=state), balance=0, held=0, resolution=done)
    assert outcome(decision) == expected
    if expected == "Replay":
        assert decision == Replay(done)


@pytest.mark.parametrize("request_", [CaptureRequest("h"), CaptureRequest("h", 1), VoidRequest("h")])
def test_an_expired_hold_can_be_neither_captured_nor_voided(request_):
    refused = decide(request_, earlier=a_hold(state="expired"), balance=100, held=0)
    assert outcome(refused) == "invalid_state" and "expired hold" in refused.error.detail


@pytest.mark.parametrize("request_", [CaptureRequest("k"), VoidRequest("k")])
def test_capture_and_void_of_nothing_are_not_found_and_of_anything_but_a_hold_an_invalid_state(request_):
    assert outcome(decide(request_, earlier=None, balance=None)) == "key_not_found"
    for kind in ("consume", "credit"):
        assert outcome(decide(request_, earlier=entry(kind, 1, 5, "k"), balance=5)) == "invalid_state"


def test_a_capture_above_the_hold_is_invalid_whatever_became_of_the_hold():
    for state, done in (("open", None), ("voided", resolution("void", 30)), ("captured", resolution("capture", 30))):
        refused = decide(CaptureRequest("h", 31), earlier=a_hold(state=state), balance=70, held=30, resolution=done)
        assert outcome(refused) == "invalid_request" and "amount" in refused.error.fields


def test_a_reverse_of_a_holds_key_gives_back_its_capture_and_nothing_else():
    captured = resolution("capture", 20)
    assert decide(ReverseRequest("h"), earlier=a_hold(state="captured"), balance=80, held=0,
                  resolution=captured) == Apply(100, 0)
    reversal = entry("reversal", 1, 20, "h", balance_after=100)
    assert decide(ReverseRequest("h"), earlier=captured, balance=0, reversal=reversal) == Replay(reversal)
    for state, done in (("open", None), ("expired", None), ("voided", resolution("void", 30))):
        refused = decide(ReverseRequest("h"), earlier=a_hold(state=state), balance=70, held=30, resolution=done)
        assert outcome(refused) == "invalid_state" and f"{state} hold" in refused.error.detail


def test_a_credit_or_reversal_counts_what_is_held_against_the_largest_int64():
    assert decide(CreditRequest(1, 5, "k"), earlier=None, balance=MAX_INT64 - 15, held=10) == Apply(MAX_INT64 - 10, 10)
    refused = decide(CreditRequest(1, 6, "k"), earlier=None, balance=MAX_INT64 - 15, held=10)
    assert outcome(refused) == "invalid_request"
    refused = decide(ReverseRequest("k"), earlier=entry("consume", 1, 30, "k"), balance=MAX_INT64 - 40, held=20)
    assert outcome(refused) == "invalid_request"


def a_request(kind, amount, key):
    """Keys of holds are shared by hold, capture and void; consumes and credits get keys of their own."""
    if kind == "hold":
        return HoldRequest(1, amount, key)
    if kind == "capture":
        return CaptureRequest(key, amount)
    if kind == "void":
        return VoidRequest(key)
    return (ConsumeRequest if kind == "consume" else CreditRequest)(1, amount, f"{kind}-{key}-{amount}")


@settings(max_examples=300)
@given(ops=st.lists(st.tuples(st.sampled_from(["hold", "capture", "void", "expire", "consume", "credit"]),
                              st.integers(1, 40), st.sampled_from("abcd")), max_size=40))
def test_the_rule_keeps_energy_and_held_whole_over_any_sequence(ops):
    """Carried out as the use cases do, every sequence keeps energy >= 0, held = the open holds, and
    energy + held = opening + credits - consumptions - captures."""
    energy, held, opening, credits, spent = 100, 0, 100, 0, 0
    holds: dict[str, Record] = {}
    resolutions: dict[str, Record] = {}
    for kind, amount, key in ops:
        if kind == "expire":
            hold = holds.get(key)
            if hold is not None and hold.state == "open":
                holds[key] = hold._replace(state="expired")
                energy, held = energy + hold.amount, held - hold.amount
            continue
        request = a_request(kind, amount, key)
        earlier = holds.get(key) if kind in ("hold", "capture", "void") else None
        decision = decide(request, earlier=earlier, balance=energy, held=held, resolution=resolutions.get(key))
        if not isinstance(decision, Apply):
            continue
        if kind == "hold":
            holds[key] = a_hold(amount, key)._replace(state="open")
        elif kind in ("capture", "void"):
            spend = amount if kind == "capture" else 0
            resolutions[key] = resolution(kind, spend or holds[key].amount, key)
            holds[key] = holds[key]._replace(state="captured" if kind == "capture" else "voided")
            spent += spend
        elif kind == "consume":
            spent += amount
        else:
            credits += amount
        energy, held = decision.balance_after, decision.held_after
        assert energy >= 0 and held == sum(h.amount for h in holds.values() if h.state == "open")
        assert energy + held == opening + credits - spent
