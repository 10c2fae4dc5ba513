"""``energyctl consume`` and ``energyctl balance``: one request, its outcome and exit code."""

from __future__ import annotations

import typer

from energy.presenters.output import JSON_HELP, Output
from energyctl.consume_run import run_balance, run_consume


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: energyctl consume --account 1 --amount 30 --key order-17")(consume)
    app.command(epilog="Example: energyctl balance --account 1 --json")(balance)


def consume(
    account: str = typer.Option(..., "--account", help="Account id (positive integer)."),
    amount: str = typer.Option(..., "--amount", help="Energy to spend (positive integer)."),
    key: str = typer.Option(..., "--key", help="Idempotency key: 1-255 characters; reuse it to retry safely."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False,
                               help="Act in this client's idempotency-key space "
                                    "[default: operator, the command line's own]."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Spend energy from an account exactly once per idempotency key.

    Exit 0 applied or replayed, 2 invalid input, 3 insufficient energy, 4 no such account, \
5 key already used for another request (or no such --client), 75 database unavailable (retry with the same key).
    """
    raise typer.Exit(run_consume(Output(as_json=as_json), account, amount, key, client=client))


def balance(
    account: str = typer.Option(..., "--account", help="Account id (positive integer)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show the energy left on an account. Exit 4 if there is no such account."""
    raise typer.Exit(run_balance(Output(as_json=as_json), account))
