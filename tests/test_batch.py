"""consume_many: the same outcome per request as consuming one by one, and exactly once under concurrency."""

import random

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energy.application import batch
from energy.application.batch import consume_many
from energy.application.consume import consume
from energy.domain.exceptions import EnergyError
from energy.domain.requests import ConsumeRequest
from energy.models import Account, Entry

pytestmark = pytest.mark.django_db(transaction=True)

# Small balances, a drained account and a missing one (4), and few keys: so that lists of a
# few dozen requests run into every outcome, replays of keys earlier in the same list included.
STARTING = {1: 60, 2: 15, 3: 0}
KEYS = ["a", "b", "c", "d", "e", "f", "g", "ключ"]
requests_lists = st.lists(
    st.builds(ConsumeRequest, st.sampled_from([1, 2, 3, 4]), st.integers(1, 25), st.sampled_from(KEYS)),
    max_size=40,
)
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reset(applied_before):
    Entry.objects.all().delete()
    Account.objects.all().delete()
    Account.objects.bulk_create([Account(id=i, energy=e, opening_energy=e) for i, e in STARTING.items()])
    for request in applied_before:
        one_by_one([request])


def one_by_one(requests):
    outcomes = []
    for r in requests:
        try:
            outcomes.append(consume(account_id=r.account_id, amount=r.amount, idempotency_key=r.idempotency_key))
        except EnergyError as exc:
            outcomes.append(exc)
    return outcomes


def comparable(outcome):
    """What must agree: the outcome and every field but the record's id and time."""
    if isinstance(outcome, EnergyError):
        return (outcome.outcome, getattr(outcome, "balance", None), getattr(outcome, "account_id", None))
    return (outcome.status, outcome.account_id, outcome.amount, outcome.idempotency_key, outcome.balance_after)


def state():
    balances = dict(Account.objects.values_list("id", "energy"))
    records = set(Entry.objects.values_list("idempotency_key", "account_id", "amount", "balance_after"))
    return balances, records


def replays_point_at_their_original(outcomes):
    originals = dict(Entry.objects.values_list("idempotency_key", "id"))
    for outcome in outcomes:
        if not isinstance(outcome, EnergyError):
            assert outcome.consumption_id == originals[outcome.idempotency_key], outcome


@pytest.mark.parametrize("chunk_size", [3, batch.CHUNK_SIZE])
def test_batch_answers_like_one_by_one_for_any_request_list(chunk_size, monkeypatch):
    monkeypatch.setattr(batch, "CHUNK_SIZE", chunk_size)

    @EXAMPLES
    @given(before=requests_lists.map(lambda rs: rs[:5]), requests=requests_lists)
    def same_as_one_by_one(before, requests):
        reset(before)
        expected = one_by_one(requests)
        expected_state = state()
        reset(before)
        got = consume_many(requests)
        assert [comparable(o) for o in got] == [comparable(o) for o in expected], requests
        assert state() == expected_state
        replays_point_at_their_original(got)

    same_as_one_by_one()


def test_batch_outcomes_cover_every_kind():
    Account.objects.bulk_create([Account(id=i, energy=e, opening_energy=e) for i, e in STARTING.items()])
    consume(account_id=1, amount=5, idempotency_key="old")
    requests = [
        ConsumeRequest(1, 10, "new"),       # applied
        ConsumeRequest(1, 10, "new"),       # replay of a key earlier in the same batch
        ConsumeRequest(2, 10, "new"),       # mismatch with a key earlier in the same batch
        ConsumeRequest(1, 5, "old"),        # replay of a key applied before
        ConsumeRequest(1, 6, "old"),        # mismatch with a key applied before
        ConsumeRequest(2, 16, "greedy"),    # insufficient energy
        ConsumeRequest(2, 15, "greedy"),    # the same key, afresh, now fits
        ConsumeRequest(2, 1, "empty"),      # insufficient: the previous request drained it
        ConsumeRequest(4, 1, "nobody"),     # missing account
    ]
    got = consume_many(requests)
    assert [o.outcome for o in got] == [
        "applied", "replayed", "idempotency_key_mismatch", "replayed", "idempotency_key_mismatch",
        "insufficient_energy", "applied", "insufficient_energy", "account_not_found",
    ]
    assert (got[0].balance_after, got[6].balance_after) == (45, 0)
    assert got[1].to_dict() == {**got[0].to_dict(), "status": "replayed"}
    assert (got[5].balance, got[7].balance) == (15, 0)
    assert dict(Account.objects.values_list("id", "energy")) == {1: 45, 2: 0, 3: 0}


