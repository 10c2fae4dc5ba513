"""Credit and reverse: the two ways energy goes back into an account, each exactly once per key.

(Holds, captures and voids follow the same steps in ``energy.application.holds``.)

Both are entries of the account's ledger, as a consume is (``energy.models.Entry``), and both
are decided by the one rule (``energy.domain.decision.decide``). Each owns one transaction:
1. lock the account's row (``select_for_update()``) and release its expired holds
   (``energy.application.locks``): every writer of the account, consumes included, queues on
   it, so the balances and the chain position read next cannot move;
2. read the facts the rule needs: the entry already under the key (credit), or the entry
   named by the key and its reversal, if any (reverse; a hold's key names its capture),
   read *after* the lock so a request that held it before is seen committed;
3. insert the entry at the next position of the chain and move the balance with the
   database's arithmetic (``F()``), in the same UPDATE that moves ``last_seq``.
The database refuses what the code could get wrong anyway: the (client, key) UNIQUE
constraint a second credit under one key, the one-reversal UNIQUE index a second reversal of
one consumption. Such a refusal means someone else got there first: the rule then decides
again with what they recorded (a replay or a mismatch).

They are not on the hot path (a consume is, see ``energy.application.consume``), so they go
through the ORM: the same code on PostgreSQL and SQLite, three or four short statements.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from energy.application.consume import APPLIED, REPLAYED, ConsumeResult, earlier_record, int64, is_key_conflict
from energy.application.locks import LockedAccount, lock_account
from energy.db.constraints import refused_by
from energy.db.guard import database_guard
from energy.domain.clients import CLI
from energy.domain.decision import (
    CAPTURE,
    CONSUME,
    CREDIT,
    HOLD,
    REVERSAL,
    REVERSIBLE,
    VOID,
    Apply,
    Record,
    Refuse,
    Replay,
    decide,
)
from energy.domain.exceptions import EnergyError
from energy.domain.holds import OPEN
from energy.domain.requests import CreditRequest, ReverseRequest
from energy.models import ONE_REVERSAL_CONSTRAINT, OPERATOR_CLIENT_ID, Account, Entry

log = logging.getLogger("energy.ledger")


@dataclass(frozen=True)
class EntryResult:
    """The answer to a credit, a reverse, a hold, a capture or a void: the entry recorded, and
    whether this request recorded it."""

    status: str
    kind: str
    entry_id: int
    account_id: int
    amount: int
    # A reversal's is the key of the consumption it reverses (a capture's or a void's, of
    # the hold it resolves): it is answered under that key.
    idempotency_key: str
    balance_after: int
    created_at: datetime
    held_after: int = 0
    # A hold's; its state is "open" in the answer to the request that made it and its replays.
    expires_at: datetime | None = None
    state: str | None = None
    # A capture's: what of the hold went back to energy.
    released: int | None = None

    @property
    def outcome(self) -> str:
        """The contract's outcome name, as ``EnergyError.outcome`` gives it for a failure."""
        return self.status

    def to_dict(self) -> dict:
        body = {
            "status": self.status,
            "kind": self.kind,
            "entry_id": self.entry_id,
            "account_id": self.account_id,
            "amount": self.amount,
            "idempotency_key": self.idempotency_key,
            "balance_after": self.balance_after,
            "created_at": self.created_at.isoformat(),
        }
        if self.kind == REVERSAL:
            body["reverses"] = self.idempotency_key
        if self.kind in (HOLD, CAPTURE, VOID):
            body["held_after"] = self.held_after
        if self.kind == HOLD:
            body["state"] = self.state
            body["expires_at"] = self.expires_at.isoformat()
        if self.kind == CAPTURE:
            body["released"] = self.released
        return body

    @classmethod
    def of(cls, status: str, record: Record, *, released: int | None = None, state: str | None = OPEN) -> "EntryResult":
        """The answer ``record`` gives; ``state`` is what a hold's says (its original answer: open)."""
        return cls(status, record.kind, record.entry_id, record.account_id, record.amount, record.idempotency_key,
                   record.balance_after, record.created_at, record.held_after, record.expires_at,
                   state if record.kind == HOLD else None, released if record.kind == CAPTURE else None)


def result_of(status: str, record: Record, *, released: int | None = None,
              state: str | None = OPEN) -> ConsumeResult | EntryResult:
    """The body an entry of any kind answers with: a consume keeps the consume body."""
    if record.kind == CONSUME:
        return ConsumeResult.applied(record) if status == APPLIED else ConsumeResult.replayed(record)
    return EntryResult.of(status, record, released=released, state=state)


def credit(*, account_id: int, amount: int, idempotency_key: str, client_id: int = OPERATOR_CLIENT_ID,
           channel: str = CLI) -> EntryResult:
    """Add ``amount`` to the account, once per key in ``client_id``'s key space (default: the operator's).

    Returns applied/replayed or raises an EnergyError.
    """
    request = CreditRequest(account_id, amount, idempotency_key)
    with logged(CREDIT, channel, client_id, idempotency_key, account_id=account_id, amount=amount) as outcome:
        with database_guard():
            result = _credit(client_id, request)
        outcome.append(result.status)
        return result


def reverse(*, idempotency_key: str, client_id: int = OPERATOR_CLIENT_ID, channel: str = CLI) -> EntryResult:
    """Give back, once, what the consumption recorded under ``idempotency_key`` took.

    Returns applied/replayed (the reversal recorded) or raises an EnergyError: no entry under
    the key is KeyNotFound, an entry that is not a consumption or a captured hold (whose
    capture is what is given back) is InvalidState.
    """
    request = ReverseRequest(idempotency_key)
    with logged("reverse", channel, client_id, idempotency_key) as outcome:
        with database_guard():
            result = _reverse(client_id, request)
        outcome.append(result.status)
        return result


