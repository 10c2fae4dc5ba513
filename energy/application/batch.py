"""Consume many requests at once, with the same outcome per request as one by one, in order.

Requests go in chunks, one transaction per chunk:
1. lock every account the chunk touches, in id order (``select_for_update()``), so concurrent
   chunks and single consumes queue instead of deadlocking;
2. read the earlier records of the chunk's keys;
3. decide every request in Python, in order, exactly as ``consume`` would: a known key is a
   replay or a mismatch (including keys applied earlier in the same chunk), then a missing
   account, then a balance too low for the amount, else the request is applied;
4. insert the applied records in one statement (``ON CONFLICT DO NOTHING`` on the key's
   UNIQUE constraint, keys in one global order) and deduct once per account (``energy =
   energy - spent``).
If a key turns out to have been applied by someone else after step 2, the decisions are
stale: the chunk is rolled back and decided again.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from django.db import connection, transaction
from psycopg.types.numeric import Int8

from energy.application.consume import (
    APPLIED,
    RECORD_FIELDS,
    ConsumeResult,
    consume,
    lock_balances,
    prepared,
    replay,
)
from energy.application.guard import database_guard
from energy.domain.exceptions import AccountNotFound, EnergyError, InsufficientEnergy, Unavailable
from energy.domain.requests import ConsumeRequest
from energy.models import IDEMPOTENCY_KEY_CONSTRAINT, OPERATOR_CLIENT_ID, Account, Consumption

log = logging.getLogger("energy.consume")

# Requests per transaction: large enough that round trips vanish, small enough that the
# account locks of one chunk are held for milliseconds, not seconds.
CHUNK_SIZE = 500
# A chunk whose keys keep being taken by concurrent writers is decided again this often,
# then its requests are answered one by one.
MAX_ATTEMPTS = 5

_CONSUMPTION = Consumption._meta.db_table
_ACCOUNT = Account._meta.db_table
_FIELDS = ", ".join(RECORD_FIELDS)
_EARLIER = f"SELECT {_FIELDS} FROM {_CONSUMPTION} WHERE client_id = %s AND idempotency_key = ANY(%s)"  # noqa: S608 - names from the models
_INSERT = f"""
INSERT INTO {_CONSUMPTION} (client_id, account_id, amount, idempotency_key, balance_after, created_at)
SELECT %s, account_id, amount, idempotency_key, balance_after, now()
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[])
     WITH ORDINALITY AS planned(account_id, amount, idempotency_key, balance_after, position)
ORDER BY position
ON CONFLICT ON CONSTRAINT {IDEMPOTENCY_KEY_CONSTRAINT} DO NOTHING
RETURNING {_FIELDS}
"""  # noqa: S608 - names from the models and constants
_DEDUCT = f"""
UPDATE {_ACCOUNT} SET energy = energy - spent.amount
FROM unnest(%s::bigint[], %s::bigint[]) AS spent(account_id, amount)
WHERE {_ACCOUNT}.id = spent.account_id
"""  # noqa: S608 - names from the models

Outcome = ConsumeResult | EnergyError


def consume_many(requests: Sequence[ConsumeRequest], *, client_id: int = OPERATOR_CLIENT_ID) -> list[Outcome]:
    """Apply ``requests`` in order in ``client_id``'s key space (default: the operator's).

    Each request gets a ConsumeResult or the EnergyError it ended in.
    """
    if connection.vendor != "postgresql":
        return [_one(client_id, request) for request in requests]
    outcomes: list[Outcome] = []
    for start in range(0, len(requests), CHUNK_SIZE):
        chunk = requests[start:start + CHUNK_SIZE]
        try:
            with database_guard():
                decided = _chunk(client_id, chunk)
        except Unavailable as exc:
            decided = [exc] * len(chunk)
        outcomes.extend(decided)
    if log.isEnabledFor(logging.INFO):
        counts = Counter(o.outcome for o in outcomes)
        log.info("consume_many %s requests", len(requests), extra={"outcomes": dict(counts)})
    return outcomes


def _one(client_id: int, request: ConsumeRequest) -> Outcome:
    try:
        return consume(account_id=request.account_id, amount=request.amount,
                       idempotency_key=request.idempotency_key, client_id=client_id)
    except EnergyError as exc:
        return exc


class _KeyTaken(Exception):
    """A key planned for insertion was committed by a concurrent writer meanwhile."""


def _chunk(client_id: int, chunk: Sequence[ConsumeRequest]) -> list[Outcome]:
    for _ in range(MAX_ATTEMPTS):
        try:
            with transaction.atomic():
                return _decide_and_apply(client_id, chunk)
        except _KeyTaken:
            continue
    return [_one(client_id, request) for request in chunk]


@dataclass
class _Planned:
    position: int
    request: ConsumeRequest
    balance_after: int
    record: tuple | None = None


def _decide_and_apply(client_id: int, chunk: Sequence[ConsumeRequest]) -> list[Outcome]:
    balances = lock_balances([r.account_id for r in chunk])
    known: dict[str, tuple | _Planned] = {
        row[3]: row for row in prepared(_EARLIER, [Int8(client_id), list({r.idempotency_key for r in chunk})])
    }
    decisions: list[tuple | _Planned | EnergyError] = []
    for position, request in enumerate(chunk):
        earlier = known.get(request.idempotency_key)
        if earlier is not None:
            decisions.append(earlier)
        elif request.account_id not in balances:
            decisions.append(AccountNotFound(request.account_id))
        elif balances[request.account_id] < request.amount:
            decisions.append(InsufficientEnergy(request.account_id, balances[request.account_id], request.amount))
        else:
            balances[request.account_id] -= request.amount
            planned = _Planned(position, request, balances[request.account_id])
            known[request.idempotency_key] = planned
            decisions.append(planned)
    _apply(client_id, [d for position, d in enumerate(decisions) if isinstance(d, _Planned) and d.position == position])
    pairs = enumerate(zip(decisions, chunk, strict=True))
    return [_outcome(position, decision, request) for position, (decision, request) in pairs]


def _apply(client_id: int, planned: list[_Planned]) -> None:
    if not planned:
        return
    # One global key order for every writer, so two chunks inserting overlapping keys wait
    # for each other in one direction only and never deadlock.
    planned = sorted(planned, key=lambda p: p.request.idempotency_key)
    records = prepared(_INSERT, [
        Int8(client_id),
        [Int8(p.request.account_id) for p in planned],
        [Int8(p.request.amount) for p in planned],
        [p.request.idempotency_key for p in planned],
        [Int8(p.balance_after) for p in planned],
    ])
    if len(records) != len(planned):
        raise _KeyTaken()
    by_key = {record[3]: record for record in records}
    for p in planned:
        p.record = by_key[p.request.idempotency_key]
    spent: Counter = Counter()
    for p in planned:
        spent[p.request.account_id] += p.request.amount
    prepared(_DEDUCT, [[Int8(a) for a in spent], [Int8(s) for s in spent.values()]])


def _outcome(position: int, decision, request: ConsumeRequest) -> Outcome:
    if isinstance(decision, EnergyError):
        return decision
    if isinstance(decision, _Planned):
        if decision.position == position:
            return ConsumeResult.from_record(decision.record, APPLIED)
        decision = decision.record
    try:
        return replay(decision, request.account_id, request.amount)
    except EnergyError as exc:
        return exc
