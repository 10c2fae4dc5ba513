"""The consume use case: spend energy from an account exactly once per idempotency key.

Four protections work together, each against its own failure:
- atomicity: lock, check, insert and update commit or roll back together;
- a row lock (``FOR UPDATE``, ``select_for_update()``): concurrent consumes of one account
  queue on it;
- the UNIQUE constraint on the key: the database refuses to apply a key twice;
- a deduction computed by the database (``energy = energy - amount``, what ``F()`` writes),
  never written back from a value Python read earlier.

What to do with a request is decided by the one rule, ``energy.domain.decision.decide``. On
PostgreSQL one statement (``statements.CONSUME``) applies it inside the server, where the
row lock is held only while the server works: on a hot account that time is the whole
throughput. PostgreSQL runs a statement as one transaction, so atomicity needs no BEGIN and
COMMIT round trips; inside a caller's transaction the statement simply joins it. When the
statement applied nothing, the rule itself turns the facts it returned (the balance, the
earlier record) into the answer. Other databases (SQLite) read the facts through the ORM
inside ``transaction.atomic()`` and follow the rule step by step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from energy.application.locks import int64, lock_account
from energy.db import statements
from energy.db.constraints import refused_by
from energy.db.guard import database_guard
from energy.domain.clients import CLI
from energy.domain.decision import CONSUME, Apply, Record, Refuse, Replay, decide
from energy.domain.exceptions import EnergyError
from energy.domain.requests import ConsumeRequest
from energy.models import IDEMPOTENCY_KEY_CONSTRAINT, OPERATOR_CLIENT_ID, Account, Entry

log = logging.getLogger("energy.consume")

APPLIED = "applied"
REPLAYED = "replayed"


@dataclass(frozen=True)
class ConsumeResult:
    status: str
    consumption_id: int
    account_id: int
    amount: int
    idempotency_key: str
    balance_after: int
    created_at: datetime

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "consumption_id": self.consumption_id,
            "account_id": self.account_id,
            "amount": self.amount,
            "idempotency_key": self.idempotency_key,
            "balance_after": self.balance_after,
            "created_at": self.created_at.isoformat(),
        }

    @property
    def outcome(self) -> str:
        """The contract's outcome name, as ``EnergyError.outcome`` gives it for a failure."""
        return self.status

    @property
    def kind(self) -> str:
        return CONSUME

    @property
    def entry_id(self) -> int:
        """The id every entry of the ledger has; a consume's body calls it consumption_id."""
        return self.consumption_id

    @classmethod
    def applied(cls, record: Record) -> "ConsumeResult":
        return cls._of(APPLIED, record)

    @classmethod
    def replayed(cls, record: Record) -> "ConsumeResult":
        return cls._of(REPLAYED, record)

    @classmethod
    def _of(cls, status: str, record: Record) -> "ConsumeResult":
        return cls(status, record.entry_id, record.account_id, record.amount, record.idempotency_key,
                   record.balance_after, record.created_at)


def consume(
    *, account_id: int, amount: int, idempotency_key: str, client_id: int = OPERATOR_CLIENT_ID, channel: str = CLI
) -> ConsumeResult:
    """Apply one validated request in ``client_id``'s key space (default: the operator's).

    ``channel`` names where it came from (``http``, or the command line) in the log record.

    Returns applied/replayed or raises an EnergyError.
    """
    started = time.perf_counter()
    outcome = "error"
    request = ConsumeRequest(account_id, amount, idempotency_key)
    try:
        with database_guard():
            if connection.vendor == "postgresql":
                result = _consume_in_one_statement(client_id, request)
            else:
                result = _consume_with_orm(client_id, request)
        outcome = result.status
        return result
    except EnergyError as exc:
        outcome = exc.outcome
        raise
    finally:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "consume %s",
                outcome,
                extra={
                    "idempotency_key": idempotency_key,
                    "client_id": client_id,
                    "channel": channel,
                    "account_id": account_id,
                    "amount": amount,
                    "outcome": outcome,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )


