"""How every writer takes an account: its row locked, then its expired holds released.

The account's row lock is the one queue every change of the account waits in (consumes,
credits, reversals, holds, captures, voids, expiries), so what a writer reads after taking it
cannot move until it commits. A hold's state changes only under that lock, and a hold past
its ``expires_at`` (by the database's clock) is released by the first writer that takes the
lock after that moment: its state becomes 'expired' and its amount moves from ``held`` back
to ``energy`` before anything is decided. No scheduler is needed for expiry to take effect;
reads count expired holds as energy on their own (``energy.application.accounts``).

The consume statement does the same inside PostgreSQL (``statements.CONSUME``); this is the
ORM's way, for every other writer and for SQLite.
"""

from __future__ import annotations

from typing import NamedTuple

from django.db.models import BigIntegerField, F, Value
from django.db.models.functions import Now

from energy.domain.decision import HOLD
from energy.domain.holds import EXPIRED, OPEN
from energy.models import Account, Entry


class LockedAccount(NamedTuple):
    """An account as it stands under its row lock, expired holds released."""

    account_id: int
    energy: int
    held: int
    last_seq: int
    # What this writer just released (none, mostly): how many expired holds, and their energy.
    released_holds: int = 0
    released: int = 0


def lock_account(account_id: int) -> LockedAccount | None:
    """Lock the account's row until the transaction ends and release its expired holds; None: no account."""
    row = Account.objects.select_for_update().filter(pk=account_id).values_list("energy", "held", "last_seq").first()
    if row is None:
        return None
    energy, held, last_seq = row
    holds, released = release_expired(account_id) if held > 0 else (0, 0)
    return LockedAccount(account_id, energy + released, held - released, last_seq, holds, released)


def release_expired(account_id: int) -> tuple[int, int]:
    """Release the locked account's expired holds; how many, and the energy they give back.

    The caller holds the account's row lock: no hold of the account changes state meanwhile,
    and each statement here (READ COMMITTED) sees every hold committed before the lock was
    granted. ``Now()`` is the statement's time on PostgreSQL, after the lock was granted.
    """
    expired = list(open_holds(account_id).filter(expires_at__lte=Now()).values_list("id", "amount"))
    if not expired:
        return 0, 0
    total = sum(amount for _, amount in expired)
    Entry.objects.filter(pk__in=[entry_id for entry_id, _ in expired], state=OPEN).update(state=EXPIRED)
    Account.objects.filter(pk=account_id).update(energy=F("energy") + int64(total), held=F("held") - int64(total))
    return len(expired), total


def open_holds(account_id: int):
    """The account's holds still marked open (expired ones included, until released); read through their index."""
    return Entry.objects.filter(account_id=account_id, kind=HOLD, state=OPEN)


def int64(amount: int) -> Value:
    """An amount as a BIGINT parameter: a bare int beside F() is sent as a 4-byte integer on
    PostgreSQL, and one above 2**31 - 1 would wrap around instead of failing."""
    return Value(amount, output_field=BigIntegerField())
