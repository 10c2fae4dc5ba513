"""Concurrency claims, tested with real OS processes against real PostgreSQL."""

import pytest
from django.db.models import Sum

from energy.models import Account, Entry
from tests.workers import run_in_processes

# Every test here runs several OS processes.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
PROCESSES = 8


def test_distinct_keys_never_overdraw_and_balance_matches_records():
    Account.objects.create(id=1, energy=1_000, opening_energy=1_000)
    # 8 processes x 20 requests x 7 energy = 1,120 asked of 1,000: some must be refused.
    outcomes = run_in_processes(
        [[(1, 7, f"p{p}-r{r}") for r in range(20)] for p in range(PROCESSES)]
    )
    applied = [o for o in outcomes if o["status"] == "applied"]
    refused = [o for o in outcomes if o.get("error") == "insufficient_energy"]
    assert len(applied) + len(refused) == len(outcomes) == 160
    final = Account.objects.get(pk=1).energy
    recorded = Entry.objects.aggregate(total=Sum("amount"))["total"]
    assert final >= 0
    assert final == 1_000 - recorded
    assert len(applied) == Entry.objects.count() == 1_000 // 7
    # Each applied result saw a distinct balance: the lock serialised them.
    assert sorted(o["balance_after"] for o in applied) == [1_000 - 7 * n for n in range(len(applied), 0, -1)]


def test_same_key_from_many_processes_applies_exactly_once():
    Account.objects.create(id=1, energy=100, opening_energy=100)
    outcomes = run_in_processes([[(1, 30, "the-one-key")] for _ in range(PROCESSES)])
    statuses = sorted(o["status"] for o in outcomes)
    assert statuses == ["applied"] + ["replayed"] * (PROCESSES - 1)
    bodies = {tuple(sorted((k, v) for k, v in o.items() if k != "status")) for o in outcomes}
    assert len(bodies) == 1, "every copy must get the identical original result"
    assert Account.objects.get(pk=1).energy == 70
    assert Entry.objects.count() == 1


def test_same_key_for_different_accounts_applies_once_and_rest_mismatch():
    Account.objects.bulk_create([Account(id=i, energy=100, opening_energy=100) for i in range(1, PROCESSES + 1)])
    outcomes = run_in_processes([[(p + 1, 10, "shared")] for p in range(PROCESSES)])
    applied = [o for o in outcomes if o["status"] == "applied"]
    assert len(applied) == 1
    assert sorted(o.get("error") for o in outcomes if o["status"] != "applied") == (
        ["idempotency_key_mismatch"] * (PROCESSES - 1))
    assert Entry.objects.count() == 1
    assert Account.objects.aggregate(total=Sum("energy"))["total"] == 100 * PROCESSES - 10


def test_retry_storm_of_mixed_keys_applies_each_key_once():
    Account.objects.bulk_create([Account(id=i, energy=500, opening_energy=500) for i in (1, 2, 3)])
    # Every process sends the same 30 keys over three accounts, in its own order.
    base = [((k % 3) + 1, 5 + k % 4, f"storm-{k}") for k in range(30)]
    outcomes = run_in_processes([base[p:] + base[:p] for p in range(PROCESSES)])
    by_key = {}
    for o in outcomes:
        by_key.setdefault(o["idempotency_key"], []).append(o)
    for key, answers in by_key.items():
        assert sorted(a["status"] for a in answers) == ["applied"] + ["replayed"] * (PROCESSES - 1), key
        assert len({a["consumption_id"] for a in answers}) == 1
    assert Entry.objects.count() == 30
    for account in Account.objects.all():
        spent = Entry.objects.filter(account=account).aggregate(t=Sum("amount"))["t"]
        assert account.energy == 500 - spent >= 0


def test_workers_that_never_wait_for_each_other_fail_the_overlap_check():
    """The line-up is what proves overlap: workers that never queue on a lock cannot pass it."""
    Account.objects.create(id=1, energy=100, opening_energy=100)
    # No such account: nothing to lock, so no worker ever waits and each just finishes.
    with pytest.raises(AssertionError, match="not all seen waiting at the same time: only 0 of 2 backends"):
        run_in_processes([[(99, 1, "nowhere-1")], [(99, 1, "nowhere-2")]])