def _consume_in_one_statement(client_id: int, request: ConsumeRequest) -> ConsumeResult:
    row = _run_consume(client_id, request)
    if not row.applied and row.record() is None and row.held and row.balance < request.amount:
        # Refused on an account with holds: one may have expired unseen, recorded after the
        # statement's snapshot was taken (see statements.CONSUME). A fresh statement sees it.
        row = _run_consume(client_id, request)
    if row.applied:
        return ConsumeResult.applied(row.record())
    # Nothing was written. An earlier record committed while the statement waited for the
    # row lock is missing from the statement's snapshot: then it is looked up afresh.
    earlier = row.record() or earlier_record(client_id, request.idempotency_key)
    return answer(decide(request, earlier=earlier, balance=row.balance, held=row.held or 0))


def _run_consume(client_id: int, request: ConsumeRequest) -> statements.ConsumeRow:
    int8 = statements.int8
    (row,) = statements.fetch(statements.CONSUME, {
        "client_id": int8(client_id), "account_id": int8(request.account_id), "amount": int8(request.amount),
        "key": request.idempotency_key,
    }, statements.ConsumeRow)
    return row


def answer(decision) -> ConsumeResult:
    """The result of a decision that changed nothing: a replay's, or the refusal raised."""
    match decision:
        case Replay(earlier=Record() as record):
            return ConsumeResult.replayed(record)
        case Refuse(error=error):
            raise error
    # The statement refused what the rule would apply: they disagree, and a test should say so.
    raise RuntimeError(f"the consume statement did not carry out {decision!r}")


# A Record's fields as the entry table's columns, in the Record's order.
RECORD_COLUMNS = tuple("id" if field == "entry_id" else field for field in Record._fields)


def earlier_record(client_id: int, key: str) -> Record | None:
    """The entry recorded under ``key`` in ``client_id``'s key space (of any kind), if there is one."""
    values = (
        Entry.objects.filter(client_id=client_id, idempotency_key=key)
        .values_list(*RECORD_COLUMNS)
        .first()
    )
    return None if values is None else Record(*values)


def _consume_with_orm(client_id: int, request: ConsumeRequest) -> ConsumeResult:
    """The same rule through the plain ORM, for databases without data-modifying CTEs (SQLite)."""
    try:
        with transaction.atomic():
            locked = lock_account(request.account_id)
            decision = decide(request, earlier=earlier_record(client_id, request.idempotency_key),
                              balance=None if locked is None else locked.energy,
                              held=0 if locked is None else locked.held)
            if isinstance(decision, Apply):
                return ConsumeResult.applied(_apply(client_id, request, decision, locked.last_seq + 1))
    except IntegrityError as exc:
        if not is_key_conflict(exc):
            raise
        # A concurrent writer recorded the key after it was looked up: decide again with it.
        earlier = earlier_record(client_id, request.idempotency_key)
        if earlier is None:  # pragma: no cover - the conflicting record was deleted meanwhile
            raise
        decision = decide(request, earlier=earlier, balance=None)
    return answer(decision)


def _apply(client_id: int, request: ConsumeRequest, decision: Apply, seq: int) -> Record:
    record = Entry.objects.create(
        client_id=client_id, account_id=request.account_id, kind=CONSUME, amount=request.amount,
        idempotency_key=request.idempotency_key, balance_after=decision.balance_after,
        held_after=decision.held_after, seq=seq,
    )
    Account.objects.filter(pk=request.account_id).update(energy=F("energy") - int64(request.amount),
                                                         last_seq=F("last_seq") + 1)
    return Record(record.id, request.account_id, request.amount, request.idempotency_key,
                  decision.balance_after, record.created_at, CONSUME, decision.held_after)


def is_key_conflict(exc: IntegrityError) -> bool:
    """Whether ``exc`` is the (client, key) UNIQUE constraint refusing a key already recorded."""
    return refused_by(exc, IDEMPOTENCY_KEY_CONSTRAINT)
