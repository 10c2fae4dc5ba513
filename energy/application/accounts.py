"""Account use cases: read a balance, make accounts exist.

A read shows the account as it stands now without writing: a hold past its expiry (by the
database's clock) counts as energy, not held, whether or not a writer has released it yet.
That costs one more probe of the open-holds index, only for an account with something held
(for the others the subquery is never run).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Case, F, OuterRef, Subquery, Sum, When
from django.db.models.functions import Coalesce, Now

from energy.db.analyze import after_seed
from energy.db.guard import database_guard
from energy.domain.decision import HOLD
from energy.domain.exceptions import AccountNotFound, InvalidRequest
from energy.domain.holds import OPEN
from energy.domain.requests import MAX_INT64
from energy.models import Account, Entry

# Rows per INSERT when seeding: large enough to be fast, small enough to keep each
# statement's memory modest.
SEED_BATCH = 5_000
# Seeding more accounts than this in one call is almost certainly a typo.
MAX_SEED_ACCOUNTS = 10_000_000


@dataclass(frozen=True)
class SeedResult:
    accounts: int
    created: int
    energy: int

    def to_dict(self) -> dict:
        return {"accounts": self.accounts, "created": self.created, "existing": self.accounts - self.created,
                "energy": self.energy}


def get_balance(*, account_id: int) -> int:
    """The account's spendable energy now (expired holds included)."""
    return get_account(account_id=account_id)["energy"]


def get_account(*, account_id: int) -> dict:
    """{"account_id", "energy", "held"} as the account stands now: expired holds counted as energy."""
    with database_guard():
        row = balances_now(Account.objects.filter(pk=account_id)).first()
    if row is None:
        raise AccountNotFound(account_id)
    energy, held = row
    return {"account_id": account_id, "energy": energy, "held": held}


def balances_now(accounts):
    """(energy, held) of each account, in one statement: what open holds past their expiry
    hold moves from held to energy, as their release will."""
    expired = (Entry.objects.filter(account_id=OuterRef("pk"), kind=HOLD, state=OPEN, expires_at__lte=Now())
               .order_by().values("account_id").annotate(total=Sum("amount")).values("total"))
    return (accounts.annotate(expired=Case(When(held__gt=0, then=Coalesce(Subquery(expired), 0)), default=0))
            .values_list(F("energy") + F("expired"), F("held") - F("expired")))


def seed_accounts(*, count: int, energy: int, progress=None) -> SeedResult:
    """Make accounts 1..count exist; new ones start with ``energy``, existing ones are untouched."""
    problems = {}
    if not 1 <= count <= MAX_SEED_ACCOUNTS:
        problems["accounts"] = f"must be between 1 and {MAX_SEED_ACCOUNTS}"
    if not 0 <= energy <= MAX_INT64:
        problems["energy"] = f"must be between 0 and {MAX_INT64}"
    if problems:
        raise InvalidRequest(problems)
    with database_guard(), transaction.atomic():
        before = Account.objects.filter(pk__lte=count).count()
        for start in range(1, count + 1, SEED_BATCH):
            stop = min(start + SEED_BATCH, count + 1)
            Account.objects.bulk_create(
                [Account(id=i, energy=energy, opening_energy=energy) for i in range(start, stop)], ignore_conflicts=True
            )
            if progress is not None:
                progress(stop - start)
        _advance_id_sequence()
    with database_guard():
        # New rows on fresh tables: give the planner statistics now, not when autovacuum wakes.
        after_seed()
    return SeedResult(accounts=count, created=count - before, energy=energy)


def _advance_id_sequence() -> None:
    """Explicit ids leave the id sequence behind; move it past them so later inserts work."""
    from django.core.management.color import no_style

    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), [Account]):
            cursor.execute(statement)
