"""The one decision rule, pure: no database, no Django."""

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from energy.domain.decision import Apply, Pending, Record, Refuse, Replay, decide, plan
from energy.domain.requests import MAX_INT64, ConsumeRequest, CreditRequest, ReverseRequest

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
