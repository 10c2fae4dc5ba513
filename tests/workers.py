"""Helpers to run consumes in real OS processes, each with its own database connection.

Children are started with the ``spawn`` method, so they share nothing with the test
process but the environment: they set Django up themselves and connect to the same test
database by name.

Workers released together by a barrier could still run one after another on a busy machine,
and a serial run would pass a concurrency test. So while they start, another process holds
every account's row lock, and the workers go only once ``pg_blocking_pids()`` shows each of
them waiting for it: they provably overlapped, and then race for real.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from tests.support import setup_django, spawn_context, test_database_name, wait_until_blocked

# The workers wait this long for the held locks (their own lock_timeout), far longer than
# they take to line up; the test holds the locks on purpose.
LINE_UP_TIMEOUT_S = 60
# Children started for a line-up wait and hold on purpose: on a busy machine their start can
# outlast the usual statement and idle-in-transaction bounds, which would end the wait (or the
# holder's transaction, and with it the locks) before every worker is seen waiting.
PATIENT = {
    "ENERGYCTL_LOCK_TIMEOUT_MS": str(LINE_UP_TIMEOUT_S * 1000),
    "ENERGYCTL_STATEMENT_TIMEOUT_MS": str(LINE_UP_TIMEOUT_S * 1000),
    "ENERGYCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS": str(2 * LINE_UP_TIMEOUT_S * 1000),
}


@contextmanager
def patient_children():
    """Processes started inside take PATIENT's bounds from the environment they inherit."""
    saved = {name: os.environ.get(name) for name in PATIENT}
    os.environ.update(PATIENT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def consume_worker(db_name, barrier, requests, results) -> None:
    """Wait for every sibling at the barrier, then send ``requests``; put one outcome per request."""
    setup_django(db_name)
    from django.db import connection

    from energy.application.consume import consume
    from energy.domain.exceptions import EnergyError

    line_up(connection)
    barrier.wait(timeout=60)
    outcomes = []
    for account_id, amount, key in requests:
        try:
            outcomes.append(consume(account_id=account_id, amount=amount, idempotency_key=key).to_dict())
        except EnergyError as exc:
            outcomes.append({"status": "error", "error": exc.outcome, "idempotency_key": key})
    results.put(outcomes)
    connection.close()


def line_up(connection) -> None:
    """Connect, and wait for the row locks the test holds instead of giving up after the usual bound."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{LINE_UP_TIMEOUT_S}s"])


def run_in_processes(request_lists: list[list[tuple[int, int, str]]]) -> list[dict]:
    """Run each list of requests in its own process, all released together; return every outcome."""
    return run_workers([(consume_worker, (requests,)) for requests in request_lists])


def run_workers(jobs: list[tuple]) -> list[dict]:
    """Start one process per ``(target, args)``, called as ``target(db_name, barrier, *args, results)``,
    all released together by one barrier once each waits for the held row locks; return every outcome."""
    from django.db import connections

    db_name = test_database_name()
    connections.close_all()
    ctx = spawn_context()
    barrier = ctx.Barrier(len(jobs))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(db_name, barrier, *args, results)) for target, args in jobs]
    with every_account_locked(ctx, db_name) as holder:
        with patient_children():
            for proc in procs:
                proc.start()
        try:
            wait_until_blocked(len(procs), holder_pid=holder, alive=procs, timeout=LINE_UP_TIMEOUT_S)
        except AssertionError as exc:
            for proc in procs:
                proc.kill()
                proc.join(30)
            raise AssertionError(f"the workers were not all seen waiting at the same time: {exc}") from None
    outcomes = []
    for _ in procs:
        outcomes.extend(results.get(timeout=120))
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0, f"worker {proc.pid} exited with {proc.exitcode}"
    return outcomes


@contextmanager
def every_account_locked(ctx, db_name: str):
    """Another process holds every account's row lock; yields its backend pid, releases on exit."""
    ready, release = ctx.Queue(), ctx.Event()
    holder = ctx.Process(target=hold_every_account, args=(db_name, ready, release))
    with patient_children():
        holder.start()
    try:
        yield ready.get(timeout=60)
    finally:
        release.set()
        holder.join(30)


def hold_every_account(db_name, ready, release) -> None:
    setup_django(db_name)
    from django.db import connection, transaction

    from energy.models import Account

    with transaction.atomic():
        list(Account.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        ready.put(connection.connection.info.backend_pid)
        release.wait(LINE_UP_TIMEOUT_S)


@contextmanager
def row_lock_held(account_id: int = 1, lock_timeout: str = "200ms"):
    """Another process holds the account's row lock while this connection waits at most ``lock_timeout``."""
    from django.db import connection

    ctx = spawn_context()
    holding, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=hold_row_lock, args=(test_database_name(), holding, release, account_id))
    with patient_children():
        holder.start()
    try:
        assert holding.wait(60), "the lock holder never got the lock"
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", [lock_timeout])
        yield
    finally:
        release.set()
        holder.join(30)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


def hold_row_lock(db_name, holding, release, account_id=1) -> None:
    """Hold account ``account_id``'s row lock until ``release`` is set."""
    setup_django(db_name)
    from django.db import transaction

    from energy.models import Account

    with transaction.atomic():
        Account.objects.select_for_update().get(pk=account_id)
        holding.set()
        release.wait(60)
