"""The one rule that decides a consume request, written once.

In order: a key this client used before is a replay (same account and amount) or a mismatch;
then a missing account is not found; then a balance below the amount is refused; else the
request is applied. Pure: the caller reads the facts (the earlier record, the balance under
its row lock) and carries the decision out. The single-request SQL statement applies the
same rule inside PostgreSQL for speed; tests hold it to this function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, NamedTuple, Sequence, Union

from energy.domain.exceptions import (
    AccountNotFound,
    EnergyError,
    IdempotencyKeyMismatch,
    InsufficientEnergy,
)
from energy.domain.requests import ConsumeRequest


class Record(NamedTuple):
    """A stored consumption: what a request applied, and what its replays answer."""

    consumption_id: int
    account_id: int
    amount: int
    idempotency_key: str
    balance_after: int
    created_at: datetime


@dataclass(frozen=True)
class Pending:
    """A request applied earlier in the same list and not stored yet: its record comes with the commit."""

    position: int
    account_id: int
    amount: int


Earlier = Union[Record, Pending]


@dataclass(frozen=True)
class Apply:
    """Record the request and lower the balance to ``balance_after``."""

    balance_after: int


@dataclass(frozen=True)
class Replay:
    """Answer with the earlier request's record under the same key; change nothing."""

    earlier: Earlier


@dataclass(frozen=True)
class Refuse:
    """Change nothing and answer with ``error``."""

    error: EnergyError


Decision = Union[Apply, Replay, Refuse]


def decide(request: ConsumeRequest, *, earlier: Earlier | None, balance: int | None) -> Decision:
    """Decide ``request`` given its key's earlier request (if any) and its account's balance (None: no account)."""
    if earlier is not None:
        if (earlier.account_id, earlier.amount) == (request.account_id, request.amount):
            return Replay(earlier)
        return Refuse(IdempotencyKeyMismatch(request.idempotency_key))
    if balance is None:
        return Refuse(AccountNotFound(request.account_id))
    if balance < request.amount:
        return Refuse(InsufficientEnergy(request.account_id, balance, request.amount))
    return Apply(balance - request.amount)


def plan(
    requests: Sequence[ConsumeRequest], *, stored: Mapping[str, Record], balances: Mapping[int, int]
) -> list[Decision]:
    """Decide a list of requests in order, exactly as one by one: each sees what those before it applied.

    ``stored`` holds the stored records of the list's keys; ``balances`` the balance of every
    account the list names that exists. A replay of a key applied earlier in the list gets
    a ``Pending`` earlier request.
    """
    balances = dict(balances)
    pending: dict[str, Pending] = {}
    decisions: list[Decision] = []
    for position, request in enumerate(requests):
        key = request.idempotency_key
        earlier = pending.get(key) or stored.get(key)
        decision = decide(request, earlier=earlier, balance=balances.get(request.account_id))
        if isinstance(decision, Apply):
            balances[request.account_id] = decision.balance_after
            pending[key] = Pending(position, request.account_id, request.amount)
        decisions.append(decision)
    return decisions
