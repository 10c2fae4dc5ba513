"""What ``energyctl consume`` and ``energyctl balance`` do once their options are read.

No Typer here: the declarations are in ``consume_cmd``, and ``fast_path`` runs these
directly for a plain command line.
"""

from __future__ import annotations

from energy.domain.exceptions import EnergyError
from energy.domain.requests import ConsumeRequest, parse_account_id
from energy.presenters.output import EXIT_CODES, OUTCOME_STYLE, Output, show_record
from energyctl.bootstrap import prepare_database


def run_consume(out: Output, account: str, amount: str, key: str, *, client: str | None = None) -> int:
    try:
        request = ConsumeRequest.from_text(account, amount, key)
        prepare_database()
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
        prepare_database()
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
