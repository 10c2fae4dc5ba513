"""Programs that run the real use cases, unchanged, inside a demo process."""

from __future__ import annotations

from django.db import transaction

from energy.application.consume import consume
from energy.domain.exceptions import EnergyError, InsufficientEnergy


def consume_held_open(demo, account_id: int, amount: int, key: str) -> str:
    """The real use case inside a transaction the demo holds open, so the next process lines up behind it."""
    with transaction.atomic():
        try:
            result = consume(account_id=account_id, amount=amount, idempotency_key=key)
        except InsufficientEnergy as exc:
            demo.say(
                f"consume() gets the lock, reads {exc.balance}: {exc.balance} < {amount}, "
                "so insufficient_energy and nothing written"
            )
            outcome = exc.outcome
        else:
            demo.say(
                f"consume() locks the row, reads {result.balance_after + amount}, "
                f"records {amount}, balance {result.balance_after} (not committed yet)"
            )
            outcome = result.status
        demo.pause()
    demo.say("commits")
    return outcome


def burst(demo, requests: list[tuple[int, int, str]]) -> list[dict]:
    """Send each (account_id, amount, key) through the real use case; one outcome per request."""
    outcomes = []
    for account_id, amount, key in requests:
        try:
            result = consume(account_id=account_id, amount=amount, idempotency_key=key)
        except EnergyError as exc:
            outcomes.append({"key": key, "status": exc.outcome})
        else:
            outcomes.append({
                "key": key,
                "status": result.status,
                "consumption_id": result.consumption_id,
                "balance_after": result.balance_after,
            })
    return outcomes


def hold(demo, account_id: int, amount: int, key: str) -> str:
    """The real hold use case: ``amount`` of the account's energy held under ``key``."""
    from energy.application.holds import hold as hold_energy

    return hold_energy(account_id=account_id, amount=amount, idempotency_key=key).status


def resolve_held_open(demo, key: str, resolution: str) -> str:
    """The real capture or void (``resolution``) inside a transaction the demo holds open."""
    from energy.application import holds

    with transaction.atomic():
        try:
            result = getattr(holds, resolution)(idempotency_key=key)
        except EnergyError as exc:
            demo.say(f"{resolution}() gets the lock, answers {exc.outcome} and writes nothing: {exc.detail}")
            outcome = exc.outcome
        else:
            what = f"spends {result.amount}" if resolution == "capture" else f"gives {result.amount} back"
            demo.say(f"{resolution}() locks the account, finds hold {key} open, {what} (not committed yet)")
            outcome = result.status
        demo.pause()
    demo.say("commits")
    return outcome
