"""What many tests need and none should write again.

Ports, the test database's name and URL, the installed ``energyctl`` run as a process,
spawned worker processes (``Session``), and waiting until backends are seen blocked on a
lock. Test modules import from here, never from one another.

Every wait here observes something (a socket, a catalog view, a pipe) under a deadline; none
stands in for an event with a fixed sleep.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Hang guards for a busy two-core machine, not performance claims.
PROCESS_TIMEOUT_S = 120.0
ANSWER_TIMEOUT_S = 90.0
BLOCKED_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.01


# --- Ports ---------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A TCP port on 127.0.0.1 where a connection is refused: an address with no server behind it."""
    return free_port()


# --- The test database -----------------------------------------------------------------------------

def test_database_name() -> str:
    """The name of the database this pytest run uses (Django's, once the test database is set up)."""
    from django.db import connection

    return connection.settings_dict["NAME"]


def test_database_url(name: str | None = None) -> str:
    """A DATABASE_URL that reaches the suite's test database (or database ``name`` on the same server)."""
    from urllib.parse import quote

    from django.db import connection

    settings = connection.settings_dict
    if settings["ENGINE"] == "energy.db.embedded":
        from energy.db.embedded import server as embedded_pg

        server = embedded_pg.running()
        host, port = str(server.socket_dir), server.port
    else:
        host, port = settings["HOST"], settings["PORT"] or 5432
    auth = quote(settings["USER"], safe="")
    if settings.get("PASSWORD"):
        auth += ":" + quote(settings["PASSWORD"], safe="")
    return f"postgresql://{auth}@{quote(host, safe='')}:{port}/{quote(name or settings['NAME'], safe='')}"


def server_address() -> tuple[str, int]:
    """Host (or Unix socket directory) and port of the suite's PostgreSQL."""
    from django.db import connection

    params = connection.get_connection_params()
    return str(params.get("host") or "localhost"), int(params.get("port") or 5432)


# pytest would otherwise collect the two functions above as tests wherever they are imported.
test_database_name.__test__ = False
test_database_url.__test__ = False


# --- The installed command line as a process -------------------------------------------------------

ENERGYCTL = Path(sys.executable).parent / "energyctl"


@dataclass(frozen=True)
class Run:
    """One finished ``energyctl`` process; ``json`` is stdout parsed when ``--json`` was given and it parses."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    json: Any = None


def energyctl(*args: str, url: str | None = None, env: dict[str, str] | None = None, stdin: str | None = None,
              cwd: str | Path | None = None, timeout: float = PROCESS_TIMEOUT_S,
              inherit_settings: bool = True) -> Run:
    """Run the installed ``energyctl`` console script, as a shell or a runbook would.

    ``url`` sets DATABASE_URL; ``env`` is laid over this process's environment, from which
    ``inherit_settings=False`` first drops every ``ENERGYCTL_*`` variable. pytest-django's
    DJANGO_SETTINGS_MODULE (the checkout's ``settings``) is never passed on: a shell has none.
    """
    base = {k: v for k, v in os.environ.items()
            if k != "DJANGO_SETTINGS_MODULE" and (inherit_settings or not k.startswith("ENERGYCTL_"))}
    if url is not None:
        base["DATABASE_URL"] = url
    done = subprocess.run([str(ENERGYCTL), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})}, cwd=cwd)
    return Run(tuple(args), done.returncode, done.stdout, done.stderr, _json_of(args, done.stdout))


def energyctl_here(*args: str) -> Run:
    """``energyctl ARGS`` through the console script's own ``main``, in this process (no process started).

    It acts on the suite's test database, and what it prints is caught on the way to
    ``sys.stdout`` and ``sys.stderr``.
    """
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from energyctl.__main__ import main

    stdout, stderr = StringIO(), StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(list(args))
    return Run(tuple(args), code, stdout.getvalue(), stderr.getvalue(), _json_of(args, stdout.getvalue()))


def _json_of(args: tuple[str, ...], stdout: str):
    """stdout parsed, when ``--json`` was asked for and it parses; else None (the test shows why)."""
    if "--json" not in args:
        return None
    try:
        return json.loads(stdout)
    except ValueError:
        return None


# --- Worker processes ------------------------------------------------------------------------------

def spawn_context():
    """Children share nothing with the test process but the environment they are given."""
    return multiprocessing.get_context("spawn")


def setup_django(db_name: str) -> None:
    """In a spawned child: Django set up on the suite's test database ``db_name``."""
    from energy.setup import setup_django as setup

    setup(database={"NAME": db_name})


class Session:
    """A spawned child with its own Django connection, configured by ``url`` and ``env``, that runs one
    command at a time from ``commands`` (a module's dotted name) and its ``COMMANDS`` table.

    The child imports ``commands`` itself, so that module must import no Django model at top level.
    """

    def __init__(self, url: str, commands: str, **env: str):
        ctx = spawn_context()
        self._conn, child_conn = ctx.Pipe()
        settings = {"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "energy.settings", "ENERGYCTL_LOG_LEVEL": "ERROR",
                    **env}
        # A daemon: a test failing half-way leaves no child waiting for commands behind it.
        self._proc = ctx.Process(target=_serve_commands, args=(settings, commands, child_conn), daemon=True)
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

    def close(self) -> int | None:
        """Ask the child to finish (waking it first if a test stopped it); its exit code."""
        if self._proc.is_alive():
            os.kill(self._proc.pid, signal.SIGCONT)
            self._conn.send(None)
            self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(10)
        return self._proc.exitcode


def _serve_commands(settings: dict, commands: str, conn) -> None:
    os.environ.update(settings)
    import importlib
    import traceback

    import django

    django.setup()
    table = importlib.import_module(commands).COMMANDS
    while (command := conn.recv()) is not None:
        try:
            conn.send(table[command[0]](*command[1:]))
        except Exception:  # noqa: BLE001 - the parent fails the test with this traceback
            conn.send({"crash": traceback.format_exc()})


# --- Waiting for lock waiters ----------------------------------------------------------------------

def blocked_backends(conn, holder_pid: int | None = None) -> int:
    """How many backends of ``conn``'s database wait for a lock (behind ``holder_pid``'s queue, if given).

    Behind a row-lock holder the first waiter waits for its transaction and the others for the
    row's tuple lock, which that first waiter holds: every waiter is counted, not only the
    holder's direct ones.
    """
    (count,) = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND pid IS DISTINCT FROM %s AND cardinality(pg_blocking_pids(pid)) > 0",
        [holder_pid],
    ).fetchone()
    return count