def test_same_object_twice_in_a_list_is_applied_then_replayed():
    Account.objects.create(id=1, energy=10, opening_energy=10)
    request = ConsumeRequest(1, 4, "twice")
    first, second = consume_many([request, request])
    assert (first.status, second.status) == ("applied", "replayed")
    assert Account.objects.get(pk=1).energy == 6


def test_empty_list_gives_no_outcomes():
    assert consume_many([]) == []


@pytest.mark.slow
def test_batches_and_single_consumes_racing_on_shared_keys_apply_each_key_once():
    """Batches and single consumes, in real processes, send the same keys in different orders."""
    from tests.batch_workers import run_mixed

    rich = {i: 1_000_000 for i in range(1, 6)}
    poor = {6: 100}
    Account.objects.bulk_create([Account(id=i, energy=e, opening_energy=e) for i, e in {**rich, **poor}.items()])
    # 150 keys over the rich accounts, and 30 keys of 7 energy on the poor one: only 14 fit.
    keys = [(1 + k % 5, 1 + k % 9, f"shared-{k}") for k in range(150)]
    keys += [(6, 7, f"poor-{k}") for k in range(30)]
    orders = [random.Random(seed).sample(keys, len(keys)) for seed in range(4)]
    outcomes = run_mixed([("batch", orders[0], 7), ("batch", orders[1], 50),
                                      ("single", orders[2]), ("single", orders[3])])
    by_key = {}
    for o in outcomes:
        by_key.setdefault(o["idempotency_key"], []).append(o)
    assert len(by_key) == len(keys)
    for key, answers in by_key.items():
        statuses = sorted(a["status"] if a["status"] != "error" else a["error"] for a in answers)
        expected = (["applied", "replayed", "replayed", "replayed"], ["insufficient_energy"] * 4)
        assert statuses in expected, (key, answers)
        assert len({a.get("consumption_id") for a in answers}) == 1, (key, answers)
    assert Entry.objects.count() == sum(1 for a in by_key.values() if a[0]["status"] != "error")
    assert Entry.objects.filter(account_id=6).count() == 100 // 7
    for account in Account.objects.all():
        spent = Entry.objects.filter(account=account).aggregate(t=Sum("amount"))["t"] or 0
        assert account.energy == {**rich, **poor}[account.id] - spent >= 0


@pytest.mark.slow
def test_chunk_stuck_behind_a_held_lock_is_unavailable_and_its_retry_applies_once():
    from tests.workers import row_lock_held

    Account.objects.bulk_create([Account(id=1, energy=100, opening_energy=100),
                                 Account(id=2, energy=100, opening_energy=100)])
    requests = [ConsumeRequest(2, 5, "free"), ConsumeRequest(1, 10, "stuck")]
    with row_lock_held(account_id=1):
        outcomes = consume_many(requests)
    assert [o.outcome for o in outcomes] == ["unavailable", "unavailable"]
    assert not Entry.objects.exists()
    assert [o.status for o in consume_many(requests)] == ["applied", "applied"]
    assert [o.status for o in consume_many(requests)] == ["replayed", "replayed"]
    assert dict(Account.objects.values_list("id", "energy")) == {1: 90, 2: 95}


def test_a_batch_runs_on_djangos_cursor_and_a_batch_of_replays_locks_nothing():
    """Every batch statement is seen by CaptureQueriesContext; replays need only the records lookup."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    Account.objects.create(id=1, energy=100, opening_energy=100)
    requests = [ConsumeRequest(1, 5, "q1"), ConsumeRequest(1, 5, "q2")]
    with CaptureQueriesContext(connection) as first:
        consume_many(requests)
    with CaptureQueriesContext(connection) as again:
        assert [o.status for o in consume_many(requests)] == ["replayed", "replayed"]

    def sent(captured):
        return [q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]

    first_sql, again_sql = sent(first), sent(again)
    assert len(first_sql) == 5, first_sql  # plan mode, stored records, lock, insert, deduct
    assert any("FOR UPDATE" in sql for sql in first_sql)
    assert len(again_sql) == 2, again_sql  # plan mode, stored records
    assert not any("FOR UPDATE" in sql or "INSERT" in sql or "UPDATE " in sql for sql in again_sql), again_sql


def test_a_batch_logs_its_outcomes_and_the_channel_it_came_by(caplog):
    import logging

    reset([])
    caplog.set_level(logging.INFO, logger="energy")
    consume_many([ConsumeRequest(1, 5, "a"), ConsumeRequest(4, 1, "b"), ConsumeRequest(1, 5, "a")])
    consume_many([ConsumeRequest(2, 5, "c")], channel="http")
    records = [r for r in caplog.records if r.name == "energy.consume"]
    assert [(r.channel, r.outcomes) for r in records] == [
        ("cli", {"applied": 1, "account_not_found": 1, "replayed": 1}),
        ("http", {"applied": 1}),
    ]
