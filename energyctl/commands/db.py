"""``energyctl db status|stop``: where the data lives and the embedded PostgreSQL's life cycle."""

from __future__ import annotations

import os

import typer

from energy.db.redact import redact_text, redact_url
from energyctl.output import Output

db_app = typer.Typer(
    help="The database energyctl uses: the embedded PostgreSQL unless DATABASE_URL is set.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command(epilog="Example: energyctl db status --json")
def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Show which database is used, where its data lives, and whether the embedded server runs."""
    out = Output(as_json=as_json)
    _read_settings(out)
    facts = _external_facts(os.environ["DATABASE_URL"]) if os.environ.get("DATABASE_URL") else _embedded_facts()
    if as_json:
        out.document(facts)
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="dim")
    table.add_column()
    for name, value in facts.items():
        table.add_row(name.replace("_", " "), "-" if value is None else str(value))
    out.out.print(table)


@db_app.command(epilog="Example: energyctl db stop")
def stop() -> None:
    """Stop the embedded PostgreSQL (it starts again by itself on the next command)."""
    from energy.db.embedded import server as embedded_pg

    out = Output()
    _read_settings(out)
    info = embedded_pg.running()
    if info is None:
        out.out.print(f"The embedded PostgreSQL in {embedded_pg.default_data_dir()} is not running.")
        return
    embedded_pg.stop(info.data_dir)
    out.out.print(f"Stopped the embedded PostgreSQL (pid {info.pid}) in {info.data_dir}.")
    if os.environ.get("DATABASE_URL"):
        out.note("Note: DATABASE_URL is set, so energyctl uses that server, which it does not manage.")


def _read_settings(out: Output) -> None:
    """Every command refuses a bad ENERGYCTL_* setting before it does anything, these two as well."""
    from energy.domain.exceptions import InvalidRequest

    try:
        from energy.db import config  # noqa: F401 - reading the module validates the settings
    except InvalidRequest as exc:
        raise typer.Exit(out.fail(exc)) from None


def _embedded_facts() -> dict:
    from energy.db.embedded import server as embedded_pg

    data_dir = embedded_pg.default_data_dir()
    info = embedded_pg.running(data_dir)
    return {
        "database": "embedded",
        "data_dir": str(data_dir),
        "initialized": (data_dir / "PG_VERSION").exists(),
        "running": info is not None,
        "pid": info.pid if info else None,
        "socket_dir": str(info.socket_dir) if info else None,
        "port": info.port if info else None,
        "url": info.url() if info else None,
    }


def _external_facts(url: str) -> dict:
    import dj_database_url

    config = dj_database_url.parse(url)
    return {
        "database": "DATABASE_URL",
        "url": redact_url(url),
        "engine": config["ENGINE"].rsplit(".", 1)[-1],
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "name": config.get("NAME") or None,
        "user": config.get("USER") or None,
        "reachable": _reachable(),
    }


def _reachable() -> str:
    from energy.domain.exceptions import Unavailable
    from energyctl.prepare import prepare

    prepare()
    from django.db import connection

    from energy.db.guard import database_guard

    try:
        with database_guard():
            connection.ensure_connection()
    except Unavailable as exc:
        return f"no ({redact_text(exc.reason)})"
    return "yes"
