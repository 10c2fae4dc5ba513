"""Read use cases over the ledger: one stored record, an account's history. They change nothing.

Both run in a read-only transaction, so a bug here could not write even if it tried, and the
history reads the balance and the records from one snapshot (on PostgreSQL, REPEATABLE READ),
so the balance shown is the one the newest record shown left.

"Newest first" means in the order the account's consumptions were applied, newest first:
ascending ``balance_after``. Ids are not that order: a batch inserts its records in key order
(so concurrent batches never deadlock), not in the order it applied them to an account.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction

from energy.application.consume import RECORD_COLUMNS, ConsumeResult, earlier_record
from energy.db.guard import database_guard
from energy.domain.decision import Record
from energy.domain.exceptions import AccountNotFound, InvalidRequest, KeyNotFound
from energy.domain.requests import check_page_limit
from energy.models import Account, Consumption

DEFAULT_HISTORY_LIMIT = 20


@dataclass(frozen=True)
class Entry:
    """One applied consumption and the client whose key it was."""

    result: ConsumeResult
    client: str

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "client": self.client}


@dataclass(frozen=True)
class History:
    account_id: int
    energy: int
    entries: list[Entry]
    # True when older consumptions exist past the last entry (ask again with before=its id).
    more: bool

    def to_dict(self) -> dict:
        return {"account_id": self.account_id, "energy": self.energy,
                "consumptions": [entry.to_dict() for entry in self.entries]}


def get_record(*, client_id: int, idempotency_key: str) -> ConsumeResult:
    """The record of ``idempotency_key`` in ``client_id``'s key space, as it was first answered."""
    with database_guard(), _read_only():
        record = earlier_record(client_id, idempotency_key)
    if record is None:
        raise KeyNotFound(idempotency_key)
    return ConsumeResult.applied(record)


def account_history(
    *, account_id: int, limit: int = DEFAULT_HISTORY_LIMIT, before: int | None = None, client_id: int | None = None
) -> History:
    """Up to ``limit`` of the account's consumptions, newest first, older than consumption ``before``.

    With ``client_id``, only that client's: a client of the API reads its own results and
    never another client's keys, even on an account they share.
    """
    check_page_limit(limit)
    with database_guard(), _read_only():
        energy = Account.objects.filter(pk=account_id).values_list("energy", flat=True).first()
        if energy is None:
            raise AccountNotFound(account_id)
        rows = _newest_first(account_id, before, client_id)[:limit + 1]
        entries = [Entry(ConsumeResult.applied(Record(*row[:-1])), row[-1]) for row in rows]
    return History(account_id, energy, entries[:limit], more=len(entries) > limit)


def _newest_first(account_id: int, before: int | None, client_id: int | None):
    records = Consumption.objects.filter(account_id=account_id)
    if client_id is not None:
        records = records.filter(client_id=client_id)
    if before is not None:
        after = records.filter(pk=before).values_list("balance_after", flat=True).first()
        if after is None:
            raise InvalidRequest({"before": f"account {account_id} has no consumption {before}"})
        # Older than ``before``: a higher balance_after, or the same one with a lower id.
        records = records.filter(balance_after__gte=after).exclude(balance_after=after, id__gte=before)
    return records.order_by("balance_after", "-id").values_list(*RECORD_COLUMNS, "client__name")


@contextmanager
def _read_only():
    """A read-only transaction; on PostgreSQL one snapshot for every statement in it."""
    begins = not connection.in_atomic_block
    with transaction.atomic():
        # SET TRANSACTION must come first in the transaction: only when this block began it.
        if begins and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield
