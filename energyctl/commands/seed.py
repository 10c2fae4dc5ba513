"""``energyctl seed`` (and ``manage.py seed_accounts``): make accounts 1..N exist."""

from __future__ import annotations

import typer

from energy.domain.exceptions import EnergyError
from energyctl.output import EXIT_CODES, JSON_HELP, Output, exit_help
from energyctl.prepare import prepare

SEED_HELP = f"""Make accounts 1..N exist (N = --accounts); new ones start with --energy, existing ones \
keep their balance.

{exit_help("ok", "invalid_request", "unavailable")}
"""


def register(app: typer.Typer) -> None:
    app.command(help=SEED_HELP, epilog="Example: energyctl seed --accounts 1000 --energy 100")(seed)


def seed(
    accounts: int = typer.Option(..., "--accounts", metavar="INTEGER", help="Make accounts 1..N exist."),
    energy: int = typer.Option(..., "--energy", metavar="INTEGER",
                               help="Starting energy of the accounts this creates."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_seed(Output(as_json=as_json), accounts=accounts, energy=energy))


def run_seed(out: Output, *, accounts: int, energy: int) -> int:
    try:
        prepare()
        from energy.application.accounts import seed_accounts

        result = seed_accounts(count=accounts, energy=energy)
    except EnergyError as exc:
        return out.fail(exc)
    out.answer(result, lambda r: out.out.print(
        f"Accounts 1..{r.accounts} exist: [green]{r.created} created[/] with {r.energy} energy, "
        f"{r.accounts - r.created} already there (left unchanged)."
    ))
    return EXIT_CODES["ok"]
