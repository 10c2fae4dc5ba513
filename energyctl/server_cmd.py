"""``energyctl migrate`` and ``energyctl serve``: the schema, and the HTTP API behind gunicorn."""

from __future__ import annotations

import os
import sys

import typer

from energy.domain.exceptions import EnergyError, Unavailable
from energy.presenters.output import EXIT_CODES, EXIT_CONFIG, Output
from energy.redact import redact_url

# Seconds gunicorn lets one request run before it replaces the worker; every statement is
# already bounded by the database's statement_timeout, so this only catches a stuck worker.
WORKER_TIMEOUT_S = 60
# gunicorn's default access log names the user of a Basic Authorization header (%(u)s; a
# client sending its token that way would have it logged), the query string (%(r)s) and
# the referrer (%(f)s). None of them is logged: only the path, never a header's value.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s "%(a)s"'


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: DATABASE_URL=postgresql://app@db/energy energyctl migrate")(migrate)
    app.command(epilog="Example: energyctl serve --port 8000 --workers 4")(serve)


def migrate() -> None:
    """Apply the database migrations to DATABASE_URL (or to the embedded PostgreSQL)."""
    from energy.schema import mark_embedded_schema_current
    from energy.schema import migrate as apply_migrations
    from energyctl.bootstrap import setup_django

    out = Output()
    setup_django()
    from energy.application.guard import database_guard

    try:
        with database_guard(migrating=True):
            apply_migrations(verbosity=1, stdout=out.out.file)
            mark_embedded_schema_current()
    except Unavailable as exc:
        raise typer.Exit(out.problem(exc.outcome, f"cannot migrate {describe_database()}: {exc.reason}", None,
                                     EXIT_CODES[exc.outcome])) from None
    out.out.print(f"[green]The schema of {describe_database()} is up to date.[/]")


def serve(
    host: str = typer.Option("127.0.0.1", "--host", envvar="ENERGYCTL_HOST", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", envvar="ENERGYCTL_PORT", min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(None, "--workers", envvar="ENERGYCTL_WORKERS", min=1, max=64, show_default=False,
                                help="Worker processes, each serving one request at a time [default: 2 x CPUs + 1]."),
    production: bool = typer.Option(False, "--production", show_default=False,
                                    help="Refuse to start without ENERGYCTL_SECRET_KEY or with debug on "
                                         "(also when ENERGYCTL_ENV=production)."),
    debug: bool = typer.Option(False, "--debug", help="Django debug mode: detailed error pages. Never in production."),
) -> None:
    """Serve the HTTP API (POST /api/energy/consume/, GET /api/energy/accounts/<id>/) with gunicorn."""
    out = Output()
    production = production or os.environ.get("ENERGYCTL_ENV") == "production"
    if debug:
        os.environ["ENERGYCTL_DEBUG"] = "1"
    refusal = production_refusal() if production else None
    if refusal:
        raise typer.Exit(out.problem("configuration", refusal, None, EXIT_CONFIG))
    # Servers log each request; the short-lived commands keep quiet.
    os.environ.setdefault("ENERGYCTL_LOG_LEVEL", "INFO")
    from energyctl.bootstrap import prepare_database

    try:
        prepare_database()
    except EnergyError as exc:
        raise typer.Exit(out.fail(exc)) from None
    workers = workers or min(2 * (os.cpu_count() or 1) + 1, 9)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    out.note(f"Serving the energyctl HTTP API on http://{bind} with {workers} workers, "
             f"database {describe_database()}.")
    from django.db import connections

    connections.close_all()
    argv = [sys.executable, "-m", "gunicorn", "energy.wsgi:application", "--bind", bind,
            "--workers", str(workers), "--timeout", str(WORKER_TIMEOUT_S), "--log-level", "info",
            "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT, "--error-logfile", "-",
            *_without_control_socket()]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def _without_control_socket() -> list[str]:
    """Newer gunicorns open a control socket at one fixed path in $HOME, which two servers
    would fight over; nothing here uses it."""
    from gunicorn.config import KNOWN_SETTINGS

    known = any("--no-control-socket" in (setting.cli or []) for setting in KNOWN_SETTINGS)
    return ["--no-control-socket"] if known else []


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
    from energy import embedded_pg

    return f"embedded PostgreSQL in {embedded_pg.default_data_dir()}"
