"""``energyctl consume`` and ``energyctl balance``: one request, its outcome and exit code."""

from __future__ import annotations

import typer

from energy.domain.exceptions import EnergyError
from energy.domain.requests import ConsumeRequest, parse_account_id
from energyctl.output import EXIT_CODES, JSON_HELP, OUTCOME_STYLE, Output, show_record
from energyctl.prepare import prepare


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


def run_consume(out: Output, account: str, amount: str, key: str, *, client: str | None = None) -> int:
    try:
        request = ConsumeRequest.from_text(account, amount, key)
        prepare()
        from energy.application.clients import client_id_for
        from energy.application.consume import consume as consume_use_case

        result = consume_use_case(
            account_id=request.account_id, amount=request.amount, idempotency_key=request.idempotency_key,
            client_id=client_id_for(client),
        )
    except EnergyError as exc:
        return out.fail(exc)
    out.answer(result, lambda r: _show_result(out, r))
    return EXIT_CODES[result.status]


def run_balance(out: Output, account: str) -> int:
    try:
        account_id = parse_account_id(account)
        prepare()
        from energy.application.accounts import get_balance

        energy = get_balance(account_id=account_id)
    except EnergyError as exc:
        return out.fail(exc)
    if out.as_json:
        out.document({"account_id": account_id, "energy": energy})
    else:
        out.out.print(f"Account [bold]{account_id}[/] has [bold]{energy}[/] energy.")
    return 0


def _show_result(out: Output, result) -> None:
    style = OUTCOME_STYLE[result.status]
    heading = "applied" if result.status == "applied" else "replayed: already applied earlier, nothing changed"
    show_record(out, result, title=f"[bold {style}]{heading}[/]")
