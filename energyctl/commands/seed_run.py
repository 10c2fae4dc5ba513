"""Seeding, as ``energyctl seed`` and ``manage.py seed_accounts`` show it: make accounts 1..N exist."""

from __future__ import annotations

from energy.domain.exceptions import EnergyError
from energyctl.output import Output
from energyctl.prepare import prepare


def run_seed(out: Output, *, accounts: int, energy: int) -> int:
    try:
        prepare()
        from energy.application.accounts import seed_accounts

        result = seed_accounts(count=accounts, energy=energy)
    except EnergyError as exc:
        return out.fail(exc)
    out.answer(result, lambda r: out.out.print(
        f"Accounts 1..{r.accounts} exist: [green]{r.created} created[/] with {r.energy} energy, "
        f"{r.accounts - r.created} already there (left unchanged)."
    ))
    return 0
