"""Consume many requests at once, with the same outcome per request as one by one, in order.

Requests go in chunks, one transaction per chunk:
1. read the stored records of the chunk's keys (a record, once committed, never changes);
2. lock the accounts of the requests whose keys are new, in id order, so concurrent chunks
   and single consumes queue instead of deadlocking, and release their expired holds, as
   every writer does; a chunk of replays locks nothing;
3. decide every request in order with the one rule (``energy.domain.decision.plan``), each
   seeing what those before it applied, and give each applied one the next position in its
   account's chain (``last_seq + 1``, ``+ 2``, … in that order);
4. insert the applied records in one statement (``ON CONFLICT DO NOTHING`` on the key's
   UNIQUE constraint, keys in one global order) and deduct once per account (``energy =
   energy - spent``, ``last_seq = last_seq + entries``).
If a key turns out to have been recorded by someone else after step 1, the decisions are
stale: the chunk is rolled back and decided again.

``apply_many`` takes requests of every kind (a replay file's lines): each run of consumes goes
through ``consume_many``, and each credit or reverse through its own use case, in order.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Sequence

from django.db import connection, transaction

from energy.application.consume import ConsumeResult, consume
from energy.application.entries import EntryResult, credit, reverse
from energy.db import statements
from energy.db.guard import database_guard
from energy.domain.clients import CLI
from energy.domain.decision import Apply, Decision, Pending, Record, Refuse, Replay, plan
from energy.domain.exceptions import EnergyError, Unavailable
from energy.domain.requests import ConsumeRequest, CreditRequest, ReverseRequest
from energy.models import OPERATOR_CLIENT_ID

log = logging.getLogger("energy.consume")

# Requests per transaction: large enough that round trips vanish, small enough that the
# account locks of one chunk are held for milliseconds, not seconds.
CHUNK_SIZE = 500
# A chunk whose keys keep being taken by concurrent writers is decided again this often,
# then its requests are answered one by one.
MAX_ATTEMPTS = 5

Outcome = ConsumeResult | EnergyError
AnyRequest = ConsumeRequest | CreditRequest | ReverseRequest


def apply_many(requests: Sequence[AnyRequest], *, client_id: int = OPERATOR_CLIENT_ID,
               channel: str = CLI) -> list[Outcome | EntryResult]:
    """Apply requests of any kind in order, each with the outcome it would get alone, in ``client_id``'s key space.

    Consecutive consumes are applied in chunks (``consume_many``); a credit or a reverse is
    applied on its own, after everything before it and before everything after it. Each
    request gets its result or the EnergyError it ended in (``Unavailable`` included).
    """
    outcomes: list[Outcome | EntryResult] = []
    run: list[ConsumeRequest] = []
    for request in requests:
        if isinstance(request, ConsumeRequest):
            run.append(request)
            continue
        if run:
            outcomes += consume_many(run, client_id=client_id, channel=channel)
            run = []
        outcomes.append(_entry(client_id, request, channel))
    if run:
        outcomes += consume_many(run, client_id=client_id, channel=channel)
    return outcomes


def _entry(client_id: int, request: CreditRequest | ReverseRequest, channel: str) -> EntryResult | EnergyError:
    try:
        if isinstance(request, CreditRequest):
            return credit(account_id=request.account_id, amount=request.amount,
                          idempotency_key=request.idempotency_key, client_id=client_id, channel=channel)
        return reverse(idempotency_key=request.idempotency_key, client_id=client_id, channel=channel)
    except EnergyError as exc:
        return exc


def consume_many(requests: Sequence[ConsumeRequest], *, client_id: int = OPERATOR_CLIENT_ID,
                 channel: str = CLI) -> list[Outcome]:
    """Apply ``requests`` in order in ``client_id``'s key space (default: the operator's).

    Each request gets a ConsumeResult or the EnergyError it ended in. ``channel`` names
    where they came from in the log record.
    """
    if connection.vendor != "postgresql":
        return [_one(client_id, request, channel) for request in requests]
    outcomes: list[Outcome] = []
    for start in range(0, len(requests), CHUNK_SIZE):
        chunk = requests[start:start + CHUNK_SIZE]
        try:
            with database_guard():
                decided = _chunk(client_id, chunk, channel)
        except Unavailable as exc:
            decided = [exc] * len(chunk)
        outcomes.extend(decided)
    if log.isEnabledFor(logging.INFO):
        counts = Counter(o.outcome for o in outcomes)
        log.info("consume_many %s requests", len(requests), extra={"outcomes": dict(counts), "channel": channel})
    return outcomes


def _one(client_id: int, request: ConsumeRequest, channel: str) -> Outcome:
    try:
        return consume(account_id=request.account_id, amount=request.amount,
                       idempotency_key=request.idempotency_key, client_id=client_id, channel=channel)
    except EnergyError as exc:
        return exc


class _KeyTaken(Exception):
    """A key planned for insertion was committed by a concurrent writer meanwhile."""


def _chunk(client_id: int, chunk: Sequence[ConsumeRequest], channel: str) -> list[Outcome]:
    for _ in range(MAX_ATTEMPTS):
        try:
            with transaction.atomic():
                return _decide_and_apply(client_id, chunk)
        except _KeyTaken:
            continue
    return [_one(client_id, request, channel) for request in chunk]


def _decide_and_apply(client_id: int, chunk: Sequence[ConsumeRequest]) -> list[Outcome]:
    int8 = statements.int8
    statements.execute(statements.CUSTOM_PLANS)
    stored = {
        record.idempotency_key: record
        for record in statements.fetch(statements.EARLIER_RECORDS, {
            "client_id": int8(client_id), "keys": list({r.idempotency_key for r in chunk}),
        }, Record)
    }
    locked = lock_balances([r.account_id for r in chunk if r.idempotency_key not in stored])
    decisions = plan(chunk, stored=stored, balances={account: row.energy for account, row in locked.items()})
    last_seq = {account: row.last_seq for account, row in locked.items()}
    held = {account: row.held for account, row in locked.items()}
    applying = []
    for request, decision in zip(chunk, decisions, strict=True):
        if isinstance(decision, Apply):
            last_seq[request.account_id] += 1
            applying.append((request, decision, last_seq[request.account_id]))
    applied = _apply(client_id, applying, held)
    return [_outcome(request, decision, applied) for request, decision in zip(chunk, decisions, strict=True)]


def lock_balances(account_ids: list[int]) -> dict[int, statements.Locked]:
    """Lock the accounts' rows in id order, so two lockers never deadlock, and release their expired holds;
    their balances and chain ends by id."""
    if not account_ids:
        return {}
    rows = statements.fetch(statements.LOCK_ACCOUNTS, {"account_ids": sorted(set(account_ids))}, statements.Locked)
    locked = {row.account_id: row for row in rows}
    holding = [account for account, row in locked.items() if row.held > 0]
    if holding:
        for now in statements.fetch(statements.RELEASE_EXPIRED, {"account_ids": holding}, statements.Released):
            locked[now.account_id] = statements.Locked(now.account_id, now.energy, now.held, now.last_seq)
    return locked


def _apply(client_id: int, applying: list[tuple[ConsumeRequest, Apply, int]],
           held: dict[int, int]) -> dict[str, Record]:
    """Insert the records at their planned chain positions and deduct the amounts; the new records by key."""
    if not applying:
        return {}
    # One global key order for every writer, so two chunks inserting overlapping keys wait
    # for each other in one direction only and never deadlock.
    applying.sort(key=lambda item: item[0].idempotency_key)
    records = statements.fetch(statements.INSERT_RECORDS, {
        "client_id": statements.int8(client_id),
        "account_ids": [r.account_id for r, _, _ in applying],
        "amounts": [r.amount for r, _, _ in applying],
        "keys": [r.idempotency_key for r, _, _ in applying],
        "balances_after": [d.balance_after for _, d, _ in applying],
        # A consume leaves held as the lock (and the release) found it.
        "helds_after": [held[r.account_id] for r, _, _ in applying],
        "seqs": [seq for _, _, seq in applying],
    }, Record)
    if len(records) != len(applying):
        raise _KeyTaken()
    spent: Counter = Counter()
    entries: Counter = Counter()
    for request, _, _ in applying:
        spent[request.account_id] += request.amount
        entries[request.account_id] += 1
    statements.execute(statements.DEDUCT, {
        "account_ids": list(spent), "amounts": list(spent.values()), "entries": [entries[a] for a in spent],
    })
    return {record.idempotency_key: record for record in records}


def _outcome(request: ConsumeRequest, decision: Decision, applied: dict[str, Record]) -> Outcome:
    match decision:
        case Apply():
            return ConsumeResult.applied(applied[request.idempotency_key])
        case Replay(earlier=Pending()):
            return ConsumeResult.replayed(applied[request.idempotency_key])
        case Replay(earlier=record):
            return ConsumeResult.replayed(record)
        case Refuse(error=error):
            return error
