"""``energyctl show``, ``history`` and ``audit``: questions about the ledger that change nothing."""

from __future__ import annotations

import typer

from energy.domain.exceptions import EnergyError
from energy.domain.requests import check_page_limit, parse_account_id, parse_idempotency_key, parse_positive_int
from energyctl.output import EXIT_FAILED, JSON_HELP, Output, escape, show_record
from energyctl.prepare import prepare

DEFAULT_LIMIT = 20  # the contract's default; the use case validates the range


def register(app: typer.Typer) -> None:
    app.command(epilog="Example: energyctl show --key order-17 --json")(show)
    app.command(epilog="Example: energyctl history --account 42 --limit 5")(history)
    app.command(epilog="Example: energyctl audit --json")(audit)


def show(
    key: str = typer.Option(..., "--key", help="The idempotency key to look up."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False,
                               help="Look in this client's key space (default: operator, the command line's own)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show the consumption recorded under a key, as first answered; sends no request, changes nothing.

    Exit 0 found, 2 invalid key, 4 no such key (or no such --client), 75 database unavailable.
    """
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
    return 0


def history(
    account: str = typer.Option(..., "--account", help="Account id (positive integer)."),
    limit: str = typer.Option(str(DEFAULT_LIMIT), "--limit", help="How many consumptions, newest first (1-1000)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show an account's balance and its consumptions, newest first, with the client of each.

    Exit 0 shown, 2 invalid input, 4 no such account, 75 database unavailable.
    """
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
    return 0


def audit(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Check the whole ledger in one pass: balances, each account's chain of records, keys applied twice.

    Exit 0 consistent, 1 violations (listed by account), 75 database unavailable.
    """
    raise typer.Exit(run_audit(Output(as_json=as_json)))


def run_audit(out: Output) -> int:
    try:
        prepare()
        from energy.application.audit import audit_ledger

        report = audit_ledger()
    except EnergyError as exc:
        return out.fail(exc)
    out.answer(report, lambda r: _audit_summary(out, r))
    return 0 if report.clean else EXIT_FAILED


def _history_table(out: Output, found) -> None:
    from rich.table import Table

    table = Table(title=f"Account {found.account_id}: {found.energy} energy", title_justify="left")
    for column in ("consumption", "recorded at", "client", "key", "amount", "balance after"):
        table.add_column(column, justify="right" if column in ("amount", "balance after") else "left")
    for entry in found.entries:
        r = entry.result
        table.add_row(str(r.consumption_id), r.created_at.isoformat(timespec="seconds"), escape(entry.client),
                      escape(r.idempotency_key), str(r.amount), str(r.balance_after))
    out.out.print(table if found.entries else f"{table.title}; no consumptions.")
    if found.more:
        out.note(f"(newest {len(found.entries)} shown; more with --limit)")


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
