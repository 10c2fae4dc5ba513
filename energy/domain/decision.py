"""The one rule that decides every request to an account's ledger, written once.

Consume and credit (a new key with an account and an amount), in order: a key this client
used before is a replay (same kind, account and amount) or a mismatch, whatever kind of
entry the key named; then a missing account is not found; then a consume above the balance
is refused, and a credit that would take the balance past the signed 64-bit range is
invalid; else the request is applied.

A hold is decided as a consume (it takes energy, into held), with its lifetime part of what
a replay must repeat. Balances are ``energy`` (spendable) and ``held`` (reserved by open
holds); a credit or reversal may not take energy + held past the signed 64-bit range.

Reverse (a key that names an earlier entry): no entry under the key is not found; a hold
stands for its capture, if it has one; an entry of a kind that cannot be reversed (a credit,
a hold not captured) is an invalid state; an entry reversed before is a replay of that
reversal; a reversal that would take the total past the range is invalid; else it is
applied and gives the entry's amount back.

Capture and void (a key that names a hold): no entry under the key is not found; an entry
that is not a hold is an invalid state; a capture above the hold's amount is invalid; a hold
already resolved answers a replay when it was resolved the same way (a capture of the same
amount), a mismatch when captured with another amount, else an invalid state; a hold that
expired is an invalid state; else it is applied: the hold's amount leaves held, the part not
captured goes back to energy.

Pure: the caller reads the facts (the earlier record, the balances under the account's row
lock once expired holds are released, the reversal or resolution already recorded) and
carries the decision out. The single-request SQL statement
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
    InvalidRequest,
    InvalidState,
    KeyNotFound,
    OutOfRange,
)
from energy.domain.holds import EXPIRED, OPEN
from energy.domain.requests import (
    MAX_INT64,
    AmountRequest,
    CaptureRequest,
    HoldRequest,
    ReverseRequest,
    VoidRequest,
)

CONSUME, CREDIT, REVERSAL, HOLD, CAPTURE, VOID = "consume", "credit", "reversal", "hold", "capture", "void"
# Entries that take energy away for good, and so can be given back by a reversal.
REVERSIBLE = (CONSUME, CAPTURE)
# How each kind moves the account's total, energy + held: the chain the audit checks is built
# from these signs. A hold and a void move energy to held and back; the total stays.
SIGN = {CONSUME: -1, CREDIT: +1, REVERSAL: +1, HOLD: 0, CAPTURE: -1, VOID: 0}

Request = Union[AmountRequest, ReverseRequest, CaptureRequest, VoidRequest]


class Record(NamedTuple):
    """A stored entry: what a request applied, and what its replays answer.

    A reversal's, a capture's or a void's ``idempotency_key`` is the key of the entry it names
    (it has none of its own). ``state`` is a hold's, as read: the one field that changes.
    """

    entry_id: int
    account_id: int
    amount: int
    idempotency_key: str
    balance_after: int
    created_at: datetime
    kind: str = CONSUME
    held_after: int = 0
    expires_at: datetime | None = None
    state: str | None = None

    @property
    def lifetime(self) -> int | None:
        """A hold's lifetime in seconds, as it was asked for: both ends come from one clock reading."""
        return None if self.expires_at is None else round((self.expires_at - self.created_at).total_seconds())


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
    """Record the request and move the balances to ``balance_after`` (energy) and ``held_after``."""

    balance_after: int
    held_after: int = 0


@dataclass(frozen=True)
class Replay:
    """Answer with the earlier request's record under the same key; change nothing."""

    earlier: Earlier


@dataclass(frozen=True)
class Refuse:
    """Change nothing and answer with ``error``."""

    error: EnergyError


Decision = Union[Apply, Replay, Refuse]


