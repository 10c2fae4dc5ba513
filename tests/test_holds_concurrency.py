"""Holds under concurrency: real OS processes on real PostgreSQL, seen overlapping.

Each test holds the account's row lock on a connection of its own, hands every process its
work, and lets go only once ``pg_blocking_pids()`` shows every one of them waiting for that
lock: they provably ran at the same time, then race for real. Capture, void and expiry of one
hold are serialized by that lock; exactly one of them resolves the hold.

The processes (``tests.support.Session``) run this module's ``COMMANDS``, so it imports no
Django model at top level.
"""

from __future__ import annotations

import time

import pytest

from tests.support import POLL_INTERVAL_S, patient_sessions, race, test_database_url, wait_until_blocked

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The processes wait for the held lock far longer than they take to line up.


# --- What the processes run ----------------------------------------------------------------------

def _ready() -> int:
    from django.db import connection

    connection.ensure_connection()
    return connection.connection.info.backend_pid


def _one(kind: str, *args) -> dict:
    from energy.application import holds
    from energy.application.audit import audit_ledger
    from energy.application.batch import apply_many
    from energy.application.consume import consume
    from energy.domain.exceptions import EnergyError
    from energy.domain.requests import ConsumeRequest

    try:
        if kind == "hold":
            account, amount, key, expires_in = args
            return holds.hold(account_id=account, amount=amount, idempotency_key=key, expires_in=expires_in).to_dict()
        if kind == "capture":
            key, amount = args
            return holds.capture(idempotency_key=key, amount=amount).to_dict()
        if kind == "void":
            return holds.void(idempotency_key=args[0]).to_dict()
        if kind == "expire":
            return {"status": "expired", **holds.expire_holds()}
        if kind == "consume":
            account, amount, key = args
            return consume(account_id=account, amount=amount, idempotency_key=key).to_dict()
        if kind == "batch":
            outcomes = apply_many([ConsumeRequest(*request) for request in args[0]])
            return {"status": "batch", "outcomes": [o.outcome for o in outcomes]}
        if kind == "audit":
            return {"status": "audit", "violations": [v.problem for v in audit_ledger().violations]}
    except EnergyError as exc:
        return {"status": "error", "error": exc.outcome}
    raise ValueError(kind)


def _run(operations: list[tuple]) -> list[dict]:
    """Each of ``operations`` in order; the body or error of each."""
    return [_one(*operation) for operation in operations]


COMMANDS = {"ready": _ready, "run": _run}


# --- The line-up ---------------------------------------------------------------------------------

def account_now() -> tuple[int, int]:
    from energy.models import Account

    return tuple(Account.objects.filter(pk=1).values_list("energy", "held").get())


def open_holds_total() -> int:
    from django.db.models import Sum

    from energy.models import Entry

    return Entry.objects.filter(kind="hold", state="open").aggregate(total=Sum("amount"))["total"] or 0


def hold_state(key: str) -> str:
    from energy.models import Entry

    return Entry.objects.get(idempotency_key=key).state


def assert_audit_clean():
    from energy.application.audit import audit_ledger

    report = audit_ledger()
    assert report.clean, report.violations


def seed(energy: int) -> None:
    from energy.application.accounts import seed_accounts

    seed_accounts(count=1, energy=energy)


def until_the_database_clock_passes(key: str) -> None:
    """Observed on a connection of its own: the database's clock is past the hold's expiry."""
    import psycopg

    with psycopg.connect(test_database_url(), autocommit=True) as conn:
        while not conn.execute("SELECT clock_timestamp() > expires_at FROM energy_consumption"
                               " WHERE idempotency_key = %s", [key]).fetchone()[0]:
            time.sleep(POLL_INTERVAL_S)


# --- The tests -----------------------------------------------------------------------------------

