"""``energyctl seed``: make accounts 1..N exist."""

from __future__ import annotations

import typer

from energyctl.commands.seed_run import run_seed
from energyctl.output import JSON_HELP, Output
from energyctl.prepare import prepare


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: energyctl seed --accounts 1000 --energy 100")(seed)


def seed(
    accounts: int = typer.Option(..., "--accounts", help="Make accounts 1..N exist."),
    energy: int = typer.Option(..., "--energy", help="Starting energy of the accounts this creates."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Make accounts 1..N exist; new ones start with ENERGY, existing ones keep their balance."""
    prepare()
    raise typer.Exit(run_seed(Output(as_json=as_json), accounts=accounts, energy=energy))
