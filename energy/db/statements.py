"""The SQL the PostgreSQL consume paths send, written out whole, and how its rows come back.

Table and column names come from the models' ``_meta``, so a renamed column cannot leave a
statement behind. Statements run on Django's cursor, so ``connection.execute_wrapper()``,
``assertNumQueries`` and the DEBUG query log see them; with server-side binding (see
``energy.db.config``) psycopg prepares each one on the server once it has run a few times on
a connection, so a consume pays no parsing or planning inside the row lock.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple, TypeVar

from django.db import connection
from psycopg.types.numeric import Int8

from energy.domain.decision import Record
from energy.models import IDEMPOTENCY_KEY_CONSTRAINT, Account, Entry


def _names(model) -> SimpleNamespace:
    """``table`` and one attribute per field (``account`` -> ``account_id``): the names the database knows."""
    return SimpleNamespace(table=model._meta.db_table, **{f.name: f.column for f in model._meta.concrete_fields})


A = _names(Account)
E = _names(Entry)

# An entry as a Record: the statements return these columns under these names. (They only
# read entries found by key: a reversal, which has no key of its own, never comes back here.)
RECORD = (
    f"{E.id} AS entry_id, {E.account} AS account_id, {E.amount} AS amount, "
    f"{E.idempotency_key} AS idempotency_key, {E.balance_after} AS balance_after, {E.created_at} AS created_at, "
    f"{E.kind} AS kind"
)


class ConsumeRow(NamedTuple):
    """The one row of ``CONSUME``: the account's balance before, and the record applied or found."""

    balance: int | None  # None: no such account
    applied: bool
    entry_id: int | None  # None: no record was applied, none was found in the statement's snapshot
    account_id: int | None
    amount: int | None
    idempotency_key: str | None
    balance_after: int | None
    created_at: object
    kind: str | None  # the earlier entry's kind: a key a credit used is a mismatch for a consume

    def record(self) -> Record | None:
        return None if self.entry_id is None else Record._make(self[2:])


# Lock the account, check the balance, record the request unless its key is known, deduct,
# and else return the key's earlier record: one statement, so one transaction and one
# round trip, and the row lock is held only while the server works. ``earlier`` runs
# only when nothing was recorded, so the happy path pays nothing for idempotency. The
# entry takes the next position in the account's chain (last_seq + 1, read under the row
# lock) and the same UPDATE that deducts moves last_seq on: no statement of its own.
# The UPDATE computes from ``locked``, the row as it is under the lock, not from the row
# as the statement's snapshot saw it: when a credit committed while this statement waited
# for the lock, the snapshot's row is older and holds less energy, and PostgreSQL checks
# CHECK constraints on the row computed from it before it moves on to the newest one, so
# ``energy - amount`` could fail energy >= 0 for a consume that the newest row affords.
# Under the lock the two are the same value, so this is still the database's arithmetic.
CONSUME = f"""
WITH locked AS (
    SELECT {A.id}, {A.energy}, {A.last_seq} FROM {A.table} WHERE {A.id} = %(account_id)s FOR UPDATE
), recorded AS (
    INSERT INTO {E.table} ({E.client}, {E.account}, {E.kind}, {E.amount}, {E.idempotency_key}, {E.balance_after},
                           {E.seq}, {E.created_at})
    SELECT %(client_id)s, {A.id}, 'consume', %(amount)s, %(key)s, {A.energy} - %(amount)s, {A.last_seq} + 1, now()
    FROM locked
    WHERE {A.energy} >= %(amount)s
    ON CONFLICT ON CONSTRAINT {IDEMPOTENCY_KEY_CONSTRAINT} DO NOTHING
    RETURNING {RECORD}
), deducted AS (
    UPDATE {A.table} SET {A.energy} = locked.{A.energy} - %(amount)s, {A.last_seq} = locked.{A.last_seq} + 1
    FROM locked
    WHERE {A.table}.{A.id} = locked.{A.id} AND EXISTS (SELECT FROM recorded)
), earlier AS (
    SELECT {RECORD} FROM {E.table}
    WHERE {E.client} = %(client_id)s AND {E.idempotency_key} = %(key)s AND NOT EXISTS (SELECT FROM recorded)
)
SELECT (SELECT {A.energy} FROM locked) AS balance, EXISTS (SELECT FROM recorded) AS applied, record.*
FROM (VALUES (1)) AS one_row
LEFT JOIN (SELECT * FROM recorded UNION ALL SELECT * FROM earlier) AS record ON true
"""  # noqa: S608 - table and column names from the models' _meta


