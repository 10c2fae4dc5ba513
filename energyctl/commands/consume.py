"""``energyctl consume`` and ``energyctl balance``: one request, its outcome and exit code."""

from __future__ import annotations

import typer

from energy.domain.exceptions import EnergyError
from energy.domain.requests import ConsumeRequest, parse_account_id
from energyctl.output import EXIT_CODES, JSON_HELP, OUTCOME_STYLE, Output, exit_help, show_record
from energyctl.prepare import prepare

# Integers are read as text, so that a bad one gets the contract's invalid_request message
# (naming the field) rather than a usage error; INTEGER says what to give.
ACCOUNT_OPTION = dict(metavar="INTEGER", help="Account id (positive integer).")
CLIENT_HELP = "Act in this client's idempotency-key space (default: operator, the command line's own)."

CONSUME_HELP = f"""Spend energy from an account exactly once per idempotency key.

A retry with the same key answers the original result (replayed) and changes nothing; \
unavailable is safe to retry with the same key.

{exit_help("applied", "replayed", "invalid_request", "insufficient_energy", "account_not_found",
           "client_not_found", "idempotency_key_mismatch", "unavailable")}
"""
BALANCE_HELP = f"""Show the energy left on an account, and the energy its open holds reserve (held).

A hold that has expired is energy again from that moment, whether or not `holds expire` has run.

{exit_help("ok", "invalid_request", "account_not_found", "unavailable")}
"""


def register(app: typer.Typer) -> None:
    app.command(help=CONSUME_HELP, epilog="Example: energyctl consume --account 1 --amount 30 --key order-17")(
        consume)
    app.command(help=BALANCE_HELP, epilog="Example: energyctl balance --account 1 --json")(balance)


def consume(
    account: str = typer.Option(..., "--account", **ACCOUNT_OPTION),
    amount: str = typer.Option(..., "--amount", metavar="INTEGER", help="Energy to spend (positive integer)."),
    key: str = typer.Option(..., "--key", metavar="TEXT",
                            help="Idempotency key: 1-255 characters; reuse it to retry safely."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False, help=CLIENT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_consume(Output(as_json=as_json), account, amount, key, client=client))


def balance(
    account: str = typer.Option(..., "--account", **ACCOUNT_OPTION),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_balance(Output(as_json=as_json), account))


def run_consume(out: Output, account: str, amount: str, key: str, *, client: str | None = None) -> int:
    def work():
        request = ConsumeRequest.from_text(account, amount, key)
        prepare()
        from energy.application.clients import client_id_for
        from energy.application.consume import consume as consume_use_case

        return consume_use_case(
            account_id=request.account_id, amount=request.amount, idempotency_key=request.idempotency_key,
            client_id=client_id_for(client),
        )

    return out.run(work, lambda r: _show_result(out, r))


def run_balance(out: Output, account: str) -> int:
    try:
        account_id = parse_account_id(account)
        prepare()
        from energy.application.accounts import get_account

        account_now = get_account(account_id=account_id)
    except EnergyError as exc:
        return out.fail(exc)
    if out.as_json:
        out.document(account_now)
    else:
        held = f" ([bold]{account_now['held']}[/] more held)" if account_now["held"] else ""
        out.out.print(f"Account [bold]{account_id}[/] has [bold]{account_now['energy']}[/] energy{held}.")
    return EXIT_CODES["ok"]


def _show_result(out: Output, result) -> None:
    style = OUTCOME_STYLE[result.status]
    heading = "applied" if result.status == "applied" else "replayed: already applied earlier, nothing changed"
    show_record(out, result, title=f"[bold {style}]{heading}[/]")
