"""Credit and reverse under concurrency: real OS processes on real PostgreSQL, seen overlapping
(and, in a process of its own, on SQLite).

Each test holds the account's row lock on a connection of its own, hands every process its
work, and lets go only once ``pg_blocking_pids()`` shows every one of them waiting for that
lock: they provably ran at the same time, then race for real.

The processes (``tests.support.Session``) run this module's ``COMMANDS``, so it imports no
Django model at top level.
"""

from __future__ import annotations

import pytest

from tests.support import Session, patient_sessions, race, test_database_url, wait_until_blocked

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The processes wait for the held lock far longer than they take to line up.


# --- What the processes run ----------------------------------------------------------------------

def _body(use_case, **arguments) -> dict:
    from energy.domain.exceptions import EnergyError

    try:
        return use_case(**arguments).to_dict()
    except EnergyError as exc:
        return {"status": "error", "error": exc.outcome}


def _ready() -> int:
    from django.db import connection

    connection.ensure_connection()
    return connection.connection.info.backend_pid


def _run(operations: list[tuple]) -> list[dict]:
    """Each of ``operations`` in order: ("consume"|"credit", account, amount, key), ("reverse", key) or
    ("batch", [(account, amount, key), ...]) through apply_many; the body or error of each request."""
    from energy.application.batch import apply_many
    from energy.application.consume import consume
    from energy.application.entries import credit, reverse
    from energy.domain.requests import ConsumeRequest

    bodies = []
    for kind, *args in operations:
        if kind == "reverse":
            bodies.append(_body(reverse, idempotency_key=args[0]))
        elif kind == "batch":
            for outcome in apply_many([ConsumeRequest(*request) for request in args[0]]):
                bodies.append(outcome.to_dict() if hasattr(outcome, "to_dict") else
                              {"status": "error", "error": outcome.outcome})
        else:
            account, amount, key = args
            bodies.append(_body(consume if kind == "consume" else credit, account_id=account, amount=amount,
                                idempotency_key=key))
    return bodies


def _prepare(energy: int) -> None:
    """Migrate the database the process is configured for and give it account 1."""
    from django.core.management import call_command

    from energy.application.accounts import seed_accounts

    call_command("migrate", verbosity=0)
    seed_accounts(count=1, energy=energy)


def _audit() -> list[str]:
    from energy.application.audit import audit_ledger

    return [violation.problem for violation in audit_ledger().violations]


COMMANDS = {"ready": _ready, "run": _run, "prepare": _prepare, "audit": _audit}


# --- The line-up ---------------------------------------------------------------------------------

def entries_of(account_id: int = 1):
    from energy.models import Entry

    return Entry.objects.filter(account_id=account_id)


def energy(account_id: int = 1) -> int:
    from energy.models import Account

    return Account.objects.get(pk=account_id).energy


def assert_audit_clean():
    from energy.application.audit import audit_ledger

    report = audit_ledger()
    assert report.clean, report.violations


# --- The tests -----------------------------------------------------------------------------------

def test_eight_processes_reversing_one_consumption_record_one_reversal_and_give_back_once():
    from energy.application.accounts import seed_accounts
    from energy.application.consume import consume

    seed_accounts(count=1, energy=100)
    consume(account_id=1, amount=30, idempotency_key="order-1")

    with patient_sessions(8, __name__) as sessions:
        answers = [bodies[0] for bodies in race(sessions, [[("reverse", "order-1")]] * 8)]

    assert sorted(a["status"] for a in answers) == ["applied"] + ["replayed"] * 7, answers
    assert len({tuple(sorted((k, v) for k, v in a.items() if k != "status")) for a in answers}) == 1
    assert answers[0]["reverses"] == "order-1" and answers[0]["balance_after"] == 100
    assert energy() == 100 and entries_of().filter(kind="reversal").count() == 1
    assert_audit_clean()