def _credit(client_id: int, request: CreditRequest) -> EntryResult:
    key = request.idempotency_key
    try:
        with transaction.atomic():
            locked = lock_account(request.account_id)
            decision = decide(request, earlier=earlier_record(client_id, key), **balances(locked))
            if isinstance(decision, Apply):
                return EntryResult.of(APPLIED, record_entry(
                    client_id, request.account_id, CREDIT, request.amount, decision, locked, key=key))
    except IntegrityError as exc:
        if not is_key_conflict(exc):
            raise
        # Another account's request took the key after it was looked up (one account's
        # requests queue on its lock and would have seen it): decide again with its record.
        decision = decide(request, earlier=earlier_record(client_id, key), balance=None)
    return _answer(decision)


def _reverse(client_id: int, request: ReverseRequest) -> EntryResult:
    # An entry never changes once recorded (a hold's state aside): it is read without a lock.
    named = earlier_record(client_id, request.idempotency_key)
    # A hold's capture is what a reverse of its key gives back; once recorded, it never changes.
    capture = resolution_of(named) if named is not None and named.kind == HOLD else None
    target = capture if capture is not None and capture.kind == CAPTURE else named
    if target is None or target.kind not in REVERSIBLE:
        return _answer(decide(request, earlier=named, balance=None, resolution=capture))
    try:
        with transaction.atomic():
            locked = lock_account(target.account_id)
            decision = decide(request, earlier=target, reversal=reversal_of(target), **balances(locked))
            if isinstance(decision, Apply):
                return EntryResult.of(APPLIED, record_entry(
                    client_id, target.account_id, REVERSAL, target.amount, decision, locked, target=target))
    except IntegrityError as exc:
        if not refused_by(exc, ONE_REVERSAL_CONSTRAINT):
            raise
        # Only a writer that bypassed the account's lock gets here; the index stopped it.
        decision = decide(request, earlier=target, balance=None, reversal=reversal_of(target))
    return _answer(decision)


def balances(locked: LockedAccount | None) -> dict:
    """The rule's balance facts from a locked account (none: no account)."""
    return {"balance": None, "held": 0} if locked is None else {"balance": locked.energy, "held": locked.held}


def record_entry(client_id: int, account_id: int, kind: str, amount: int, decision: Apply, locked: LockedAccount, *,
                 key: str | None = None, target: Record | None = None, **fields) -> Record:
    """Insert the entry at the chain's next position and move the balances to the decision's; its record.

    The account's row is locked and its balances are the ones decided on: the UPDATE moves each
    by the difference the decision makes, with the database's arithmetic. ``fields`` are a hold's.
    """
    entry = Entry.objects.create(
        client_id=client_id, account_id=account_id, kind=kind, amount=amount, idempotency_key=key,
        target_id=None if target is None else target.entry_id, balance_after=decision.balance_after,
        held_after=decision.held_after, seq=locked.last_seq + 1, **fields,
    )
    if "expires_at" in fields:
        # A hold's times are computed by the database; its answer shows them as stored.
        entry.refresh_from_db(fields=["created_at", "expires_at"])
    Account.objects.filter(pk=account_id).update(energy=F("energy") + int64(decision.balance_after - locked.energy),
                                                 held=F("held") + int64(decision.held_after - locked.held),
                                                 last_seq=F("last_seq") + 1)
    return Record(entry.id, account_id, amount, key if target is None else target.idempotency_key,
                  decision.balance_after, entry.created_at, kind, decision.held_after,
                  entry.expires_at, entry.state)


def reversal_of(target: Record) -> Record | None:
    """The reversal of the entry ``target``, if one is recorded; answered under the target's key."""
    return _named_by(target, REVERSAL)


def resolution_of(hold: Record) -> Record | None:
    """The capture or void of ``hold``, if one is recorded; answered under the hold's key."""
    return _named_by(hold, CAPTURE, VOID)


def _named_by(target: Record, *kinds: str) -> Record | None:
    values = (Entry.objects.filter(target_id=target.entry_id, kind__in=kinds)
              .values_list("id", "account_id", "amount", "balance_after", "created_at", "kind", "held_after").first())
    if values is None:
        return None
    entry_id, account_id, amount, balance_after, created_at, kind, held_after = values
    return Record(entry_id, account_id, amount, target.idempotency_key, balance_after, created_at, kind, held_after)


def _answer(decision) -> EntryResult:
    """The result of a decision that changed nothing: a replay's, or the refusal raised."""
    match decision:
        case Replay(earlier=Record() as record):
            return EntryResult.of(REPLAYED, record)
        case Refuse(error=error):
            raise error
    raise RuntimeError(f"{decision!r} was not carried out")  # pragma: no cover - an Apply returns above


@contextmanager
def logged(operation: str, channel: str, client_id: int, key: str, **fields):
    """One structured log record per request, with its outcome (the caller appends it) and duration."""
    started, outcome = time.perf_counter(), []
    try:
        yield outcome
    except EnergyError as exc:
        outcome.append(exc.outcome)
        raise
    finally:
        if log.isEnabledFor(logging.INFO):
            result = outcome[-1] if outcome else "error"
            log.info("%s %s", operation, result, extra={
                "idempotency_key": key, "client_id": client_id, "channel": channel, "outcome": result,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3), **fields,
            })
