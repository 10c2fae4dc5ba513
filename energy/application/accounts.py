"""Account use cases: read a balance, make accounts exist."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction

from energy.db.analyze import after_seed
from energy.db.guard import database_guard
from energy.domain.exceptions import AccountNotFound, InvalidRequest
from energy.domain.requests import MAX_INT64
from energy.models import Account

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
    with database_guard():
        energy = Account.objects.filter(pk=account_id).values_list("energy", flat=True).first()
    if energy is None:
        raise AccountNotFound(account_id)
    return energy


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
