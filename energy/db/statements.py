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
# read entries found by key: a reversal, a capture or a void, which has no key of its own,
# never comes back here.)
RECORD = (
    f"{E.id} AS entry_id, {E.account} AS account_id, {E.amount} AS amount, "
    f"{E.idempotency_key} AS idempotency_key, {E.balance_after} AS balance_after, {E.created_at} AS created_at, "
    f"{E.kind} AS kind, {E.held_after} AS held_after, {E.expires_at} AS expires_at, {E.state} AS state"
)


class ConsumeRow(NamedTuple):
    """The one row of ``CONSUME``: the account's balance before, and the record applied or found."""

    balance: int | None  # None: no such account
    held: int | None
    applied: bool
    entry_id: int | None  # None: no record was applied, none was found in the statement's snapshot
    account_id: int | None
    amount: int | None
    idempotency_key: str | None
    balance_after: int | None
    created_at: object
    kind: str | None  # the earlier entry's kind: a key a credit used is a mismatch for a consume
    held_after: int | None
    expires_at: object
    state: str | None

    def record(self) -> Record | None:
        return None if self.entry_id is None else Record._make(self[3:])


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
#
# Before deciding, the account's expired holds are released (``expired``), as every writer
# does: their state becomes 'expired' and their amount moves from held back to energy, in the
# same UPDATE of the account. Only an account with something held looks: ``held > 0`` is a
# condition on no row of the entry table, so PostgreSQL checks it once before the scan and,
# when nothing is held, never starts the scan (a key of NULL alone would not stop a sequential
# scan the planner may pick). Sums are cast back to bigint: SUM() of bigint is numeric, which
# would make every later comparison numeric. The database's clock after the lock decides
# (clock_timestamp(): now() is when the statement began, before it waited), read once as a
# subquery, so that it bounds the open-holds index scan instead of filtering each open hold. A hold recorded
# after the statement's snapshot is not seen by that UPDATE: it stays open (held) until the
# next writer, and a refused consume is tried once more with a fresh snapshot for it.
CONSUME = f"""
WITH locked AS (
    SELECT {A.id}, {A.energy}, {A.held}, {A.last_seq} FROM {A.table} WHERE {A.id} = %(account_id)s FOR UPDATE
), expired AS (
    UPDATE {E.table} SET {E.state} = 'expired'
    WHERE EXISTS (SELECT FROM locked WHERE {A.held} > 0)
      AND {E.account} = %(account_id)s AND {E.kind} = 'hold' AND {E.state} = 'open'
      AND {E.expires_at} <= (SELECT clock_timestamp())
    RETURNING {E.amount}
), fresh AS (
    SELECT {A.id}, {A.energy} + released AS {A.energy}, {A.held} - released AS {A.held}, {A.last_seq}, released
    FROM locked, (SELECT COALESCE(SUM({E.amount}), 0)::bigint AS released FROM expired) AS expiry
), recorded AS (
    INSERT INTO {E.table} ({E.client}, {E.account}, {E.kind}, {E.amount}, {E.idempotency_key}, {E.balance_after},
                           {E.held_after}, {E.seq}, {E.created_at})
    SELECT %(client_id)s, {A.id}, 'consume', %(amount)s, %(key)s, {A.energy} - %(amount)s, {A.held},
           {A.last_seq} + 1, now()
    FROM fresh
    WHERE {A.energy} >= %(amount)s
    ON CONFLICT ON CONSTRAINT {IDEMPOTENCY_KEY_CONSTRAINT} DO NOTHING
    RETURNING {RECORD}
), deducted AS (
    UPDATE {A.table}
    SET {A.energy} = fresh.{A.energy} - CASE WHEN EXISTS (SELECT FROM recorded) THEN %(amount)s ELSE 0 END,
        {A.held} = fresh.{A.held},
        {A.last_seq} = fresh.{A.last_seq} + CASE WHEN EXISTS (SELECT FROM recorded) THEN 1 ELSE 0 END
    FROM fresh
    WHERE {A.table}.{A.id} = fresh.{A.id} AND (EXISTS (SELECT FROM recorded) OR fresh.released > 0)
), earlier AS (
    SELECT {RECORD} FROM {E.table}
    WHERE {E.client} = %(client_id)s AND {E.idempotency_key} = %(key)s AND NOT EXISTS (SELECT FROM recorded)
)
SELECT (SELECT {A.energy} FROM fresh) AS balance, (SELECT {A.held} FROM fresh) AS held,
       EXISTS (SELECT FROM recorded) AS applied, record.*
FROM (VALUES (1)) AS one_row
LEFT JOIN (SELECT * FROM recorded UNION ALL SELECT * FROM earlier) AS record ON true
"""  # noqa: S608 - table and column names from the models' _meta