def decide(request: Request, *, earlier: Earlier | None, balance: int | None, held: int = 0,
           reversal: Record | None = None, resolution: Record | None = None) -> Decision:
    """Decide ``request`` given the facts: the earlier entry under its key (if any), the energy
    (``balance``; None: no account) and ``held`` of the account it changes, for a reverse that
    entry's reversal, and for a capture, a void or a reverse of a hold its capture or void."""
    if isinstance(request, ReverseRequest):
        return _reverse(request, target=earlier, balance=balance, held=held, reversal=reversal,
                        resolution=resolution)
    if isinstance(request, (CaptureRequest, VoidRequest)):
        return _resolve(request, hold=earlier, balance=balance, held=held, resolution=resolution)
    if earlier is not None:
        if _same(request, earlier):
            return Replay(earlier)
        return Refuse(IdempotencyKeyMismatch(request.idempotency_key))
    if balance is None:
        return Refuse(AccountNotFound(request.account_id))
    if request.kind == CREDIT:
        return _give(request.account_id, balance, held, request.amount)
    if balance < request.amount:
        return Refuse(InsufficientEnergy(request.account_id, balance, request.amount))
    if request.kind == HOLD:
        return Apply(balance - request.amount, held + request.amount)
    return Apply(balance - request.amount, held)


def _same(request: AmountRequest, earlier: Earlier) -> bool:
    """Whether ``earlier`` is what ``request`` asks for: same kind, account and amount (and lifetime, for a hold)."""
    if (earlier.kind, earlier.account_id, earlier.amount) != (request.kind, request.account_id, request.amount):
        return False
    return not isinstance(request, HoldRequest) or getattr(earlier, "lifetime", None) == request.expires_in


def _reverse(request: ReverseRequest, *, target: Earlier | None, balance: int | None, held: int,
             reversal: Record | None, resolution: Record | None) -> Decision:
    key = request.idempotency_key
    if target is None:
        return Refuse(KeyNotFound(key))
    if target.kind == HOLD and resolution is not None and resolution.kind == CAPTURE:
        target = resolution
    if target.kind not in REVERSIBLE:
        return Refuse(InvalidState(key, _named(target, resolution),
                                   "only a consumption or a captured hold can be reversed"))
    if reversal is not None:
        return Replay(reversal)
    if balance is None:  # an account with entries cannot be deleted; checked all the same
        return Refuse(AccountNotFound(target.account_id))
    return _give(target.account_id, balance, held, target.amount)


def _resolve(request: CaptureRequest | VoidRequest, *, hold: Earlier | None, balance: int | None, held: int,
             resolution: Record | None) -> Decision:
    key = request.idempotency_key
    if hold is None:
        return Refuse(KeyNotFound(key))
    wanted = f"only an open hold can be {'captured' if request.kind == CAPTURE else 'voided'}"
    if hold.kind != HOLD:
        return Refuse(InvalidState(key, _named(hold, None), wanted))
    spend = 0
    if isinstance(request, CaptureRequest):
        spend = hold.amount if request.amount is None else request.amount
        if spend > hold.amount:
            return Refuse(InvalidRequest({"amount": f"must be at most the hold's amount, {hold.amount}"}))
    if resolution is not None:
        if resolution.kind != request.kind:
            return Refuse(InvalidState(key, _named(hold, resolution), wanted))
        if resolution.kind == CAPTURE and resolution.amount != spend:
            return Refuse(IdempotencyKeyMismatch(key))
        return Replay(resolution)
    if hold.state != OPEN:
        return Refuse(InvalidState(key, _named(hold, None), wanted))
    if balance is None:  # an account with entries cannot be deleted; checked all the same
        return Refuse(AccountNotFound(hold.account_id))
    return Apply(balance + hold.amount - spend, held - hold.amount)


def _named(entry: Earlier, resolution: Record | None) -> str:
    """What a key names, for a sentence: "a credit", "an open hold", "a voided hold"."""
    if entry.kind != HOLD:
        return f"a {entry.kind}"
    state = {CAPTURE: "captured", VOID: "voided"}[resolution.kind] if resolution else getattr(entry, "state", None)
    return f"an {state} hold" if state in (OPEN, EXPIRED) else f"a {state} hold"


def _give(account_id: int, balance: int, held: int, amount: int) -> Decision:
    """Raise the energy by ``amount``, unless energy + held would no longer fit a signed 64-bit column."""
    if balance + held > MAX_INT64 - amount:
        return Refuse(OutOfRange(account_id, balance + held, amount))
    return Apply(balance + amount, held)


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
