"""Credit and reverse: the two ways energy goes back into an account, each exactly once per key.

Both are entries of the account's ledger, as a consume is (``energy.models.Entry``), and both
are decided by the one rule (``energy.domain.decision.decide``). Each owns one transaction:
1. lock the account's row (``select_for_update()``): every writer of the account, consumes
   included, queues on it, so the balance and the chain position read next cannot move;
2. read the facts the rule needs: the entry already under the key (credit), or the entry
   named by the key and its reversal, if any (reverse), read *after* the lock so a request
   that held it before is seen committed;
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
from energy.db.guard import database_guard
from energy.domain.clients import CLI
from energy.domain.decision import CONSUME, CREDIT, REVERSAL, REVERSIBLE, SIGN, Apply, Record, Refuse, Replay, decide
from energy.domain.exceptions import EnergyError
from energy.domain.requests import CreditRequest, ReverseRequest
from energy.models import ONE_REVERSAL_CONSTRAINT, OPERATOR_CLIENT_ID, Account, Entry

log = logging.getLogger("energy.ledger")


@dataclass(frozen=True)
class EntryResult:
    """The answer to a credit or a reverse: the entry recorded, and whether this request recorded it."""

    status: str
    kind: str
    entry_id: int
    account_id: int
    amount: int
    # A reversal's is the key of the consumption it reverses: it is answered under that key.
    idempotency_key: str
    balance_after: int
    created_at: datetime

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
        return body

    @classmethod
    def of(cls, status: str, record: Record) -> "EntryResult":
        return cls(status, record.kind, record.entry_id, record.account_id, record.amount, record.idempotency_key,
                   record.balance_after, record.created_at)


def result_of(status: str, record: Record) -> ConsumeResult | EntryResult:
    """The body an entry of any kind answers with: a consume keeps the consume body."""
    if record.kind == CONSUME:
        return ConsumeResult.applied(record) if status == APPLIED else ConsumeResult.replayed(record)
    return EntryResult.of(status, record)


def credit(*, account_id: int, amount: int, idempotency_key: str, client_id: int = OPERATOR_CLIENT_ID,
           channel: str = CLI) -> EntryResult:
    """Add ``amount`` to the account, once per key in ``client_id``'s key space (default: the operator's).

    Returns applied/replayed or raises an EnergyError.
    """
    request = CreditRequest(account_id, amount, idempotency_key)
    with _logged(CREDIT, channel, client_id, idempotency_key, account_id=account_id, amount=amount) as outcome:
        with database_guard():
            result = _credit(client_id, request)
        outcome.append(result.status)
        return result


def reverse(*, idempotency_key: str, client_id: int = OPERATOR_CLIENT_ID, channel: str = CLI) -> EntryResult:
    """Give back, once, what the consumption recorded under ``idempotency_key`` took.

    Returns applied/replayed (the reversal recorded) or raises an EnergyError: no entry under
    the key is KeyNotFound, an entry that is not a consumption is InvalidState.
    """
    request = ReverseRequest(idempotency_key)
    with _logged("reverse", channel, client_id, idempotency_key) as outcome:
        with database_guard():
            result = _reverse(client_id, request)
        outcome.append(result.status)
        return result


def _credit(client_id: int, request: CreditRequest) -> EntryResult:
    key = request.idempotency_key
    try:
        with transaction.atomic():
            locked = _lock(request.account_id)
            decision = decide(request, earlier=earlier_record(client_id, key),
                              balance=None if locked is None else locked[0])
            if isinstance(decision, Apply):
                return EntryResult.of(APPLIED, _record(
                    client_id, request.account_id, CREDIT, request.amount, decision, locked[1], key=key))
    except IntegrityError as exc:
        if not is_key_conflict(exc):
            raise
        # Another account's request took the key after it was looked up (one account's
        # requests queue on its lock and would have seen it): decide again with its record.
        decision = decide(request, earlier=earlier_record(client_id, key), balance=None)
    return _answer(decision)


def _reverse(client_id: int, request: ReverseRequest) -> EntryResult:
    # An entry never changes once recorded: it is read without a lock.
    target = earlier_record(client_id, request.idempotency_key)
    if target is None or target.kind not in REVERSIBLE:
        return _answer(decide(request, earlier=target, balance=None))
    try:
        with transaction.atomic():
            locked = _lock(target.account_id)
            decision = decide(request, earlier=target, balance=None if locked is None else locked[0],
                              reversal=reversal_of(target))
            if isinstance(decision, Apply):
                return EntryResult.of(APPLIED, _record(
                    client_id, target.account_id, REVERSAL, target.amount, decision, locked[1], target=target))
    except IntegrityError as exc:
        if not _is_one_reversal_conflict(exc):
            raise
        # Only a writer that bypassed the account's lock gets here; the index stopped it.
        decision = decide(request, earlier=target, balance=None, reversal=reversal_of(target))
    return _answer(decision)


def _lock(account_id: int) -> tuple[int, int] | None:
    """The account's row locked until the transaction ends; its (energy, last_seq), or None."""
    return Account.objects.select_for_update().filter(pk=account_id).values_list("energy", "last_seq").first()


def _record(client_id: int, account_id: int, kind: str, amount: int, decision: Apply, last_seq: int, *,
            key: str | None = None, target: Record | None = None) -> Record:
    """Insert the entry at the chain's next position and move the balance by it; its record."""
    entry = Entry.objects.create(
        client_id=client_id, account_id=account_id, kind=kind, amount=amount, idempotency_key=key,
        target_id=None if target is None else target.entry_id, balance_after=decision.balance_after,
        seq=last_seq + 1,
    )
    Account.objects.filter(pk=account_id).update(energy=F("energy") + int64(SIGN[kind] * amount),
                                                 last_seq=F("last_seq") + 1)
    return Record(entry.id, account_id, amount, key if target is None else target.idempotency_key,
                  decision.balance_after, entry.created_at, kind)


def reversal_of(target: Record) -> Record | None:
    """The reversal of the entry ``target``, if one is recorded; answered under the target's key."""
    values = (Entry.objects.filter(target_id=target.entry_id, kind=REVERSAL)
              .values_list("id", "account_id", "amount", "balance_after", "created_at").first())
    if values is None:
        return None
    entry_id, account_id, amount, balance_after, created_at = values
    return Record(entry_id, account_id, amount, target.idempotency_key, balance_after, created_at, REVERSAL)


def _answer(decision) -> EntryResult:
    """The result of a decision that changed nothing: a replay's, or the refusal raised."""
    match decision:
        case Replay(earlier=Record() as record):
            return EntryResult.of(REPLAYED, record)
        case Refuse(error=error):
            raise error
    raise RuntimeError(f"{decision!r} was not carried out")  # pragma: no cover - an Apply returns above


def _is_one_reversal_conflict(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None:
        return diag.constraint_name == ONE_REVERSAL_CONSTRAINT
    # SQLite names the column, not the index.
    return "energy_consumption.target_id" in str(exc)


@contextmanager
def _logged(operation: str, channel: str, client_id: int, key: str, **fields):
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