def test_credits_and_consumes_racing_on_one_account_keep_every_invariant():
    from django.db.models import Sum

    from energy.application.accounts import seed_accounts

    seed_accounts(count=1, energy=50)
    # Crediters and consumers on one account, a batch among them; some keys are sent by many.
    work = [[("credit", 1, 7, f"credit-{p}-{n}") for n in range(20)] + [("credit", 1, 5, "shared-credit")]
            for p in range(3)]
    work += [[("consume", 1, 9, f"consume-{p}-{n}") for n in range(20)] + [("consume", 1, 5, "shared-credit")]
             for p in range(3)]
    work += [[("batch", [(1, 4, f"batch-{n}") for n in range(30)])]]
    # Its first request waits for the lock like the others; its reverses then race the consumes.
    work += [[("credit", 1, 1, "reverser-start")] + [("reverse", f"consume-0-{n}") for n in range(20)]]

    with patient_sessions(len(work), __name__) as sessions:
        answers = [body for bodies in race(sessions, work) for body in bodies]

    applied = [a for a in answers if a["status"] == "applied"]
    entries = entries_of()
    assert len(applied) == entries.count()
    totals = {kind: entries.filter(kind=kind).aggregate(total=Sum("amount"))["total"] or 0
              for kind in ("consume", "credit", "reversal")}
    assert energy() == 50 + totals["credit"] + totals["reversal"] - totals["consume"] >= 0
    # One key sent by six processes, as a credit by three and a consume by three: applied once.
    assert [a.get("idempotency_key") for a in applied].count("shared-credit") == 1
    assert entries.filter(idempotency_key="shared-credit").count() == 1
    assert sorted(entries.values_list("seq", flat=True)) == list(range(1, entries.count() + 1))
    assert {a.get("error") for a in answers if a["status"] == "error"} <= {
        "insufficient_energy", "idempotency_key_mismatch", "key_not_found"}
    assert_audit_clean()


def test_a_replayed_consume_racing_its_reversal_still_answers_the_original_result():
    from energy.application.accounts import seed_accounts
    from energy.application.consume import consume

    seed_accounts(count=1, energy=1_000)
    originals = [consume(account_id=1, amount=10 + n, idempotency_key=f"order-{n}").to_dict() for n in range(3)]

    with patient_sessions(4, __name__) as sessions:
        for n, original in enumerate(originals):
            # One process reverses the consumption while three send the consume again.
            work = [[("reverse", f"order-{n}")]] + [[("consume", 1, 10 + n, f"order-{n}")]] * 3
            reversal, *replays = [bodies[0] for bodies in race(sessions, work)]

            assert reversal["status"] == "applied" and reversal["reverses"] == f"order-{n}"
            assert all(r == {**original, "status": "replayed"} for r in replays), (original, replays)

    assert energy() == 1_000 and entries_of().filter(kind="reversal").count() == 3
    assert_audit_clean()


def test_a_consume_that_waited_for_a_credit_spends_what_the_credit_added():
    """The consume's snapshot shows the balance before the credit (5), the locked row shows it after (55):
    the consume is decided and written from the locked row, so it is applied, never refused by energy >= 0."""
    import psycopg

    from energy.application.accounts import seed_accounts

    seed_accounts(count=1, energy=5)
    with patient_sessions(1, __name__) as (session,), psycopg.connect(test_database_url()) as crediting:
        # What a credit does in its transaction: lock the row, raise the balance; not committed yet.
        crediting.execute("SELECT FROM energy_account WHERE id = 1 FOR UPDATE")
        crediting.execute("UPDATE energy_account SET energy = energy + 50, last_seq = last_seq + 1 WHERE id = 1")
        session.send("run", [("consume", 1, 9, "after-the-credit")])
        wait_until_blocked(1, holder_pid=crediting.info.backend_pid)
        crediting.commit()
        [answer] = session.receive()

    assert (answer["status"], answer["balance_after"]) == ("applied", 46), answer
    assert energy() == 46


def test_credit_and_reverse_work_on_sqlite_through_the_orm(tmp_path):
    session = Session(f"sqlite:///{tmp_path / 'ledger.db'}", __name__)
    try:
        session.ask("prepare", 100)
        answers = session.ask("run", [("consume", 1, 30, "a"), ("credit", 1, 5, "b"), ("reverse", "a"),
                                      ("reverse", "a"), ("reverse", "b"), ("consume", 1, 5, "b"),
                                      ("batch", [(1, 50, "c"), (1, 50, "d")])])
        violations = session.ask("audit")
    finally:
        session.close()

    assert [(a["status"], a.get("error"), a.get("balance_after")) for a in answers] == [
        ("applied", None, 70), ("applied", None, 75), ("applied", None, 105), ("replayed", None, 105),
        ("error", "invalid_state", None), ("error", "idempotency_key_mismatch", None), ("applied", None, 55),
        ("applied", None, 5)]
    assert violations == []