class Locked(NamedTuple):
    """A locked account: its balance, and the position of its newest entry."""

    account_id: int
    energy: int
    last_seq: int


# Arrays of ids and amounts are cast to bigint[] here: psycopg sends a list of ints as the
# smallest array type that holds them, which costs less than wrapping every element.

# The accounts of a batch, locked in id order so that two lockers never deadlock.
LOCK_ACCOUNTS = f"""
SELECT {A.id} AS account_id, {A.energy} AS energy, {A.last_seq} AS last_seq FROM {A.table}
WHERE {A.id} = ANY(%(account_ids)s::bigint[]) ORDER BY {A.id} FOR UPDATE
"""  # noqa: S608 - table and column names from the models' _meta

# The stored records of a batch's keys.
EARLIER_RECORDS = f"""
SELECT {RECORD} FROM {E.table} WHERE {E.client} = %(client_id)s AND {E.idempotency_key} = ANY(%(keys)s)
"""  # noqa: S608 - table and column names from the models' _meta

# A batch's new records, inserted in one global key order (the caller sorts) so that two
# writers of overlapping keys wait in one direction only and never deadlock; each carries
# the chain position it was planned at, so the insertion order does not matter.
INSERT_RECORDS = f"""
INSERT INTO {E.table} ({E.client}, {E.account}, {E.kind}, {E.amount}, {E.idempotency_key}, {E.balance_after},
                       {E.seq}, {E.created_at})
SELECT %(client_id)s, account_id, 'consume', amount, idempotency_key, balance_after, seq, now()
FROM unnest(%(account_ids)s::bigint[], %(amounts)s::bigint[], %(keys)s::text[], %(balances_after)s::bigint[],
            %(seqs)s::bigint[])
     WITH ORDINALITY AS planned(account_id, amount, idempotency_key, balance_after, seq, position)
ORDER BY position
ON CONFLICT ON CONSTRAINT {IDEMPOTENCY_KEY_CONSTRAINT} DO NOTHING
RETURNING {RECORD}
"""  # noqa: S608 - table and column names from the models' _meta

# What a batch spent and how many entries it added, once per account, computed by the
# database from the locked row.
DEDUCT = f"""
UPDATE {A.table} SET {A.energy} = {A.table}.{A.energy} - spent.amount,
                     {A.last_seq} = {A.table}.{A.last_seq} + spent.entries
FROM unnest(%(account_ids)s::bigint[], %(amounts)s::bigint[], %(entries)s::bigint[])
     AS spent(account_id, amount, entries)
WHERE {A.table}.{A.id} = spent.account_id
"""  # noqa: S608 - table and column names from the models' _meta

# Plans for the batch statements are made for each execution, not once per connection: a
# generic plan chosen while a new database's tables were nearly empty would scan them
# sequentially for the rest of the run, whatever they grow to.
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"

Row = TypeVar("Row", bound=tuple)
_checked: set[str] = set()


def fetch(sql: str, params: dict, row: type[Row]) -> list[Row]:
    """Run ``sql`` on Django's connection, in its current transaction; rows as ``row``, checked by column name."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if sql not in _checked:
            names = tuple(column.name for column in cursor.description)
            if names != row._fields:
                raise RuntimeError(f"columns {names} do not match {row.__name__}{row._fields}")
            _checked.add(sql)
        return [row._make(values) for values in cursor.fetchall()]


def execute(sql: str, params: dict | None = None) -> int:
    """Run a statement that returns no rows; the number of rows it touched."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def int8(value: int) -> Int8:
    """One parameter type for every id and amount: psycopg would pick int2, int4 or int8 by value,
    and each type would be prepared as a statement of its own."""
    return Int8(value)
