"""``energyctl clients add | list | rotate | revoke``: who may call the HTTP API.

A token is printed once, on stdout, when it is issued; no command prints it again.
"""

from __future__ import annotations

import typer

from energy.domain.exceptions import EnergyError, InvalidRequest
from energyctl.output import JSON_HELP, Output, escape, exit_help
from energyctl.prepare import prepare

STORE_IT_NOW = ("[bold yellow]Store this token now, it will not be shown again.[/] "
                "Send it as 'Authorization: Bearer <token>'.")

ADD_HELP = f"""Add a client and print its token, once. A bad or taken name is invalid_request.

{exit_help("ok", "invalid_request", "unavailable")}
"""
ROTATE_HELP = f"""Give a client a new token (printed once); the old one stops working at once, or after \
--keep-old-for seconds (both work meanwhile).

A revoked client is re-admitted with the new token only. A bad --keep-old-for is invalid_request.

{exit_help("ok", "invalid_request", "client_not_found", "unavailable")}
"""
REVOKE_HELP = f"""Revoke a client's token: it stops working at once.

{exit_help("ok", "invalid_request", "client_not_found", "unavailable")}
"""

clients = typer.Typer(
    name="clients", no_args_is_help=True, rich_markup_mode=None,
    help="Clients of the HTTP API: each has one token, scopes and an account allow-list.",
)


def register(app: typer.Typer) -> None:
    app.add_typer(clients)


@clients.command(help=ADD_HELP, epilog="Example: energyctl clients add shop --accounts 1,2 "
                                       "--scopes consume,read,credit")
def add(
    name: str = typer.Argument(..., metavar="NAME",
                               help="1-64 letters, digits, '.', '_' or '-'; 'operator' is reserved."),
    accounts: str = typer.Option(None, "--accounts", metavar="1,2,3", show_default=False,
                                 help="The only accounts the client may use."),
    all_accounts: bool = typer.Option(False, "--all-accounts", help="The client may use every account."),
    scopes: str = typer.Option(None, "--scopes", metavar="consume,read,credit", show_default=False,
                               help="What the client may do (default: consume,read); "
                                    "credit lets it credit and reverse."),
    read_only: bool = typer.Option(False, "--read-only", help="Scope 'read' only, the same as --scopes read."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    out = Output(as_json=as_json)
    try:
        from energy.domain.clients import check_name

        check_name(name)  # refused before any database is started or reached
        allowed = _allow_list(accounts, all_accounts)
        granted = _scopes(scopes, read_only)
        prepare()
        from energy.application.clients import add_client

        issued = add_client(name=name, accounts=allowed, scopes=granted)
    except EnergyError as exc:
        raise typer.Exit(out.fail(exc)) from None
    _show_token(out, issued.to_dict())


@clients.command(name="list", epilog="Example: energyctl clients list --json")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the clients, their scopes, accounts and last use; never a token."""
    out = Output(as_json=as_json)
    try:
        prepare()
        from energy.application.clients import list_clients

        found = list_clients()
    except EnergyError as exc:
        raise typer.Exit(out.fail(exc)) from None
    if out.as_json:
        out.document({"clients": found})
    else:
        _show_clients(out, found)


@clients.command(help=ROTATE_HELP, epilog="Example: energyctl clients rotate shop --keep-old-for 3600")
def rotate(
    name: str = typer.Argument(..., metavar="NAME", help="The client's name."),
    keep_old_for: str = typer.Option("0", "--keep-old-for", metavar="SECONDS",
                                     help="Keep the old token working this long (0 to 604800), "
                                          "so the new one can be rolled out first."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    out = Output(as_json=as_json)
    try:
        from energy.domain.clients import parse_keep_old_for

        seconds = parse_keep_old_for(keep_old_for)  # refused before any database is started or reached
        prepare()
        from energy.application.clients import rotate_token

        issued = rotate_token(name=name, keep_old_for=seconds)
    except EnergyError as exc:
        raise typer.Exit(out.fail(exc)) from None
    _show_token(out, {"client": issued.client, "token": issued.token})
    if issued.old_token_kept_for:
        out.note(f"The old token keeps working for {issued.old_token_kept_for} s, then stops.")


@clients.command(help=REVOKE_HELP, epilog="Example: energyctl clients revoke shop")
def revoke(
    name: str = typer.Argument(..., metavar="NAME", help="The client's name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    out = Output(as_json=as_json)
    try:
        prepare()
        from energy.application.clients import revoke_client

        revoke_client(name=name)
    except EnergyError as exc:
        raise typer.Exit(out.fail(exc)) from None
    if out.as_json:
        out.document({"client": name, "active": False})
    else:
        out.out.print(f"Client [bold]{escape(name)}[/] is revoked: its token no longer works.")


def _allow_list(accounts: str | None, all_accounts: bool) -> list[int] | None:
    """The allow-list from the options: exactly one of --accounts and --all-accounts."""
    if (accounts is None) == (not all_accounts):
        raise InvalidRequest({"accounts": "give exactly one of --accounts 1,2,3 and --all-accounts"})
    if all_accounts:
        return None
    from energy.domain.clients import parse_account_list

    return parse_account_list(accounts)


def _scopes(scopes: str | None, read_only: bool) -> list[str] | None:
    """The scopes from the options: --scopes, or --read-only (read alone), or None for the default."""
    if scopes is not None and read_only:
        raise InvalidRequest({"scopes": "give at most one of --scopes and --read-only"})
    if read_only:
        return ["read"]
    if scopes is None:
        return None
    from energy.domain.clients import parse_scopes

    return parse_scopes(scopes)


def _show_token(out: Output, issued: dict) -> None:
    if out.as_json:
        out.document(issued)
    else:
        from rich.table import Table

        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="dim")
        table.add_column()
        table.add_row("client", escape(issued["client"]))
        if "scopes" in issued:
            table.add_row("scopes", ", ".join(issued["scopes"]))
            table.add_row("accounts", _accounts_text(issued["accounts"]))
        table.add_row("token", issued["token"])
        out.out.print(table)
    out.note(STORE_IT_NOW)


def _show_clients(out: Output, found: list[dict]) -> None:
    if not found:
        out.note("No clients yet: add one with 'energyctl clients add NAME --accounts 1,2'.")
        return
    from rich.table import Table

    table = Table("client", "scopes", "accounts", "active", "created", "last used")
    for row in found:
        table.add_row(escape(row["client"]), ", ".join(row["scopes"]), _accounts_text(row["accounts"]),
                      "yes" if row["active"] else "[red]revoked[/]", _moment(row["created_at"]),
                      _moment(row["last_used_at"]) or "never")
    out.out.print(table)


def _moment(iso: str | None) -> str | None:
    """An ISO timestamp to the second, for a table people read; JSON keeps the full value."""
    return None if iso is None else iso[:19].replace("T", " ") + " UTC"


def _accounts_text(accounts) -> str:
    return "all" if accounts == "all" else ",".join(str(a) for a in accounts)
