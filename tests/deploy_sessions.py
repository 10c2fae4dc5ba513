"""Child processes for deployment tests, each configured by its own environment.

Children are spawned: each imports settings afresh from the environment it is given, exactly
as a deployed process would, and answers one command at a time over a pipe.
"""

from __future__ import annotations

import os
import signal
import time

from tests import support


class Session(support.Session):
    """A spawned child running this module's COMMANDS, configured by ``url`` and ``env``."""

    def __init__(self, url: str, **env: str):
        super().__init__(url, __name__, **env)


def _timed(call):
    from energy.domain.exceptions import EnergyError

    started = time.monotonic()
    try:
        answer = {"outcome": call().outcome}
    except EnergyError as exc:
        answer = {"outcome": exc.outcome, "detail": exc.detail}
    return {**answer, "seconds": time.monotonic() - started}


def _prepare(accounts: dict[int, int]) -> dict:
    from django.core.management import call_command

    from energy.models import Account, Entry

    call_command("migrate", verbosity=0)
    Entry.objects.all().delete()
    Account.objects.all().delete()
    Account.objects.bulk_create([Account(id=i, energy=e, opening_energy=e) for i, e in accounts.items()])
    return {}


def _consume(account: int, amount: int, key: str) -> dict:
    from energy.application.consume import consume

    return _timed(lambda: consume(account_id=account, amount=amount, idempotency_key=key))


def _batch(requests: list[tuple[int, int, str]], stall: bool = False) -> dict:
    """consume_many; with ``stall`` the process stops itself (SIGSTOP) once the chunk holds its locks."""
    from energy.application import batch
    from energy.domain.requests import ConsumeRequest

    if stall:
        lock = batch.lock_balances

        def lock_then_stall(account_ids):
            balances = lock(account_ids)
            os.kill(os.getpid(), signal.SIGSTOP)
            return balances

        batch.lock_balances = lock_then_stall
    started = time.monotonic()
    try:
        outcomes = batch.consume_many([ConsumeRequest(*r) for r in requests])
    finally:
        if stall:
            batch.lock_balances = lock
    return {"outcomes": [o.outcome for o in outcomes], "seconds": time.monotonic() - started}


def _sleep(seconds: float) -> dict:
    """A statement that runs ``seconds`` on the server, under the guard every use case runs under."""
    from django.db import connection

    from energy.db.guard import database_guard

    class _Done:
        outcome = "done"

    def run():
        with database_guard(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s)", [seconds])
        return _Done()

    return _timed(run)


def _burst(account: int, amount: int, keys: list[str]) -> dict:
    """Consume once per key, one after another; outcome counts and the run's wall-clock span."""
    from collections import Counter

    from energy.application.consume import consume
    from energy.domain.exceptions import EnergyError

    started, outcomes = time.time(), Counter()
    for key in keys:
        try:
            outcomes[consume(account_id=account, amount=amount, idempotency_key=key).outcome] += 1
        except EnergyError as exc:
            outcomes[exc.outcome] += 1
    return {"outcomes": dict(outcomes), "started": started, "ended": time.time()}


def _backend_pid() -> int:
    from django.db import connection

    connection.ensure_connection()
    return connection.connection.info.backend_pid


def _session_differences() -> list[str]:
    from django.db import connection

    from energy.db import role_settings

    return role_settings.differences(connection)


def _ledger() -> dict:
    from energy.models import Account, Entry

    return {"balances": dict(Account.objects.values_list("id", "energy")),
            "records": sorted(Entry.objects.values_list("idempotency_key", "account_id", "amount"))}


def _show(name: str) -> str:
    """The value of server setting ``name`` on this process's connection, as a query inside the guard sees it."""
    from django.db import connection

    from energy.db.guard import database_guard

    with database_guard(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


COMMANDS = {"prepare": _prepare, "consume": _consume, "batch": _batch, "differences": _session_differences,
            "ledger": _ledger, "sleep": _sleep, "burst": _burst, "show": _show,
            "backend_pid": _backend_pid}
