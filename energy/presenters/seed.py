"""Seeding, as ``energyctl seed`` and ``manage.py seed_accounts`` show it: make accounts 1..N exist."""

from __future__ import annotations

from energy.domain.exceptions import EnergyError
from energy.presenters.output import Output
from energy.schema import ensure_schema


def run_seed(out: Output, *, accounts: int, energy: int) -> int:
    try:
        ensure_schema()
        from energy.application.accounts import seed_accounts

        result = seed_accounts(count=accounts, energy=energy)
    except EnergyError as exc:
        return out.fail(exc)
    if out.as_json:
        out.document(result.to_dict())
    else:
        out.out.print(
            f"Accounts 1..{result.accounts} exist: [green]{result.created} created[/] with {result.energy} energy, "
            f"{result.accounts - result.created} already there (left unchanged)."
        )
    return 0
