"""``energyctl migrate`` and ``energyctl serve``: the schema, and the HTTP API (see http_server)."""

from __future__ import annotations

import os

import typer

from energy.db.redact import redact_url
from energy.domain.exceptions import EnergyError, Unavailable
from energyctl.http_server import DEFAULT_PROCESSES, DEFAULT_THREADS
from energyctl.output import Output, exit_help

MIGRATE_HELP = f"""Apply the database migrations to DATABASE_URL (or to the embedded PostgreSQL).

{exit_help("ok", "unavailable")}
"""
SERVE_HELP = f"""Serve the HTTP API (POST /api/energy/consume/, GET /api/energy/accounts/<id>/) with waitress.

It runs until stopped (SIGTERM or Ctrl-C). {exit_help("invalid_request", "configuration", "unavailable")}
"""


def register(app: typer.Typer) -> None:
    app.command(help=MIGRATE_HELP, epilog="Example: DATABASE_URL=postgresql://app@db/energy energyctl migrate")(
        migrate)
    app.command(help=SERVE_HELP, epilog="Example: energyctl serve --port 8000")(serve)


def migrate() -> None:
    """Apply the database migrations to DATABASE_URL (or to the embedded PostgreSQL)."""
    from energy.db.migrate import mark_embedded_schema_current
    from energy.db.migrate import migrate as apply_migrations
    from energyctl.prepare import prepare

    out = Output()
    try:
        prepare(schema=False)  # this command is the schema set-up: with its own output and lock-timeout advice
    except EnergyError as exc:
        raise typer.Exit(out.fail(exc)) from None
    from energy.db.guard import database_guard

    try:
        with database_guard(migrating=True):
            apply_migrations(verbosity=1, stdout=out.out.file)
            mark_embedded_schema_current()
            older = _sessions_older_than_the_role_settings()
    except Unavailable as exc:
        raise typer.Exit(out.problem(exc.outcome, f"cannot migrate {describe_database()}: {exc.reason}")) from None
    out.out.print(f"[green]The schema of {describe_database()} is up to date.[/]")
    if older:
        out.note(f"{older} server connection(s) to this database opened before these role settings keep the old "
                 "values until energyctl is handed them (it then corrects each one); to replace them all now, "
                 "run RECONNECT in PgBouncer's admin console (its `pgbouncer` database, as one of its admin_users)")


def _sessions_older_than_the_role_settings() -> int:
    """Behind a pooler: sessions that started before this migrate changed the role's settings."""
    from django.db import connection

    from energy.db import role_settings

    if connection.vendor != "postgresql":
        return 0
    return role_settings.sessions_older_than_the_settings(connection)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", envvar="ENERGYCTL_HOST", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", envvar="ENERGYCTL_PORT", min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(DEFAULT_PROCESSES, "--workers", envvar="ENERGYCTL_WORKERS", min=1, max=64,
                                help="Processes sharing the port (default: 2, or 1 on a single CPU); "
                                     "more only pay off with more CPU cores."),
    threads: int = typer.Option(DEFAULT_THREADS, "--threads", envvar="ENERGYCTL_THREADS", min=1, max=256,
                                help="Threads per process running requests (each keeps one database connection)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", envvar="ENERGYCTL_ACCESS_LOG",
                                    help="One log line per request on stderr."),
    production: bool = typer.Option(False, "--production", show_default=False,
                                    help="Refuse to start without ENERGYCTL_SECRET_KEY or with debug on "
                                         "(also when ENERGYCTL_ENV=production)."),
    debug: bool = typer.Option(False, "--debug", help="Django debug mode: detailed error pages. Only on a loopback "
                                                      "--host; never in production."),
) -> None:
    """Serve the HTTP API (POST /api/energy/consume/, GET /api/energy/accounts/<id>/) with waitress."""
    out = Output()
    production = production or os.environ.get("ENERGYCTL_ENV") == "production"
    from energyctl.http_server import is_loopback

    # Debug pages show settings and tracebacks to whoever asks: only this machine may ask.
    if (debug or os.environ.get("ENERGYCTL_DEBUG") == "1") and not is_loopback(host):
        raise typer.Exit(out.problem("invalid_request", f"debug mode (--debug, ENERGYCTL_DEBUG=1) is only allowed "
                                     f"on a loopback host (127.0.0.1, ::1, localhost), not {host}"))
    if debug:
        os.environ["ENERGYCTL_DEBUG"] = "1"
    refusal = production_refusal() if production else None
    if refusal:
        raise typer.Exit(out.problem("configuration", refusal))
    # Servers log each request; the short-lived commands keep quiet.
    os.environ.setdefault("ENERGYCTL_LOG_LEVEL", "INFO")
    from energyctl.prepare import prepare

    try:
        prepare()
    except EnergyError as exc:
        raise typer.Exit(out.fail(exc)) from None
    from energyctl import http_server

    try:
        sock = http_server.listen(host, port)
    except OSError as exc:
        raise typer.Exit(out.problem("configuration", f"cannot listen on {host}:{port}: {exc.strerror}")) from None
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    out.note(f"Serving the energyctl HTTP API on http://{shown} with {workers} process(es) x {threads} threads, "
             f"database {describe_database()}.")
    from django.db import connections

    # Worker processes must not share the connection the schema check opened.
    connections.close_all()
    http_server.run(sock, processes=workers, threads=threads, access=access_log)


def production_refusal() -> str | None:
    """Why production mode must not start, or None when the environment is fit for it."""
    if not os.environ.get("ENERGYCTL_SECRET_KEY"):
        return "production mode needs ENERGYCTL_SECRET_KEY in the environment (a long random string)"
    if os.environ.get("ENERGYCTL_DEBUG") == "1":
        return "production mode refuses debug mode: unset ENERGYCTL_DEBUG and drop --debug"
    return None


def describe_database() -> str:
    """Which database Django uses, without credentials."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return redact_url(url)
    from energy.db.embedded import server as embedded_pg

    return f"embedded PostgreSQL in {embedded_pg.default_data_dir()}"
