"""The consume use case: spend energy from an account exactly once per idempotency key.

Four protections work together, each against its own failure:
- one ``transaction.atomic()``: lock, check, insert and update commit or roll back together;
- ``select_for_update()``: concurrent consumes of one account queue on its row lock;
- the UNIQUE constraint on the key: the database refuses to apply a key twice;
- an ``F()``-style deduction (``energy = energy - amount``): the new balance is computed by the
  database, never written back from a value Python read earlier.

On PostgreSQL a consume is four round trips: BEGIN, the row lock, one statement that records
and deducts, COMMIT. That statement inserts with ``ON CONFLICT DO NOTHING`` on the key's UNIQUE
constraint, so a replay needs no exception, no rollback and no savepoint; the lookup of the
earlier record in it only runs when the insert did nothing, so the happy path pays nothing for
idempotency. Statements are compiled from the ORM once per process, not once per call: on a
hot account the row lock is held for as long as the client takes between statements.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from psycopg import Cursor
from psycopg.types.numeric import Int8

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
# Columns of a consumption, in the order every statement here returns them.
RECORD_FIELDS = ("id", "account_id", "amount", "idempotency_key", "balance_after", "created_at")


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

    @classmethod
    def from_record(cls, record: tuple, status: str) -> "ConsumeResult":
        return cls(status, *record)


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
        if log.isEnabledFor(logging.INFO):
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
    if connection.vendor != "postgresql":
        return _consume_portable(account_id, amount, key)
    earlier = None
    with transaction.atomic():
        balance = lock_balances([account_id]).get(account_id)
        if balance is not None and balance >= amount:
            inserted, earlier = _record_and_deduct(account_id, amount, key, balance - amount)
            if inserted:
                return ConsumeResult.from_record(earlier, APPLIED)
    # Refused, or the key was used before: nothing was written, and a retry of a request
    # applied earlier must get the original answer whatever the balance is now.
    earlier = earlier or earlier_record(key)
    if earlier is None:
        if balance is None:
            raise AccountNotFound(account_id)
        raise InsufficientEnergy(account_id, balance, amount)
    return replay(earlier, account_id, amount)


def lock_balances(account_ids: list[int]) -> dict[int, int]:
    """Lock the accounts' rows (in id order, so two lockers never deadlock); their balances by id."""
    if len(account_ids) == 1:
        rows = prepared(_lock_one_sql(), [Int8(account_ids[0])])
    else:
        rows = prepared(_lock_many_sql(), [[Int8(i) for i in sorted(set(account_ids))]])
    return dict(rows)


def _locking_queryset():
    return Account.objects.select_for_update().order_by("pk").values_list("pk", "energy")


@functools.cache
def _lock_one_sql() -> str:
    # select_for_update() only compiles inside a transaction; compiled once, reused per call.
    return _locking_queryset().filter(pk=0).query.sql_with_params()[0]


@functools.cache
def _lock_many_sql() -> str:
    sql = _locking_queryset().filter(pk__in=[0]).query.sql_with_params()[0]
    if sql.count("IN (%s)") != 1:  # pragma: no cover - a Django upgrade changed the SQL
        raise RuntimeError(f"unexpected locking SQL: {sql}")
    return sql.replace("IN (%s)", "= ANY(%s)")


def prepared(sql: str, params) -> list[tuple]:
    """Run ``sql`` as a server-side prepared statement on Django's connection, in its transaction."""
    connection.ensure_connection()
    with connection.wrap_database_errors, Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall()


_RECORD_AND_DEDUCT = f"""
WITH recorded AS (
    INSERT INTO {Consumption._meta.db_table} (account_id, amount, idempotency_key, balance_after, created_at)
    VALUES (%(account_id)s, %(amount)s, %(key)s, %(balance_after)s, now())
    ON CONFLICT ON CONSTRAINT {IDEMPOTENCY_KEY_CONSTRAINT} DO NOTHING
    RETURNING {", ".join(RECORD_FIELDS)}
), deducted AS (
    UPDATE {Account._meta.db_table} SET energy = energy - %(amount)s
    WHERE id = %(account_id)s AND EXISTS (SELECT FROM recorded)
)
SELECT true, {", ".join(RECORD_FIELDS)} FROM recorded
UNION ALL
SELECT false, {", ".join(RECORD_FIELDS)} FROM {Consumption._meta.db_table}
WHERE idempotency_key = %(key)s AND NOT EXISTS (SELECT FROM recorded)
"""


def _record_and_deduct(account_id: int, amount: int, key: str, balance_after: int) -> tuple[bool, tuple | None]:
    """Insert the record and deduct in one statement; (False, earlier record) if the key was taken.

    The earlier record is None when it was committed while this statement ran (it is then
    invisible to the statement's snapshot): the caller looks it up again.
    """
    rows = prepared(
        _RECORD_AND_DEDUCT,
        {"account_id": Int8(account_id), "amount": Int8(amount), "key": key, "balance_after": Int8(balance_after)},
    )
    if not rows:
        return False, None
    return rows[0][0], rows[0][1:]


def earlier_record(key: str) -> tuple | None:
    return Consumption.objects.filter(idempotency_key=key).values_list(*RECORD_FIELDS).first()


def replay(earlier: tuple, account_id: int, amount: int) -> ConsumeResult:
    result = ConsumeResult.from_record(earlier, REPLAYED)
    if result.account_id != account_id or result.amount != amount:
        raise IdempotencyKeyMismatch(result.idempotency_key)
    return result


def _consume_portable(account_id: int, amount: int, key: str) -> ConsumeResult:
    """The same protections through the plain ORM, for databases without data-modifying CTEs (SQLite)."""
    try:
        with transaction.atomic():
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
        return ConsumeResult.from_record(tuple(getattr(record, f) for f in RECORD_FIELDS), APPLIED)
    except IntegrityError as exc:
        if not _is_key_conflict(exc):
            raise
        earlier = earlier_record(key)
        if earlier is None:  # pragma: no cover - the conflicting row was deleted meanwhile
            raise
        return replay(earlier, account_id, amount)
    except (AccountNotFound, InsufficientEnergy):
        earlier = earlier_record(key)
        if earlier is None:
            raise
        return replay(earlier, account_id, amount)


def _is_key_conflict(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None:
        return diag.constraint_name == IDEMPOTENCY_KEY_CONSTRAINT
    # SQLite names the columns, not the constraint.
    return "energy_consumption.idempotency_key" in str(exc)