class Locked(NamedTuple):
    """A locked account: its balances, and the position of its newest entry."""

    account_id: int
    energy: int
    held: int
    last_seq: int


# Arrays of ids and amounts are cast to bigint[] here: psycopg sends a list of ints as the
# smallest array type that holds them, which costs less than wrapping every element.

# The accounts of a batch, locked in id order so that two lockers never deadlock.
LOCK_ACCOUNTS = f"""
SELECT {A.id} AS account_id, {A.energy} AS energy, {A.held} AS held, {A.last_seq} AS last_seq FROM {A.table}
WHERE {A.id} = ANY(%(account_ids)s::bigint[]) ORDER BY {A.id} FOR UPDATE
"""  # noqa: S608 - table and column names from the models' _meta

# The expired holds of locked accounts released: each becomes 'expired' and its amount moves
# from held back to energy. Run under the accounts' row locks, in a statement of its own, so
# its snapshot sees every hold committed before the locks were granted. Returns the accounts
# it changed, as they are now.
RELEASE_EXPIRED = f"""
WITH expired AS (
    UPDATE {E.table} SET {E.state} = 'expired'
    WHERE {E.account} = ANY(%(account_ids)s::bigint[]) AND {E.kind} = 'hold' AND {E.state} = 'open'
      AND {E.expires_at} <= (SELECT clock_timestamp())
    RETURNING {E.account} AS account_id, {E.amount} AS amount
), released AS (
    SELECT account_id, SUM(amount)::bigint AS amount, COUNT(*) AS holds FROM expired GROUP BY account_id
)
UPDATE {A.table} SET {A.energy} = {A.table}.{A.energy} + released.amount,
                     {A.held} = {A.table}.{A.held} - released.amount
FROM released
WHERE {A.table}.{A.id} = released.account_id
RETURNING {A.table}.{A.id} AS account_id, {A.table}.{A.energy} AS energy, {A.table}.{A.held} AS held,
          {A.table}.{A.last_seq} AS last_seq, released.amount AS released, released.holds AS holds
"""  # noqa: S608 - table and column names from the models' _meta


class Released(NamedTuple):
    """An account whose expired holds were just released: its balances now, and what was released."""

    account_id: int
    energy: int
    held: int
    last_seq: int
    released: int
    holds: int

# The stored records of a batch's keys.
EARLIER_RECORDS = f"""
SELECT {RECORD} FROM {E.table} WHERE {E.client} = %(client_id)s AND {E.idempotency_key} = ANY(%(keys)s)
"""  # noqa: S608 - table and column names from the models' _meta

# A batch's new records, inserted in one global key order (the caller sorts) so that two
# writers of overlapping keys wait in one direction only and never deadlock; each carries
# the chain position it was planned at, so the insertion order does not matter.
INSERT_RECORDS = f"""
INSERT INTO {E.table} ({E.client}, {E.account}, {E.kind}, {E.amount}, {E.idempotency_key}, {E.balance_after},
                       {E.held_after}, {E.seq}, {E.created_at})
SELECT %(client_id)s, account_id, 'consume', amount, idempotency_key, balance_after, held_after, seq, now()
FROM unnest(%(account_ids)s::bigint[], %(amounts)s::bigint[], %(keys)s::text[], %(balances_after)s::bigint[],
            %(helds_after)s::bigint[], %(seqs)s::bigint[])
     WITH ORDINALITY AS planned(account_id, amount, idempotency_key, balance_after, held_after, seq, position)
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
