"""``energyctl credit`` and ``energyctl reverse``: energy put back into an account, exactly once per key."""

from __future__ import annotations

import typer

from energy.domain.requests import CreditRequest, ReverseRequest
from energyctl.commands.consume import ACCOUNT_OPTION, CLIENT_HELP
from energyctl.output import JSON_HELP, OUTCOME_STYLE, Output, escape, exit_help
from energyctl.prepare import prepare

CREDIT_HELP = f"""Add energy to an account exactly once per idempotency key.

A retry with the same key answers the original result (replayed) and changes nothing. A key \
already used for another kind of request, account or amount is idempotency_key_mismatch; a \
credit that would take the account past 2**63 - 1 is invalid_request.

{exit_help("applied", "replayed", "invalid_request", "account_not_found", "client_not_found",
           "idempotency_key_mismatch", "unavailable")}
"""
REVERSE_HELP = f"""Give back, exactly once, the energy of the consumption recorded under a key.

The first call records a reversal; later calls answer it again (replayed). No entry under the \
key is key_not_found; a key that names a credit is invalid_state.

{exit_help("applied", "replayed", "invalid_request", "key_not_found", "client_not_found",
           "invalid_state", "unavailable")}
"""


def register(app: typer.Typer) -> None:
    app.command(help=CREDIT_HELP, epilog="Example: energyctl credit --account 1 --amount 50 --key topup-17")(credit)
    app.command(help=REVERSE_HELP, epilog="Example: energyctl reverse --key order-17 --json")(reverse)


def credit(
    account: str = typer.Option(..., "--account", **ACCOUNT_OPTION),
    amount: str = typer.Option(..., "--amount", metavar="INTEGER", help="Energy to add (positive integer)."),
    key: str = typer.Option(..., "--key", metavar="TEXT",
                            help="Idempotency key: 1-255 characters; reuse it to retry safely."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False, help=CLIENT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_credit(Output(as_json=as_json), account, amount, key, client=client))


def reverse(
    key: str = typer.Option(..., "--key", metavar="TEXT", help="The key the consumption was recorded under."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False, help=CLIENT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_reverse(Output(as_json=as_json), key, client=client))


def run_credit(out: Output, account: str, amount: str, key: str, *, client: str | None = None) -> int:
    def work():
        request = CreditRequest.from_text(account, amount, key)
        prepare()
        from energy.application.clients import client_id_for
        from energy.application.entries import credit as credit_use_case

        return credit_use_case(account_id=request.account_id, amount=request.amount,
                               idempotency_key=request.idempotency_key, client_id=client_id_for(client))

    return out.run(work, lambda r: _show_entry(out, r))


def run_reverse(out: Output, key: str, *, client: str | None = None) -> int:
    def work():
        request = ReverseRequest.from_text(key)
        prepare()
        from energy.application.clients import client_id_for
        from energy.application.entries import reverse as reverse_use_case

        return reverse_use_case(idempotency_key=request.idempotency_key, client_id=client_id_for(client))

    return out.run(work, lambda r: _show_entry(out, r))


def _show_entry(out: Output, result) -> None:
    from rich.table import Table

    style = OUTCOME_STYLE[result.status]
    heading = f"{result.kind} applied" if result.status == "applied" else (
        f"{result.kind} replayed: already applied earlier, nothing changed")
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0), title_justify="left",
                  title=f"[bold {style}]{heading}[/]")
    table.add_column(style="dim")
    table.add_column()
    body = result.to_dict()
    table.add_row("account", str(result.account_id))
    table.add_row("amount", f"+{result.amount}")
    table.add_row("balance after", str(result.balance_after))
    table.add_row("reverses key" if "reverses" in body else "key", escape(result.idempotency_key))
    table.add_row("entry", str(result.entry_id))
    table.add_row("recorded at", body["created_at"])
    out.out.print(table)
