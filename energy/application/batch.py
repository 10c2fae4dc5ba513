"""Consume many requests at once, with the same outcome per request as one by one."""

from __future__ import annotations

from typing import Sequence

from energy.application.consume import ConsumeResult, consume
from energy.domain.exceptions import EnergyError
from energy.domain.requests import ConsumeRequest


def consume_many(requests: Sequence[ConsumeRequest]) -> list[ConsumeResult | EnergyError]:
    """Apply ``requests`` in order; each gets a ConsumeResult or the EnergyError it ended in."""
    outcomes: list[ConsumeResult | EnergyError] = []
    for request in requests:
        try:
            outcomes.append(
                consume(
                    account_id=request.account_id,
                    amount=request.amount,
                    idempotency_key=request.idempotency_key,
                )
            )
        except EnergyError as exc:
            outcomes.append(exc)
    return outcomes
