"""``energyctl hold``, ``capture``, ``void`` and ``holds expire``: energy reserved now, spent or given back later.

A hold moves energy from ``energy`` to ``held`` under a new key; capture spends all or part of
it and returns the rest; void returns all of it; a hold left alone expires, and from then on
its energy is spendable again whether or not ``holds expire`` has run.
"""

from __future__ import annotations

import typer

from energy.domain.exceptions import EnergyError
from energy.domain.holds import DEFAULT_EXPIRES_IN
from energy.domain.requests import CaptureRequest, HoldRequest, VoidRequest
from energyctl.commands.consume import ACCOUNT_OPTION, CLIENT_HELP
from energyctl.output import EXIT_CODES, JSON_HELP, OUTCOME_STYLE, Output, escape, exit_help
from energyctl.prepare import prepare

HOLD_HELP = f"""Reserve energy on an account exactly once per idempotency key: it moves from energy to held.

The hold stays open until it is captured, voided or it expires (--expires-in seconds, 1 to \
604800, default {DEFAULT_EXPIRES_IN}). A retry with the same key answers the original result \
(replayed); the same key with another kind, account or amount is idempotency_key_mismatch.

{exit_help("applied", "replayed", "invalid_request", "insufficient_energy", "account_not_found",
           "client_not_found", "idempotency_key_mismatch", "unavailable")}
"""
CAPTURE_HELP = f"""Spend all (default) or --amount of the open hold recorded under a key; the rest goes back to energy.

The same capture again answers the original (replayed); another amount is \
idempotency_key_mismatch; an amount above the hold is invalid_request; a hold voided or \
expired is invalid_state.

{exit_help("applied", "replayed", "invalid_request", "key_not_found", "client_not_found",
           "idempotency_key_mismatch", "invalid_state", "unavailable")}
"""
VOID_HELP = f"""Give the open hold recorded under a key back to energy.

Again: replayed. A hold captured or expired is invalid_state.

{exit_help("applied", "replayed", "invalid_request", "key_not_found", "client_not_found",
           "invalid_state", "unavailable")}
"""
EXPIRE_HELP = f"""Release every expired hold now (for cron).

Nothing depends on running it: an expired hold's energy is spendable and shown as energy \
from the moment it expires. This only writes that down.

{exit_help("ok", "unavailable")}
"""

holds = typer.Typer(name="holds", no_args_is_help=True, rich_markup_mode=None,
                    help="Holds as a whole: release the expired ones.")


def register(app: typer.Typer) -> None:
    app.command(help=HOLD_HELP,
                epilog="Example: energyctl hold --account 1 --amount 40 --key order-17 --expires-in 600")(hold)
    app.command(help=CAPTURE_HELP, epilog="Example: energyctl capture --key order-17 --amount 25")(capture)
    app.command(help=VOID_HELP, epilog="Example: energyctl void --key order-17 --json")(void)
    app.add_typer(holds)


KEY_HELP = "Idempotency key: 1-255 characters; reuse it to retry safely."
HOLD_KEY_HELP = "The key the hold was recorded under."


def hold(
    account: str = typer.Option(..., "--account", **ACCOUNT_OPTION),
    amount: str = typer.Option(..., "--amount", metavar="INTEGER", help="Energy to reserve (positive integer)."),
    key: str = typer.Option(..., "--key", metavar="TEXT", help=KEY_HELP),
    expires_in: str = typer.Option(str(DEFAULT_EXPIRES_IN), "--expires-in", metavar="SECONDS",
                                   help="Whole seconds the hold lives, 1 to 604800 (7 days)."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False, help=CLIENT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_hold(Output(as_json=as_json), account, amount, key, expires_in, client=client))


def capture(
    key: str = typer.Option(..., "--key", metavar="TEXT", help=HOLD_KEY_HELP),
    amount: str = typer.Option(None, "--amount", metavar="INTEGER", show_default=False,
                               help="Energy to spend, at most the hold's (default: all of it)."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False, help=CLIENT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_capture(Output(as_json=as_json), key, amount, client=client))


def void(
    key: str = typer.Option(..., "--key", metavar="TEXT", help=HOLD_KEY_HELP),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False, help=CLIENT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_void(Output(as_json=as_json), key, client=client))


@holds.command(help=EXPIRE_HELP, epilog="Example: energyctl holds expire --json")
def expire(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    raise typer.Exit(run_expire(Output(as_json=as_json)))


def run_hold(out: Output, account: str, amount: str, key: str, expires_in: str, *, client: str | None = None) -> int:
    def work():
        request = HoldRequest.from_text(account, amount, key, expires_in)
        prepare()
        from energy.application.clients import client_id_for
        from energy.application.holds import hold as hold_use_case

        return hold_use_case(account_id=request.account_id, amount=request.amount,
                             idempotency_key=request.idempotency_key, expires_in=request.expires_in,
                             client_id=client_id_for(client))

    return out.run(work, lambda r: show_hold_entry(out, r))


def run_capture(out: Output, key: str, amount: str | None, *, client: str | None = None) -> int:
    def work():
        request = CaptureRequest.from_text(key, amount)
        prepare()
        from energy.application.clients import client_id_for
        from energy.application.holds import capture as capture_use_case

        return capture_use_case(idempotency_key=request.idempotency_key, amount=request.amount,
                                client_id=client_id_for(client))

    return out.run(work, lambda r: show_hold_entry(out, r))


def run_void(out: Output, key: str, *, client: str | None = None) -> int:
    def work():
        request = VoidRequest.from_text(key)
        prepare()
        from energy.application.clients import client_id_for
        from energy.application.holds import void as void_use_case

        return void_use_case(idempotency_key=request.idempotency_key, client_id=client_id_for(client))

    return out.run(work, lambda r: show_hold_entry(out, r))


def run_expire(out: Output) -> int:
    try:
        prepare()
        from energy.application.holds import expire_holds

        released = expire_holds()
    except EnergyError as exc:
        return out.fail(exc)
    if out.as_json:
        out.document(released)
    else:
        out.out.print(f"Released [bold]{released['released']}[/] expired holds: [bold]{released['energy']}[/] "
                      f"energy back on {released['accounts']} accounts.")
    return EXIT_CODES["ok"]


def show_hold_entry(out: Output, result) -> None:
    """A hold, capture or void entry as a two-column table, for people."""
    from rich.table import Table

    body = result.to_dict()
    style = OUTCOME_STYLE[result.status]
    heading = f"{result.kind} applied" if result.status == "applied" else (
        f"{result.kind} replayed: already applied earlier, nothing changed")
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0), title_justify="left",
                  title=f"[bold {style}]{heading}[/]")
    table.add_column(style="dim")
    table.add_column()
    table.add_row("account", str(body["account_id"]))
    table.add_row("amount", str(body["amount"]))
    if "released" in body:
        table.add_row("released", str(body["released"]))
    table.add_row("energy after", str(body["balance_after"]))
    if "held_after" in body:
        table.add_row("held after", str(body["held_after"]))
    if "expires_at" in body:
        table.add_row("expires at", str(body["expires_at"]))
    table.add_row("hold key" if result.kind != "hold" else "key", escape(body["idempotency_key"]))
    table.add_row("entry", str(body["entry_id"]))
    table.add_row("recorded at", body["created_at"])
    out.out.print(table)