def test_captures_and_voids_racing_on_one_open_hold_resolve_it_exactly_once():
    from energy.application.holds import hold

    seed(100)
    hold(account_id=1, amount=30, idempotency_key="h", expires_in=3600)
    work = [[("capture", "h", 20)]] * 3 + [[("capture", "h", 10)]] + [[("void", "h")]] * 3

    with patient_sessions(len(work), __name__) as sessions:
        answers = [bodies[0] for bodies in race(sessions, work)]

    captures, other_capture, voids = answers[:3], answers[3], answers[4:]
    applied = [a for a in answers if a["status"] == "applied"]
    assert len(applied) == 1, answers
    if applied[0]["kind"] == "capture" and applied[0]["amount"] == 20:
        assert sorted(a["status"] for a in captures) == ["applied", "replayed", "replayed"]
        assert len({tuple(sorted((k, v) for k, v in a.items() if k != "status")) for a in captures}) == 1
        assert other_capture["error"] == "idempotency_key_mismatch"
        assert all(v["error"] == "invalid_state" for v in voids), voids
        assert account_now() == (80, 0) and hold_state("h") == "captured"
    elif applied[0]["kind"] == "capture":
        assert all(c["error"] == "idempotency_key_mismatch" for c in captures), captures
        assert all(v["error"] == "invalid_state" for v in voids), voids
        assert account_now() == (90, 0) and hold_state("h") == "captured"
    else:
        assert sorted(a["status"] for a in voids) == ["applied", "replayed", "replayed"]
        assert all(c["error"] == "invalid_state" for c in (*captures, other_capture)), answers
        assert account_now() == (100, 0) and hold_state("h") == "voided"
    assert_audit_clean()


def test_a_hold_that_expires_while_captures_and_voids_wait_is_resolved_by_none_of_them():
    from energy.application.holds import expire_holds, hold

    seed(100)
    hold(account_id=1, amount=30, idempotency_key="h", expires_in=1)
    work = [[("capture", "h", 20)]] * 2 + [[("void", "h")]] * 2 + [[("consume", 1, 100, "all")]]

    with patient_sessions(len(work), __name__) as sessions:
        # They line up behind the lock before the hold's second is out, most of the time; the
        # lock is let go only once the database's clock has passed its expiry, either way.
        answers = [bodies[0] for bodies in race(
            sessions, work, before_release=lambda holder: until_the_database_clock_passes("h"))]

    assert [a.get("error") for a in answers[:4]] == ["invalid_state"] * 4, answers
    assert (answers[4]["status"], answers[4]["balance_after"]) == ("applied", 0)
    assert account_now() == (0, 0) and hold_state("h") == "expired"
    assert expire_holds() == {"released": 0, "energy": 0, "accounts": 0}
    assert_audit_clean()


def test_an_expired_hold_raced_by_capture_void_expiry_and_consume_is_released_exactly_once():
    from django.db import connection

    from energy.application.holds import hold

    seed(100)
    hold(account_id=1, amount=30, idempotency_key="h")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE energy_consumption SET expires_at = statement_timestamp() WHERE idempotency_key = 'h'")
    work = [[("capture", "h", 30)], [("void", "h")], [("expire",)], [("expire",)], [("consume", 1, 1, "one")]]

    with patient_sessions(len(work), __name__) as sessions:
        answers = [bodies[0] for bodies in race(sessions, work)]

    assert [a.get("error") for a in answers[:2]] == ["invalid_state"] * 2, answers
    assert sum(a["released"] for a in answers[2:4]) in (0, 1)
    assert answers[4]["balance_after"] == 99
    assert account_now() == (99, 0) and hold_state("h") == "expired"
    assert_audit_clean()


