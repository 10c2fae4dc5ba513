"""``energyctl race-demo``: each removed protection, failing on cue."""

from __future__ import annotations

from typing import Optional

import typer

from energyctl.commands.race_run import DEFAULT_AMOUNT, DEFAULT_BALANCE, DEFAULT_WORKERS, run_race
from energyctl.output import Output
from energyctl.prepare import prepare


def register(app: typer.Typer) -> None:
    app.command(
        "race-demo",
        epilog="Example: energyctl race-demo --workers 8 --scenario protected --scenario no_unique_key",
    )(race_demo)


def race_demo(
    workers: int = typer.Option(DEFAULT_WORKERS, "--workers", min=2, max=64,
                                help="Processes racing each other, each with its own connection."),
    balance: int = typer.Option(DEFAULT_BALANCE, "--balance", min=1, help="Starting balance of the contested account."),
    amount: int = typer.Option(DEFAULT_AMOUNT, "--amount", min=1, help="Energy each process tries to spend."),
    scenario: Optional[list[str]] = typer.Option(
        None, "--scenario", help="Run only this scenario (repeatable). Default: all of them."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document."),
) -> None:
    """Race real OS processes on PostgreSQL with each protection removed in turn, next to the protected path.

    Scenarios: protected, no_select_for_update, no_unique_key, no_atomic, no_f_expression.

    Exit 0 when the protected path holds and every other scenario shows its anomaly, else 1.
    """
    prepare()
    out = Output(as_json=as_json)
    raise typer.Exit(run_race(out, workers=workers, balance=balance, amount=amount, scenarios=scenario))
