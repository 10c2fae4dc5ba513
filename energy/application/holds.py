"""Holds: reserve energy now, then spend part of it (capture) or give it back (void), or let it expire.

A hold is an entry of the account's ledger under a key of its own, like a consume: it moves
its amount from ``energy`` to ``held``. A capture or a void is an entry too, with no key of
its own: it names the hold (``target``) and is answered under the hold's key, like a reversal.
Each use case owns one transaction and follows the credit's steps (``energy.application.entries``):
lock the account and release its expired holds (``energy.application.locks``), read the facts
(the hold as it stands now, its capture or void if recorded), let the one rule decide
(``energy.domain.decision.decide``), record the entry and move both balances.

Capture, void and expiry of one hold are serialized by the account's row lock, and the hold's
state is read under it: exactly one of them resolves the hold. The database refuses what the
code could get wrong anyway: a second capture or void of one hold breaks the one-resolution
UNIQUE index, and the state changes only from 'open'.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Now

from energy.application.consume import APPLIED, REPLAYED, earlier_record, is_key_conflict
from energy.application.entries import EntryResult, balances, logged, record_entry, resolution_of
from energy.application.locks import lock_account
from energy.db.constraints import refused_by
from energy.db.guard import database_guard
from energy.domain.clients import CLI
from energy.domain.decision import CAPTURE, HOLD, VOID, Apply, Record, Refuse, Replay, decide
from energy.domain.exceptions import InvalidRequest
from energy.domain.holds import CAPTURED, DEFAULT_EXPIRES_IN, OPEN, VOIDED, check_expires_in
from energy.domain.requests import CaptureRequest, HoldRequest, VoidRequest, positive_int64
from energy.models import ONE_RESOLUTION_CONSTRAINT, OPERATOR_CLIENT_ID, Entry

# What a hold becomes when a request of each kind resolves it.
RESOLVED = {CAPTURE: CAPTURED, VOID: VOIDED}


def hold(*, account_id: int, amount: int, idempotency_key: str, expires_in: int = DEFAULT_EXPIRES_IN,
         client_id: int = OPERATOR_CLIENT_ID, channel: str = CLI) -> EntryResult:
    """Move ``amount`` of the account's energy to held for ``expires_in`` seconds, once per key.

    Returns applied/replayed (the body says "state": "open") or raises an EnergyError: not
    enough energy is InsufficientEnergy; the key used for anything else is IdempotencyKeyMismatch.
    """
    request = HoldRequest(account_id, amount, idempotency_key, check_expires_in(expires_in))
    with logged(HOLD, channel, client_id, idempotency_key, account_id=account_id, amount=amount) as outcome:
        with database_guard():
            result = _hold(client_id, request)
        outcome.append(result.status)
        return result


def capture(*, idempotency_key: str, amount: int | None = None, client_id: int = OPERATOR_CLIENT_ID,
            channel: str = CLI) -> EntryResult:
    """Spend ``amount`` (default: all) of the open hold recorded under the key; the rest goes back to energy.

    The same capture again is replayed; another amount is IdempotencyKeyMismatch; an amount
    above the hold's is InvalidRequest; a hold voided or expired, or a key that names no
    hold, is InvalidState; no entry under the key is KeyNotFound.
    """
    if amount is not None:
        problems: dict[str, str] = {}
        if isinstance(amount, bool) or not isinstance(amount, int):
            problems["amount"] = "must be an integer"
        else:
            positive_int64(amount, "amount", problems)
        if problems:
            raise InvalidRequest(problems)
    request = CaptureRequest(idempotency_key, amount)
    with logged(CAPTURE, channel, client_id, idempotency_key, amount=amount) as outcome:
        with database_guard():
            result = _resolve(client_id, request)
        outcome.append(result.status)
        return result


def void(*, idempotency_key: str, client_id: int = OPERATOR_CLIENT_ID, channel: str = CLI) -> EntryResult:
    """Give the open hold recorded under the key back to energy.

    Again: replayed. A hold captured or expired, or a key that names no hold, is
    InvalidState; no entry under the key is KeyNotFound.
    """
    request = VoidRequest(idempotency_key)
    with logged(VOID, channel, client_id, idempotency_key) as outcome:
        with database_guard():
            result = _resolve(client_id, request)
        outcome.append(result.status)
        return result


def expire_holds() -> dict:
    """Release every hold past its expiry now, one account (one short transaction) at a time.

    Nothing depends on it: reads count expired holds as energy and writers release them
    anyway; this writes it down, e.g. from cron. Returns {"released": holds, "energy": energy
    given back, "accounts": accounts changed}.
    """
    holds = energy = accounts = 0
    with database_guard():
        due = (Entry.objects.filter(kind=HOLD, state=OPEN, expires_at__lte=Now())
               .values_list("account_id", flat=True).distinct().order_by("account_id"))
        for account_id in list(due):
            with transaction.atomic():
                locked = lock_account(account_id)
            if locked is not None and locked.released_holds:
                holds, energy, accounts = holds + locked.released_holds, energy + locked.released, accounts + 1
    return {"released": holds, "energy": energy, "accounts": accounts}


def _hold(client_id: int, request: HoldRequest) -> EntryResult:
    key = request.idempotency_key
    try:
        with transaction.atomic():
            locked = lock_account(request.account_id)
            decision = decide(request, earlier=earlier_record(client_id, key), **balances(locked))
            if isinstance(decision, Apply):
                # Both times from one reading of the database's clock, so expires_at - created_at
                # is the lifetime asked for, exactly: a replay is checked against it.
                return EntryResult.of(APPLIED, record_entry(
                    client_id, request.account_id, HOLD, request.amount, decision, locked, key=key,
                    created_at=Now(), expires_at=Now() + Value(timedelta(seconds=request.expires_in)), state=OPEN))
    except IntegrityError as exc:
        if not is_key_conflict(exc):
            raise
        # Another account's request took the key after it was looked up: decide again with its record.
        decision = decide(request, earlier=earlier_record(client_id, key), balance=None)
    return _answer(decision, None)


def _resolve(client_id: int, request: CaptureRequest | VoidRequest) -> EntryResult:
    # The hold's key, account and amount never change: found without a lock. Its state is
    # read again under the account's lock, after expired holds were released.
    named = earlier_record(client_id, request.idempotency_key)
    if named is None or named.kind != HOLD:
        return _answer(decide(request, earlier=named, balance=None), named)
    try:
        with transaction.atomic():
            locked = lock_account(named.account_id)
            hold_now = named._replace(state=Entry.objects.filter(pk=named.entry_id).values_list(
                "state", flat=True).get())
            decision = decide(request, earlier=hold_now, resolution=resolution_of(named), **balances(locked))
            if isinstance(decision, Apply):
                return _record_resolution(client_id, request, hold_now, decision, locked)
    except IntegrityError as exc:
        if not refused_by(exc, ONE_RESOLUTION_CONSTRAINT):
            raise
        # Only a writer that bypassed the account's lock gets here; the index stopped it.
        decision = decide(request, earlier=named, balance=None, resolution=resolution_of(named))
    return _answer(decision, named)


def _record_resolution(client_id: int, request: CaptureRequest | VoidRequest, hold_now: Record, decision: Apply,
                       locked) -> EntryResult:
    spent = (hold_now.amount if request.amount is None else request.amount) if request.kind == CAPTURE else None
    record = record_entry(client_id, hold_now.account_id, request.kind,
                          hold_now.amount if spent is None else spent, decision, locked, target=hold_now)
    changed = Entry.objects.filter(pk=hold_now.entry_id, state=OPEN).update(state=RESOLVED[request.kind])
    if changed != 1:  # pragma: no cover - the state was read open under the lock that keeps it
        raise RuntimeError(f"hold {hold_now.entry_id} left the open state under its account's lock")
    return EntryResult.of(APPLIED, record, released=None if spent is None else hold_now.amount - spent)


def _answer(decision, hold_record: Record | None) -> EntryResult:
    """The result of a decision that changed nothing: a replay's, or the refusal raised."""
    match decision:
        case Replay(earlier=Record() as record):
            released = hold_record.amount - record.amount if record.kind == CAPTURE and hold_record else None
            return EntryResult.of(REPLAYED, record, released=released)
        case Refuse(error=error):
            raise error
    raise RuntimeError(f"{decision!r} was not carried out")  # pragma: no cover - an Apply returns above


