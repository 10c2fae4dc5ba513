"""Deployment plumbing for tests: child processes with their own settings, a TCP proxy that can
black-hole its connections, and a real PgBouncer in front of a real PostgreSQL.

Children are spawned: each imports settings afresh from the environment it is given, exactly
as a deployed process would, and answers one command at a time over a pipe.
"""

from __future__ import annotations

import configparser
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

ANSWER_TIMEOUT_S = 60.0
PGBOUNCER_INI = Path(__file__).resolve().parent.parent / "docs" / "pgbouncer.ini"


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
        except Exception:
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

    from energy.application.guard import database_guard

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


def _session_differences() -> list[str]:
    from django.db import connection

    from energy.db import session

    return session.differences(connection)


def _ledger() -> dict:
    from energy.models import Account, Consumption

    return {"balances": dict(Account.objects.values_list("id", "energy")),
            "records": sorted(Consumption.objects.values_list("idempotency_key", "account_id", "amount"))}


COMMANDS = {"prepare": _prepare, "consume": _consume, "batch": _batch, "differences": _session_differences,
            "ledger": _ledger, "sleep": _sleep, "burst": _burst}


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


class TcpProxy:
    """Forwards 127.0.0.1:port to the server until ``black_hole()``; then every open connection
    stays open but nothing more crosses it, like a peer that froze or a route that died."""

    def __init__(self, host: str, port: int):
        self._target = (host, port)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._holed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self) -> None:
        self._holed.set()

    def restore(self) -> None:
        """Forward again, for connections opened from now on."""
        self._holed = threading.Event()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            # shutdown() first: it wakes a thread blocked in recv(), which close() alone does
            # not, and that thread would keep the server connection open.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _upstream(self) -> socket.socket:
        host, port = self._target
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(f"{host}/.s.PGSQL.{port}")
            return sock
        return socket.create_connection((host, port))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = self._upstream()
            self._sockets += [client, server]
            holed = self._holed
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink, holed), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, holed: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                if not holed.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        # The client hung up: end the upstream side too (a black hole still swallows it).
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def pgbouncer_binary() -> str:
    """The PgBouncer program; on a laptop without it the test is skipped, in CI it fails."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)
    if found is None:
        reason = "PgBouncer is not installed (apt-get install pgbouncer); .ci/run installs it"
        if os.environ.get("ENERGYCTL_REQUIRE_PGBOUNCER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


class PgBouncer:
    """A real PgBouncer configured from docs/pgbouncer.ini, in front of ``host``:``port``.

    Only what a test must change is changed: where it listens, the server it forwards to,
    trust authentication, and its own log and pid files.
    """

    def __init__(self, host: str, port: int, user: str, password: str | None = None, **overrides):
        binary = pgbouncer_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="energyctl-pgbouncer-"))
        self.port = free_port()
        self.user = user
        target = f"host={host} port={port}" + (f" user={user} password={password}" if password else "")
        config = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
        config.read(PGBOUNCER_INI)
        config["databases"] = {"*": target}
        config["pgbouncer"].update({
            "listen_addr": "127.0.0.1", "listen_port": str(self.port), "unix_socket_dir": "",
            "auth_type": "trust", "auth_file": str(self.workdir / "userlist.txt"), "admin_users": user,
            "logfile": str(self.workdir / "pgbouncer.log"), "pidfile": str(self.workdir / "pgbouncer.pid"),
            **{k: str(v) for k, v in overrides.items()},
        })
        (self.workdir / "userlist.txt").write_text(f'"{user}" ""\n')
        ini = self.workdir / "pgbouncer.ini"
        with ini.open("w") as out:
            config.write(out)
        command = [binary, str(ini)]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; run it as the owner of the server's socket.
            owner = Path(host).stat().st_uid if host.startswith("/") else pwd.getpwnam("nobody").pw_uid
            name = pwd.getpwuid(owner).pw_name
            shutil.chown(self.workdir, name)
            command[1:1] = ["-u", name]
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening()

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def reconnect(self) -> None:
        """What an operator does after `energyctl migrate` changed the role settings: let every
        pooled server connection be replaced by one that starts with them."""
        import psycopg

        with psycopg.connect(self.url("pgbouncer"), autocommit=True, prepare_threshold=None) as admin:
            admin.execute("RECONNECT")

    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited with {self._proc.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"pgbouncer never listened: {self.log()}")
