"""One demo process: its own database connection, running programs one step at a time.

The coordinator sends ``("run", program, kwargs)``; a program reports what it did with
``say`` and stops at each ``pause`` until the coordinator sends ``("go",)``. That is how two
processes are lined up at exactly the step where a missing protection lets them collide.
"""

from __future__ import annotations

import os
import sys


class Channel:
    """The program's side of the pipe to the coordinator."""

    def __init__(self, conn):
        self._conn = conn

    def say(self, text: str) -> None:
        self._conn.send(("event", text))

    def pause(self) -> None:
        self._conn.send(("pause",))
        message = self._conn.recv()
        if message[0] != "go":
            raise SystemExit(0)


def serve(conn, db_settings: dict, environ: dict) -> None:
    """Entry point of a demo process; returns when told to stop or the coordinator is gone."""
    os.environ.clear()
    os.environ.update(environ)
    _setup_django(db_settings)
    from django.db import connection

    from energy.race.programs import PROGRAMS

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        conn.send(("ready", cursor.fetchone()[0]))
    channel = Channel(conn)
    try:
        while True:
            message = conn.recv()
            if message[0] != "run":
                break
            _, name, kwargs = message
            try:
                conn.send(("done", PROGRAMS[name](channel, **kwargs)))
            except Exception as exc:  # noqa: BLE001 - reported to the coordinator, which fails the demo with it
                conn.send(("error", f"{type(exc).__name__}: {exc}".strip()))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        connection.close()
    # Nothing is left to flush or clean up: skip tearing down a whole Django interpreter.
    sys.stderr.flush()
    os._exit(0)


def _setup_django(db_settings: dict) -> None:
    from energy.setup import quiet_consume_log, setup_django

    setup_django(database=db_settings)
    quiet_consume_log()
