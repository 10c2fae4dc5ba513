"""The database a run works on, and the server-side faults done to it.

By default a temporary embedded cluster of the run's own, which may be crashed and
restarted at will. With a ``database_url`` a dedicated database is created on that server
and dropped afterwards; a server the run does not own is never crashed.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from energy.db.embedded import server as embedded_pg

ADMIN_CONNECT_TIMEOUT_S = 5
# How long a held lock waits for a client to ask for it; clients send to the hot accounts
# many times a second, so reaching this means the load had stopped.
WAITER_TIMEOUT_S = 10
# pg_ctl's own wait for a (re)start; crash recovery of a small cluster takes well under this.
START_TIMEOUT_S = 60


class TortureDatabase:
    can_crash = False
    description = ""

    def __init__(self, url: str, workdir: Path):
        self.url = url
        self.workdir = workdir

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=ADMIN_CONNECT_TIMEOUT_S)

    def terminate_backends(self, limit: int = 2) -> int:
        """End up to ``limit`` client backends of the run's database, busy ones first."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM ("
                " SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend' AND application_name <> 'energyctl-torture'"
                " ORDER BY state IN ('active', 'idle in transaction') DESC, random() LIMIT %s) AS victims",
                [limit],
            ).fetchall()
        return sum(1 for (ended,) in rows if ended)

    def hold_hot_locks(self, hot_accounts: int, seconds: float) -> bool:
        """Lock accounts 1..``hot_accounts``; once a client waits for them, hold ``seconds`` more.

        True when a client was seen waiting (``pg_blocking_pids`` names this session), so
        the hold pushed it past its ``lock_timeout``; False if none came within the bound.
        """
        with psycopg.connect(self.url, connect_timeout=ADMIN_CONNECT_TIMEOUT_S,
                             application_name="energyctl-torture") as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute("SELECT 1 FROM energy_account WHERE id <= %s ORDER BY id FOR UPDATE", [hot_accounts])
            waited = _wait_for_a_waiter(conn)
            if waited:
                time.sleep(seconds)
            conn.rollback()
        return waited

    def snapshot(self) -> tuple[dict[int, int], list[tuple]]:
        """Every balance, and every entry as (id, account, amount, key, balance_after, kind, target key, state).

        A reversal, a capture and a void have no key of their own: the target key is the key they
        are answered under, the consumption's or the hold's (a capture's reversal: its hold's).
        ``state`` is a hold's as every read sees it: an open hold past its expiry is expired, released or not.
        """
        with self.connect() as conn:
            balances = dict(conn.execute("SELECT id, energy FROM energy_account").fetchall())
            records = conn.execute(
                "SELECT e.id, e.account_id, e.amount, e.idempotency_key, e.balance_after, e.kind, "
                "COALESCE(t.idempotency_key, tt.idempotency_key), "
                "CASE WHEN e.state = 'open' AND e.expires_at <= now() THEN 'expired' ELSE e.state END "
                "FROM energy_consumption e LEFT JOIN energy_consumption t ON t.id = e.target_id "
                "LEFT JOIN energy_consumption tt ON tt.id = t.target_id ORDER BY e.id"
            ).fetchall()
        return balances, records

    def crash_and_restart(self, downtime: float) -> None:
        raise RuntimeError("a server the run does not own is never crashed")

    def ensure_up(self) -> None:
        pass

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class OwnCluster(TortureDatabase):
    """A throwaway embedded cluster in a temporary directory."""

    can_crash = True
    description = "temporary embedded PostgreSQL"

    def __init__(self):
        workdir = Path(tempfile.mkdtemp(prefix="energyctl-torture-"))
        self.data_dir = workdir / "pgdata"
        self.info = embedded_pg.ensure_running(self.data_dir)
        super().__init__(self.info.url(), workdir)

    def crash_and_restart(self, downtime: float) -> None:
        """Immediate shutdown (no checkpoint, like a power cut for the clients), then a restart with recovery."""
        self._pg_ctl("stop", "-m", "immediate")
        time.sleep(downtime)
        self.ensure_up()

    def stop(self) -> None:
        embedded_pg.stop(self.data_dir)

    def ensure_up(self) -> None:
        if embedded_pg.running(self.data_dir) is None:
            self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self.data_dir / "log"),
                         "-o", '-h ""', "-o", f"-k {self.info.socket_dir}", "-o", f"-p {self.info.port}")

    def close(self) -> None:
        try:
            embedded_pg.stop(self.data_dir)
        finally:
            super().close()

    def _pg_ctl(self, *args: str) -> None:
        owner = pwd.getpwuid(self.data_dir.stat().st_uid).pw_name
        # pg_ctl refuses to run as root; the embedded server belongs to its own system user.
        user = owner if os.geteuid() == 0 else None
        subprocess.run([str(embedded_pg.binary("pg_ctl")), "-D", str(self.data_dir), *args], check=True,
                       user=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=START_TIMEOUT_S + 10)


class DedicatedDatabase(TortureDatabase):
    """A new database on a server the user names, dropped at the end."""

    description = "dedicated database on DATABASE_URL"

    def __init__(self, server_url: str):
        parts = urlsplit(server_url)
        self.name = f"energyctl_torture_{secrets.token_hex(4)}"
        self._server_url = server_url
        with psycopg.connect(server_url, autocommit=True, connect_timeout=ADMIN_CONNECT_TIMEOUT_S) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        url = urlunsplit(parts._replace(path=f"/{self.name}"))
        super().__init__(url, Path(tempfile.mkdtemp(prefix="energyctl-torture-")))

    def close(self) -> None:
        try:
            with psycopg.connect(self._server_url, autocommit=True, connect_timeout=ADMIN_CONNECT_TIMEOUT_S) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
        finally:
            super().close()


def _wait_for_a_waiter(conn: psycopg.Connection) -> bool:
    deadline = time.monotonic() + WAITER_TIMEOUT_S
    while time.monotonic() < deadline:
        (waiting,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
        ).fetchone()
        if waiting:
            return True
        time.sleep(0.01)
    return False


def open_database(database_url: str | None) -> TortureDatabase:
    return DedicatedDatabase(database_url) if database_url else OwnCluster()
