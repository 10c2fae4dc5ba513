"""The consume use case: spend energy from an account exactly once per idempotency key.

Four protections work together, each against its own failure:
- atomicity: lock, check, insert and update commit or roll back together;
- a row lock (``select_for_update()``): concurrent consumes of one account queue on it;
- the UNIQUE constraint on the key: the database refuses to apply a key twice;
- a deduction computed by the database (``energy = energy - amount``, what ``F()`` writes),
  never written back from a value Python read earlier.

On PostgreSQL all four live in one statement built around the ORM's ``select_for_update()``
query: it locks the row, checks the balance, inserts the record with ``ON CONFLICT DO
NOTHING`` on the key's UNIQUE constraint and deducts. PostgreSQL runs a statement as one
transaction, so atomicity needs no BEGIN and COMMIT round trips, and the row lock is held
only while the server works: on a hot account that time is the whole throughput. A replay
needs no exception, rollback or savepoint; the lookup of the earlier record in the
statement runs only when the insert did nothing, so the happy path pays nothing for
idempotency. The statement is prepared on the server once per connection. Inside a
caller's transaction it simply joins it. Other databases (SQLite) take the same steps
through the plain ORM inside ``transaction.atomic()``.
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
from energy.models import IDEMPOTENCY_KEY_CONSTRAINT, OPERATOR_CLIENT_ID, Account, Consumption

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

    @property
    def outcome(self) -> str:
        """The contract's outcome name, as ``EnergyError.outcome`` gives it for a failure."""
        return self.status

    @classmethod
    def from_record(cls, record: tuple, status: str) -> "ConsumeResult":
        return cls(status, *record)


def consume(
    *, account_id: int, amount: int, idempotency_key: str, client_id: int = OPERATOR_CLIENT_ID
) -> ConsumeResult:
    """Apply one validated request in ``client_id``'s key space (default: the operator's).

    Returns applied/replayed or raises an EnergyError.
    """
    started = time.perf_counter()
    outcome = "error"
    try:
        with database_guard():
            result = _consume(client_id, account_id, amount, idempotency_key)
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
                    "account_id": account_id,
                    "amount": amount,
                    "outcome": outcome,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )


def _consume(client_id: int, account_id: int, amount: int, key: str) -> ConsumeResult:
    if connection.vendor != "postgresql":
        return _consume_portable(client_id, account_id, amount, key)
    # One statement is one transaction: PostgreSQL applies all of it or none of it, and
    # releases the row lock the moment it commits, without waiting for this process.
    rows = prepared(
        _consume_sql(),
        {"client_id": Int8(client_id), "account_id": Int8(account_id), "amount": Int8(amount), "key": key},
    )
    found = {row[0]: row[1:] for row in rows}
    if "applied" in found:
        return ConsumeResult.from_record(found["applied"], APPLIED)
    # Refused, or the key was used before: nothing was written, and a retry of a request
    # applied earlier must get the original answer whatever the balance is now. The
    # earlier record is missing from the statement's snapshot when it was committed while
    # the statement waited for the lock; then it is looked up afresh.
    earlier = found.get("earlier") or earlier_record(client_id, key)
    if earlier is not None:
        return replay(earlier, account_id, amount)
    if "locked" not in found:
        raise AccountNotFound(account_id)
    balance = found["locked"][4]
    raise InsufficientEnergy(account_id, balance, amount)


@functools.cache
def _consume_sql() -> str:
    """Lock, check, record and deduct in one statement, built around the ORM's locking query.

    Rows out: ("locked", ..., balance) when the account exists; ("applied", record) when
    the request was applied; ("earlier", record) when the key was already used. Compiled
    on first use (select_for_update() compiles only inside a transaction), then reused.
    """
    with transaction.atomic():  # compiles only; no statement is sent
        lock = _locking_queryset().filter(pk=0).query.sql_with_params()[0]
    if lock.count("%s") != 1:  # pragma: no cover - a Django upgrade changed the SQL
        raise RuntimeError(f"unexpected locking SQL: {lock}")
    return _CONSUME_TEMPLATE.replace("{lock}", lock.replace("%s", "%(account_id)s"))


def lock_balances(account_ids: list[int]) -> dict[int, int]:
    """Lock the accounts' rows (in id order, so two lockers never deadlock); their balances by id."""
    rows = prepared(_lock_many_sql(), [[Int8(i) for i in sorted(set(account_ids))]])
    return dict(rows)


def _locking_queryset():
    return Account.objects.select_for_update().order_by("id").values_list("id", "energy")


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
        return cursor.fetchall() if cursor.description is not None else []


_CONSUME_TEMPLATE = f"""
WITH locked AS ({{lock}}),
recorded AS (
    INSERT INTO {Consumption._meta.db_table}
        (client_id, account_id, amount, idempotency_key, balance_after, created_at)
    SELECT %(client_id)s, id, %(amount)s, %(key)s, energy - %(amount)s, now() FROM locked
    WHERE energy >= %(amount)s
    ON CONFLICT ON CONSTRAINT {IDEMPOTENCY_KEY_CONSTRAINT} DO NOTHING
    RETURNING {", ".join(RECORD_FIELDS)}
), deducted AS (
    UPDATE {Account._meta.db_table} SET energy = energy - %(amount)s
    WHERE id = %(account_id)s AND EXISTS (SELECT FROM recorded)
)
SELECT 'locked', NULL::bigint, id, NULL::bigint, NULL, energy, NULL::timestamptz FROM locked
UNION ALL
SELECT 'applied', {", ".join(RECORD_FIELDS)} FROM recorded
UNION ALL
SELECT 'earlier', {", ".join(RECORD_FIELDS)} FROM {Consumption._meta.db_table}
WHERE client_id = %(client_id)s AND idempotency_key = %(key)s AND NOT EXISTS (SELECT FROM recorded)
"""  # noqa: S608 - names from the models and constants


def earlier_record(client_id: int, key: str) -> tuple | None:
    """The record of ``key`` in ``client_id``'s key space, if the client applied it before."""
    return (
        Consumption.objects.filter(client_id=client_id, idempotency_key=key).values_list(*RECORD_FIELDS).first()
    )


def replay(earlier: tuple, account_id: int, amount: int) -> ConsumeResult:
    result = ConsumeResult.from_record(earlier, REPLAYED)
    if result.account_id != account_id or result.amount != amount:
        raise IdempotencyKeyMismatch(result.idempotency_key)
    return result


def _consume_portable(client_id: int, account_id: int, amount: int, key: str) -> ConsumeResult:
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
                client_id=client_id, account_id=account_id, amount=amount, idempotency_key=key,
                balance_after=balance - amount,
            )
            Account.objects.filter(pk=account_id).update(energy=F("energy") - amount)
        return ConsumeResult.from_record(tuple(getattr(record, f) for f in RECORD_FIELDS), APPLIED)
    except IntegrityError as exc:
        if not _is_key_conflict(exc):
            raise
        earlier = earlier_record(client_id, key)
        if earlier is None:  # pragma: no cover - the conflicting row was deleted meanwhile
            raise
        return replay(earlier, account_id, amount)
    except (AccountNotFound, InsufficientEnergy):
        earlier = earlier_record(client_id, key)
        if earlier is None:
            raise
        return replay(earlier, account_id, amount)


def _is_key_conflict(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None:
        return diag.constraint_name == IDEMPOTENCY_KEY_CONSTRAINT
    # SQLite names the columns, not the constraint.
    return "energy_consumption.client_id, energy_consumption.idempotency_key" in str(exc)
