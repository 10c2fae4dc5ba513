"""``energyctl seed`` (and ``manage.py seed_accounts``): make accounts 1..N exist."""

from __future__ import annotations

import typer

from energy.domain.exceptions import EnergyError
from energyctl.bootstrap import prepare_database
from energyctl.output import JSON_HELP, Output


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: energyctl seed --accounts 1000 --energy 100")(seed)


def seed(
    accounts: int = typer.Option(..., "--accounts", help="Make accounts 1..N exist."),
    energy: int = typer.Option(..., "--energy", help="Starting energy of the accounts this creates."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Make accounts 1..N exist; new ones start with ENERGY, existing ones keep their balance."""
    raise typer.Exit(run_seed(Output(as_json=as_json), accounts=accounts, energy=energy))


def run_seed(out: Output, *, accounts: int, energy: int) -> int:
    try:
        prepare_database()
        from energy.application.accounts import seed_accounts

        result = seed_accounts(count=accounts, energy=energy)
    except EnergyError as exc:
        return out.fail(exc)
    if out.as_json:
        out.document(result.to_dict())
    else:
        out.out.print(
            f"Accounts 1..{result.accounts} exist: [green]{result.created} created[/] with {result.energy} energy, "
            f"{result.accounts - result.created} already there (left unchanged)."
        )
    return 0
