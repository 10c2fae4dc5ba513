"""``energyctl show``, ``history`` and ``audit``: questions about the ledger that change nothing."""

from __future__ import annotations

import typer

from energy.domain.exceptions import EnergyError
from energy.domain.requests import check_page_limit, parse_account_id, parse_idempotency_key, parse_positive_int
from energyctl.output import EXIT_CODES, JSON_HELP, Output, escape, exit_help, show_record
from energyctl.prepare import prepare

DEFAULT_LIMIT = 20  # the contract's default; the use case validates the range

SHOW_HELP = f"""Show the consumption recorded under a key, as first answered; sends no request, changes nothing.

{exit_help("ok", "invalid_request", "key_not_found", "client_not_found", "unavailable")}
"""
HISTORY_HELP = f"""Show an account's balance and its entries of every kind, newest first, with the client of each.

A hold shows its state and when it expires; a capture what it released.

{exit_help("ok", "invalid_request", "account_not_found", "unavailable")}
"""
AUDIT_HELP = f"""Check the whole ledger in one pass: balances, each account's chain of records, keys applied twice.

Violations are listed by account. {exit_help("ok", "violations", "unavailable")}
"""


def register(app: typer.Typer) -> None:
    app.command(help=SHOW_HELP, epilog="Example: energyctl show --key order-17 --json")(show)
    app.command(help=HISTORY_HELP, epilog="Example: energyctl history --account 42 --limit 5")(history)
    app.command(help=AUDIT_HELP, epilog="Example: energyctl audit --json")(audit)


def show(
    key: str = typer.Option(..., "--key", metavar="TEXT", help="The idempotency key to look up."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False,
                               help="Look in this client's key space (default: operator, the command line's own)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_show(Output(as_json=as_json), key, client=client))


def run_show(out: Output, key: str, *, client: str | None = None) -> int:
    try:
        key = parse_idempotency_key(key)
        prepare()
        from energy.application.clients import client_id_for
        from energy.application.ledger import get_record

        result = get_record(client_id=client_id_for(client), idempotency_key=key)
    except EnergyError as exc:
        return out.fail(exc)
    out.answer(result, lambda r: show_record(
        out, r, title=f"[bold green]applied[/] under key {escape(r.idempotency_key)}"))
    return EXIT_CODES["ok"]


def history(
    account: str = typer.Option(..., "--account", metavar="INTEGER", help="Account id (positive integer)."),
    limit: str = typer.Option(str(DEFAULT_LIMIT), "--limit", metavar="INTEGER",
                              help="How many consumptions, newest first (1-1000)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    raise typer.Exit(run_history(Output(as_json=as_json), account, limit))


def run_history(out: Output, account: str, limit: str) -> int:
    try:
        account_id = parse_account_id(account)
        count = check_page_limit(parse_positive_int(limit, "limit"))
        prepare()
        from energy.application.ledger import account_history

        found = account_history(account_id=account_id, limit=count)
    except EnergyError as exc:
        return out.fail(exc)
    out.answer(found, lambda f: _history_table(out, f))
    return EXIT_CODES["ok"]


def audit(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    raise typer.Exit(run_audit(Output(as_json=as_json)))


def run_audit(out: Output) -> int:
    try:
        prepare()
        from energy.application.audit import audit_ledger

        report = audit_ledger()
    except EnergyError as exc:
        return out.fail(exc)
    out.answer(report, lambda r: _audit_summary(out, r))
    return EXIT_CODES["ok" if report.clean else "violations"]


def _history_table(out: Output, found) -> None:
    from rich import box
    from rich.table import Table

    body = found.to_dict()
    held = f", {body['held']} held" if "held" in body else ""
    table = Table(title=f"Account {found.account_id}: {found.energy} energy{held}", title_justify="left",
                  box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    # The hold columns only when a hold, capture or void is on the page: a page of consumptions stays narrow.
    holds = any("held_after" in entry for entry in body["entries"])
    numbers = ("amount", "energy after", *(("held after",) if holds else ()))
    # Widths that keep a date, a client, a key and "released N" whole on an 80-column terminal.
    least = {"recorded at": 10, "client": 8, "key": 8, "hold": 11}
    for column in ("entry", "kind", "recorded at", "client", "key", *numbers, *(("hold",) if holds else ())):
        table.add_column(column, justify="right" if column in numbers else "left", min_width=least.get(column),
                         no_wrap=column in ("entry", "kind"), overflow="fold")
    for entry in body["entries"]:
        # A space, not ISO's T, so that a narrow terminal wraps the time under the date.
        row = [str(entry["entry_id"] if "entry_id" in entry else entry["consumption_id"]), entry["kind"],
               entry["created_at"][:19].replace("T", " "), escape(entry["client"]), escape(entry["idempotency_key"]),
               str(entry["amount"]), str(entry["balance_after"])]
        if holds:
            row += [str(entry.get("held_after", "")), _hold_fields(entry)]
        table.add_row(*row)
    out.out.print(table if found.entries else f"{table.title}; no entries.")
    if found.more:
        out.note(f"(newest {len(found.entries)} shown; more with --limit)")


def _hold_fields(entry: dict) -> str:
    """What a hold's line adds: its state (its expiry is in --json); a capture's, what it released."""
    if "state" in entry:
        return entry["state"]
    if "released" in entry:
        return f"released {entry['released']}"
    return ""


def _audit_summary(out: Output, report) -> None:
    checked = f"{report.accounts} accounts, {report.consumptions} consumptions, {report.seconds:.2f} s"
    if report.clean:
        out.out.print(f"[bold green]consistent[/]: {checked}")
        return
    from rich.table import Table

    table = Table(title=f"[bold red]{len(report.violations)} violations[/] ({checked})", title_justify="left")
    table.add_column("account", justify="right")
    table.add_column("problem")
    for violation in report.violations:
        table.add_row(str(violation.account_id), escape(violation.problem))
    out.out.print(table)