def test_a_capture_retried_by_many_processes_captures_once_and_replays_the_original():
    from energy.application.holds import hold

    seed(100)
    hold(account_id=1, amount=50, idempotency_key="h")

    with patient_sessions(6, __name__) as sessions:
        answers = [bodies[0] for bodies in race(sessions, [[("capture", "h", 35)]] * 6)]

    assert sorted(a["status"] for a in answers) == ["applied"] + ["replayed"] * 5, answers
    assert len({tuple(sorted((k, v) for k, v in a.items() if k != "status")) for a in answers}) == 1
    assert (answers[0]["released"], answers[0]["held_after"]) == (15, 0)
    assert account_now() == (65, 0)
    assert_audit_clean()


def test_a_consume_whose_snapshot_missed_an_expired_hold_spends_it_all_the_same():
    """The hold commits while the consume waits for the lock: the consume's statement snapshot
    does not see it, the locked row does (held 10). Refused once, the consume is tried again
    with a fresh snapshot, which releases the hold and spends its energy."""
    import psycopg

    seed(10)
    with patient_sessions(1, __name__) as (session,), psycopg.connect(test_database_url()) as holding:
        # What a hold does in its transaction, with a lifetime already over: not committed yet.
        holding.execute("SELECT FROM energy_account WHERE id = 1 FOR UPDATE")
        holding.execute(
            "INSERT INTO energy_consumption (client_id, account_id, kind, amount, idempotency_key, balance_after,"
            " held_after, seq, state, expires_at, created_at) VALUES (1, 1, 'hold', 10, 'late', 0, 10, 1, 'open',"
            " now() - interval '1 second', now() - interval '2 seconds')")
        holding.execute("UPDATE energy_account SET energy = 0, held = 10, last_seq = 1 WHERE id = 1")
        session.send("run", [("consume", 1, 10, "after-the-hold")])
        wait_until_blocked(1, holder_pid=holding.info.backend_pid)
        holding.commit()
        [answer] = session.receive()

    assert (answer["status"], answer["balance_after"]) == ("applied", 0), answer
    assert account_now() == (0, 0) and hold_state("late") == "expired"
    assert_audit_clean()


def test_holds_captures_voids_expiries_and_consumes_racing_on_one_account_keep_every_invariant():
    from django.db.models import Sum

    from energy.models import Entry

    seed(1_000)
    # Holders: each holds, then captures part of or voids its own holds; some holds live one
    # second and expire during the run. Consumers and a batch spend; one process releases
    # expired holds and audits between its rounds.
    work = []
    for p in range(3):
        operations = []
        for n in range(12):
            key = f"hold-{p}-{n}"
            operations.append(("hold", 1, 10 + n, key, 1 if n % 3 == 0 else 3600))
            if n % 3 == 1:
                operations.append(("capture", key, 5 + n % 5))
            elif n % 3 == 2:
                operations.append(("void", key))
        work.append(operations)
    work += [[("consume", 1, 7, f"consume-{p}-{n}") for n in range(20)] for p in range(2)]
    work += [[("batch", [(1, 3, f"batch-{n}") for n in range(20)])]]
    # Its first request waits for the lock like the others; its rounds then race the rest.
    work += [[("consume", 1, 1, "expirer-start")] + [("expire",), ("audit",)] * 5]

    with patient_sessions(len(work), __name__) as sessions:
        answers = [body for bodies in race(sessions, work) for body in bodies]

    audits = [a for a in answers if a["status"] == "audit"]
    assert audits and all(a["violations"] == [] for a in audits), audits
    assert {a.get("error") for a in answers if a["status"] == "error"} <= {"insufficient_energy", "invalid_state"}
    energy, held = account_now()
    assert energy >= 0 and held == open_holds_total()
    entries = Entry.objects.filter(account_id=1)
    totals = {kind: entries.filter(kind=kind).aggregate(total=Sum("amount"))["total"] or 0
              for kind in ("consume", "capture")}
    assert energy + held == 1_000 - totals["consume"] - totals["capture"]
    assert entries.filter(kind__in=("capture", "void")).count() == entries.filter(
        kind="hold", state__in=("captured", "voided")).count()
    assert_audit_clean()
