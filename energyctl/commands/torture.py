"""``energyctl torture``: the fault-injection run, with its figures as a rich table or JSON."""

from __future__ import annotations

import json

import typer

from energyctl.torture.config import TortureConfig


def register(app: typer.Typer) -> None:
    app.command("torture", epilog="Example: energyctl torture --seconds 60 --clients 6 --accounts 500 --json")(torture)


def torture(
    seconds: float = typer.Option(TortureConfig.seconds, min=1, help="Length of the load phase."),
    clients: int = typer.Option(TortureConfig.clients, min=1, max=64, help="Client processes sending consumes."),
    accounts: int = typer.Option(TortureConfig.accounts, min=TortureConfig.hot_accounts + 1,
                                 help="Accounts the load is spread over."),
    seed: int = typer.Option(None, help="Seed of the random choices, to repeat a run."),
    use_database_url: bool = typer.Option(
        False, "--use-database-url",
        help="Run on a new dedicated database of the DATABASE_URL server (never crashed) "
             "instead of a temporary embedded cluster."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Consume under faults (killed clients and backends, a crashed server, lock timeouts), then audit.

    Exits 0 when every guarantee held, 1 when any was violated.
    """
    import os

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
    raise typer.Exit(0 if report.ok else 1)


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
