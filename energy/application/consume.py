"""The consume use case: spend energy from an account exactly once per idempotency key.

Four protections work together, each against its own failure:
- one ``transaction.atomic()``: lock, check, insert and update commit or roll back together;
- ``select_for_update()``: concurrent consumes of one account queue on its row lock;
- the UNIQUE constraint on the key: the database refuses to apply a key twice;
- an ``F()`` deduction: the new balance is computed by the database, never written back
  from a value Python read earlier.

The happy path costs no extra query for idempotency: the key's UNIQUE constraint is the
check. Only when it fires, or when a request is about to be refused, is the earlier
record looked up, so that a retry always gets the original answer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from energy.application.guard import database_guard
from energy.domain.exceptions import (
    AccountNotFound,
    EnergyError,
    IdempotencyKeyMismatch,
    InsufficientEnergy,
)
from energy.models import IDEMPOTENCY_KEY_CONSTRAINT, Account, Consumption

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


def consume(*, account_id: int, amount: int, idempotency_key: str) -> ConsumeResult:
    """Apply one validated request; returns applied/replayed or raises an EnergyError."""
    started = time.perf_counter()
    outcome = "error"
    try:
        with database_guard():
            result = _consume(account_id, amount, idempotency_key)
        outcome = result.status
        return result
    except EnergyError as exc:
        outcome = exc.outcome
        raise
    finally:
        log.info(
            "consume %s",
            outcome,
            extra={
                "idempotency_key": idempotency_key,
                "account_id": account_id,
                "amount": amount,
                "outcome": outcome,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )


def _consume(account_id: int, amount: int, key: str) -> ConsumeResult:
    try:
        with transaction.atomic():
            record = _apply(account_id, amount, key)
        return _result(record, APPLIED)
    except IntegrityError as exc:
        # The whole transaction is rolled back by now: no deduction survived.
        if not _is_key_conflict(exc):
            raise
        earlier = _earlier(key)
        if earlier is None:  # pragma: no cover - the conflicting row was deleted meanwhile
            raise
        return _replay(earlier, account_id, amount)
    except (AccountNotFound, InsufficientEnergy):
        # A retry of a request that was applied earlier must get the original answer,
        # even if the balance has since dropped below the amount.
        earlier = _earlier(key)
        if earlier is None:
            raise
        return _replay(earlier, account_id, amount)


def _apply(account_id: int, amount: int, key: str) -> Consumption:
    balance = (
        Account.objects.select_for_update().filter(pk=account_id).values_list("energy", flat=True).first()
    )
    if balance is None:
        raise AccountNotFound(account_id)
    if balance < amount:
        raise InsufficientEnergy(account_id, balance, amount)
    record = Consumption.objects.create(
        account_id=account_id, amount=amount, idempotency_key=key, balance_after=balance - amount
    )
    Account.objects.filter(pk=account_id).update(energy=F("energy") - amount)
    return record


def _earlier(key: str) -> Consumption | None:
    return Consumption.objects.filter(idempotency_key=key).first()


def _replay(earlier: Consumption, account_id: int, amount: int) -> ConsumeResult:
    if earlier.account_id != account_id or earlier.amount != amount:
        raise IdempotencyKeyMismatch(earlier.idempotency_key)
    return _result(earlier, REPLAYED)


def _result(record: Consumption, status: str) -> ConsumeResult:
    return ConsumeResult(
        status=status,
        consumption_id=record.id,
        account_id=record.account_id,
        amount=record.amount,
        idempotency_key=record.idempotency_key,
        balance_after=record.balance_after,
        created_at=record.created_at,
    )


def _is_key_conflict(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None:
        return diag.constraint_name == IDEMPOTENCY_KEY_CONSTRAINT
    # SQLite names the columns, not the constraint.
    return "energy_consumption.idempotency_key" in str(exc)
