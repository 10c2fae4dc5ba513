"""``energyctl torture``: the fault-injection run, with its figures as a rich table or JSON."""

from __future__ import annotations

import json

import typer

from energyctl.output import EXIT_CODES, exit_help
from energyctl.torture.config import TortureConfig

TORTURE_HELP = f"""Consume, credit, reverse, hold, capture and void (letting some holds expire) under faults
(killed clients and backends, a crashed server, lock timeouts), then audit.

{exit_help("ok", "violations", "invalid_request")} 0 means every guarantee held.
"""


def register(app: typer.Typer) -> None:
    app.command("torture", help=TORTURE_HELP,
                epilog="Example: energyctl torture --seconds 60 --clients 6 --accounts 500 --json")(torture)


def torture(
    seconds: float = typer.Option(TortureConfig.seconds, min=1, help="Length of the load phase."),
    clients: int = typer.Option(TortureConfig.clients, min=1, max=64, help="Client processes sending requests."),
    accounts: int = typer.Option(TortureConfig.accounts, min=TortureConfig.hot_accounts + 1,
                                 help="Accounts the load is spread over."),
    seed: int = typer.Option(None, help="Seed of the random choices, to repeat a run."),
    use_database_url: bool = typer.Option(
        False, "--use-database-url",
        help="Run on a new dedicated database of the DATABASE_URL server (never crashed) "
             "instead of a temporary embedded cluster."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    import os

    from energy.db import config  # noqa: F401 - a bad ENERGYCTL_* setting stops the run before any process starts
    from energyctl.prepare import resume_collection
    from energyctl.torture import run_torture

    resume_collection()  # a long run that never sets Django up in this process
    url = os.environ.get("DATABASE_URL") if use_database_url else None
    if use_database_url and not (url or "").startswith("postgres"):
        raise typer.BadParameter("--use-database-url needs DATABASE_URL set to a postgresql:// URL")
    report = run_torture(TortureConfig(seconds=seconds, clients=clients, accounts=accounts, seed=seed,
                                       database_url=url))
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        _show(report)
    raise typer.Exit(EXIT_CODES["ok" if report.ok else "violations"])


def _show(report) -> None:
    from rich.console import Console
    from rich.table import Table

    from energyctl.torture.report import rows

    table = Table(title="energyctl torture", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows(report):
        table.add_row(name, value)
    Console().print(table)
    if not report.ok:
        Console(stderr=True).print(f"[red]{len(report.violations)} invariant violations[/red]")