def wait_until_blocked(count: int, *, holder_pid: int | None = None, url: str | None = None,
                       timeout: float = BLOCKED_TIMEOUT_S, alive=()) -> None:
    """Until ``count`` backends of the database at ``url`` (the suite's by default) wait for a lock.

    Seen in ``pg_stat_activity`` / ``pg_blocking_pids()`` on a connection of its own in autocommit,
    so each look is a fresh snapshot. Fails as soon as one of the processes in ``alive`` (objects
    with ``exitcode`` or ``poll()``) has ended, or when ``timeout`` passes.
    """
    import psycopg

    deadline = time.monotonic() + timeout
    seen = 0
    with psycopg.connect(url or test_database_url(), autocommit=True) as conn:
        while (seen := blocked_backends(conn, holder_pid)) < count:
            ended = [p for p in alive if _ended(p)]
            assert not ended, f"only {seen} of {count} backends waited; a process ended first: {ended}"
            assert time.monotonic() < deadline, f"only {seen} of {count} backends ever waited for a lock"
            time.sleep(POLL_INTERVAL_S)


def _ended(process) -> bool:
    if hasattr(process, "poll"):
        return process.poll() is not None
    return process.exitcode is not None


def wait_until_stopped(pid: int, timeout: float = 30.0) -> None:
    """Until process ``pid`` is stopped by a signal (state T in /proc)."""
    deadline = time.monotonic() + timeout
    while (state := Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) not in ("T", "t"):
        assert time.monotonic() < deadline, f"process {pid} never stopped (state {state})"
        time.sleep(POLL_INTERVAL_S)


def table_rows() -> dict[str, list[tuple]]:
    """Every row of every energy table, in id order: compare two to show that a request changed nothing."""
    from django.db import connection

    tables = {}
    with connection.cursor() as cursor:
        for table in ("energy_account", "energy_client", "energy_consumption"):
            cursor.execute(f"SELECT * FROM {table} ORDER BY id")  # noqa: S608 - names from the line above
            tables[table] = cursor.fetchall()
    return tables


def api(token: str | None):
    """DRF's test client, sending ``Authorization: Bearer <token>`` unless ``token`` is None."""
    from rest_framework.test import APIClient

    client = APIClient()
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def client_id(name: str) -> int:
    """The id of the client called ``name``."""
    from energy.models import Client

    return Client.objects.get(name=name).id


def balance(account_id: int = 1) -> int:
    """An account's stored energy."""
    from energy.models import Account

    return Account.objects.get(pk=account_id).energy


# Bounds for sessions lined up behind a held row lock: their waits last as long as the line-up.
PATIENT = {"ENERGYCTL_LOCK_TIMEOUT_MS": "60000", "ENERGYCTL_STATEMENT_TIMEOUT_MS": "60000",
           "ENERGYCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS": "120000"}


@contextmanager
def patient_sessions(count: int, commands_module: str):
    """``count`` ready Sessions running ``commands_module``'s commands, with PATIENT bounds."""
    sessions = [Session(test_database_url(), commands_module, **PATIENT) for _ in range(count)]
    try:
        for session in sessions:
            session.ask("ready")
        yield sessions
    finally:
        for session in sessions:
            session.close()


def race(sessions: list[Session], work: list[list[tuple]], *, account_id: int = 1, before_release=None):
    """Give each session its operations while the account's row lock is held; release it once all wait.

    ``before_release(holder)`` runs on the lock holder's connection just before it lets go. Returns
    each session's answer, in order.
    """
    import psycopg

    with psycopg.connect(test_database_url()) as holder:
        holder.execute("SELECT FROM energy_account WHERE id = %s FOR UPDATE", [account_id])
        holder_pid = holder.info.backend_pid
        for session, operations in zip(sessions, work, strict=True):
            session.send("run", operations)
        wait_until_blocked(len(sessions), holder_pid=holder_pid, alive=[session._proc for session in sessions])
        if before_release is not None:
            before_release(holder)
        holder.commit()
    return [session.receive() for session in sessions]

