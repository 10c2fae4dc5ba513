"""The one rule that decides every request to an account's ledger, written once.

Consume and credit (a new key with an account and an amount), in order: a key this client
used before is a replay (same kind, account and amount) or a mismatch, whatever kind of
entry the key named; then a missing account is not found; then a consume above the balance
is refused, and a credit that would take the balance past the signed 64-bit range is
invalid; else the request is applied.

Reverse (a key that names an earlier entry): no entry under the key is not found; an entry
of a kind that cannot be reversed (a credit) is an invalid state; an entry reversed before
is a replay of that reversal; a reversal that would take the balance past the range is
invalid; else it is applied and gives the entry's amount back.

Pure: the caller reads the facts (the earlier record, the balance under its row lock, the
reversal already recorded) and carries the decision out. The single-request SQL statement
applies the same rule inside PostgreSQL for speed; tests hold it to this function.
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
    InvalidState,
    KeyNotFound,
    OutOfRange,
)
from energy.domain.requests import MAX_INT64, AmountRequest, ReverseRequest

CONSUME, CREDIT, REVERSAL = "consume", "credit", "reversal"
# Entries that take energy away, and so can be given back by a reversal (holds add capture).
REVERSIBLE = (CONSUME,)
# How each kind moves the balance: the chain the audit checks is built from these signs.
SIGN = {CONSUME: -1, CREDIT: +1, REVERSAL: +1}

Request = Union[AmountRequest, ReverseRequest]


class Record(NamedTuple):
    """A stored entry: what a request applied, and what its replays answer.

    A reversal's ``idempotency_key`` is the key of the entry it reverses (it has none of its own).
    """

    entry_id: int
    account_id: int
    amount: int
    idempotency_key: str
    balance_after: int
    created_at: datetime
    kind: str = CONSUME


@dataclass(frozen=True)
class Pending:
    """A request applied earlier in the same list and not stored yet: its record comes with the commit."""

    position: int
    account_id: int
    amount: int
    kind: str = CONSUME


Earlier = Union[Record, Pending]


@dataclass(frozen=True)
class Apply:
    """Record the request and move the balance to ``balance_after``."""

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


def decide(request: Request, *, earlier: Earlier | None, balance: int | None,
           reversal: Record | None = None) -> Decision:
    """Decide ``request`` given the facts: the earlier entry under its key (if any), the balance
    of the account it changes (None: no account) and, for a reverse, that entry's reversal."""
    if isinstance(request, ReverseRequest):
        return _reverse(request, target=earlier, balance=balance, reversal=reversal)
    if earlier is not None:
        if (earlier.kind, earlier.account_id, earlier.amount) == (request.kind, request.account_id, request.amount):
            return Replay(earlier)
        return Refuse(IdempotencyKeyMismatch(request.idempotency_key))
    if balance is None:
        return Refuse(AccountNotFound(request.account_id))
    if request.kind == CREDIT:
        return _give(request.account_id, balance, request.amount)
    if balance < request.amount:
        return Refuse(InsufficientEnergy(request.account_id, balance, request.amount))
    return Apply(balance - request.amount)


def _reverse(request: ReverseRequest, *, target: Earlier | None, balance: int | None,
             reversal: Record | None) -> Decision:
    key = request.idempotency_key
    if target is None:
        return Refuse(KeyNotFound(key))
    if target.kind not in REVERSIBLE:
        return Refuse(InvalidState(key, target.kind, "consumptions"))
    if reversal is not None:
        return Replay(reversal)
    if balance is None:  # an account with entries cannot be deleted; checked all the same
        return Refuse(AccountNotFound(target.account_id))
    return _give(target.account_id, balance, target.amount)


def _give(account_id: int, balance: int, amount: int) -> Decision:
    """Raise the balance by ``amount``, unless it would no longer fit its signed 64-bit column."""
    if balance > MAX_INT64 - amount:
        return Refuse(OutOfRange(account_id, balance, amount))
    return Apply(balance + amount)


def plan(
    requests: Sequence[AmountRequest], *, stored: Mapping[str, Record], balances: Mapping[int, int]
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
            pending[key] = Pending(position, request.account_id, request.amount, request.kind)
        decisions.append(decision)
    return decisions
