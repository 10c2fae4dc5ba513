"""Child processes for deployment tests, each configured by its own environment.

Children are spawned: each imports settings afresh from the environment it is given, exactly
as a deployed process would, and answers one command at a time over a pipe.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path

import pytest

ANSWER_TIMEOUT_S = 60.0


class Session:
    """A child process with its own Django connection, configured by ``url`` and ``env``."""

    def __init__(self, url: str, **env: str):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        settings = {"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "settings", "ENERGYCTL_LOG_LEVEL": "ERROR", **env}
        self._proc = ctx.Process(target=_serve, args=(settings, child_conn), daemon=True)
        self._proc.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def send(self, *command) -> None:
        self._conn.send(command)

    def receive(self, timeout: float = ANSWER_TIMEOUT_S):
        assert self._conn.poll(timeout), f"no answer within {timeout} s"
        answer = self._conn.recv()
        if isinstance(answer, dict) and "crash" in answer:
            pytest.fail(answer["crash"])
        return answer

    def ask(self, *command, timeout: float = ANSWER_TIMEOUT_S):
        self.send(*command)
        return self.receive(timeout)

    def close(self) -> None:
        if self._proc.is_alive():
            os.kill(self._proc.pid, signal.SIGCONT)
            self._conn.send(None)
            self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(10)


def _serve(settings: dict, conn) -> None:
    os.environ.update(settings)
    import traceback

    import django

    django.setup()
    while (command := conn.recv()) is not None:
        try:
            conn.send(COMMANDS[command[0]](*command[1:]))
        except Exception:  # noqa: BLE001 - the parent fails the test with this traceback
            conn.send({"crash": traceback.format_exc()})


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

    from energy.models import Account, Consumption

    call_command("migrate", verbosity=0)
    Consumption.objects.all().delete()
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

    from energy.db import session

    return session.differences(connection)


def _ledger() -> dict:
    from energy.models import Account, Consumption

    return {"balances": dict(Account.objects.values_list("id", "energy")),
            "records": sorted(Consumption.objects.values_list("idempotency_key", "account_id", "amount"))}


COMMANDS = {"prepare": _prepare, "consume": _consume, "batch": _batch, "differences": _session_differences,
            "ledger": _ledger, "sleep": _sleep, "burst": _burst,
            "backend_pid": _backend_pid}


def wait_until_stopped(pid: int, timeout: float = 30.0) -> None:
    """Until process ``pid`` is stopped by a signal (state T in /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never stopped")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_address() -> tuple[str, int]:
    """Host (or Unix socket directory) and port of the suite's PostgreSQL."""
    from django.db import connection

    params = connection.get_connection_params()
    return str(params.get("host") or "localhost"), int(params.get("port") or 5432)


def wait_for_waiters(admin_url: str, holder_pid: int, count: int, timeout: float = 30.0) -> None:
    """Until ``count`` backends wait in the lock queue ``holder_pid`` heads: proof that they overlapped.

    The first waiter is blocked by the holder, each later one by those queued before it."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (waiting,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE pid <> %s AND cardinality(pg_blocking_pids(pid)) > 0", [holder_pid]
            ).fetchone()
            if waiting >= count:
                return
            time.sleep(0.02)
    raise AssertionError(f"only {waiting} of {count} backends ever waited for the lock")
