"""Read use cases over the ledger: one stored record, an account's history. They change nothing.

Both run in a read-only transaction, so a bug here could not write even if it tried, and the
history reads the balance and the entries from one snapshot (on PostgreSQL, REPEATABLE READ),
so the balance shown is the one the newest entry shown left.

"Newest first" means in the order the account's entries were applied, newest first: descending
``seq``, each entry's position in its account's chain. Ids are not that order: a batch inserts
its records in key order (so concurrent batches never deadlock), not in the order it applied
them. Entries recorded before positions existed (``seq`` NULL) are older than every numbered
one; among themselves they are all consumptions, so ascending ``balance_after`` is their order.
Each part is read from an index of its own, newest first, so a page is an index range whatever
the account's size or the page's depth.

Holds are shown as they stand now, by the database's clock: an open hold past its expiry is
"expired" and its energy counts as energy, not held, even before a writer releases it (one
more probe of the open-holds index, see ``energy.application.accounts``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce, Now

from energy.application.accounts import balances_now
from energy.application.consume import APPLIED, ConsumeResult, earlier_record
from energy.application.entries import EntryResult, result_of
from energy.db.guard import database_guard
from energy.domain.decision import CAPTURE, CONSUME, Record
from energy.domain.exceptions import AccountNotFound, InvalidRequest, KeyNotFound
from energy.domain.holds import EXPIRED, OPEN
from energy.domain.requests import check_page_limit
from energy.models import Account, Entry

DEFAULT_HISTORY_LIMIT = 20
# An entry of the history as stored: its Record's fields (a hold's state as it stands now),
# the key it is answered under (a reversal, a capture or a void has its target's; the reversal
# of a capture, the capture's hold's), its target's amount (what a capture did not spend of
# its hold went back), and its client's name.
_HISTORY_COLUMNS = ("id", "account_id", "amount", "idempotency_key", "balance_after", "created_at", "kind",
                    "held_after", "expires_at", "state_now", "target_key", "target__amount", "client__name")
# A hold past its expiry is expired from that moment, released or not.
_STATE_NOW = Case(When(state=OPEN, expires_at__lte=Now(), then=Value(EXPIRED)), default=F("state"))


@dataclass(frozen=True)
class HistoryEntry:
    """One applied entry of any kind and the client whose key it was."""

    result: ConsumeResult | EntryResult
    client: str

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "kind": self.result.kind, "client": self.client}


@dataclass(frozen=True)
class History:
    account_id: int
    energy: int
    entries: list[HistoryEntry]
    # True when older entries exist past the last one (ask again with before=its id).
    more: bool
    held: int = 0

    def to_dict(self) -> dict:
        """``entries`` holds every kind; ``consumptions``, the key from before there were kinds, the page's consumes."""
        entries = [entry.to_dict() for entry in self.entries]
        return {"account_id": self.account_id, "energy": self.energy, "held": self.held, "entries": entries,
                "consumptions": [entry for entry in entries if entry["kind"] == CONSUME]}


def get_record(*, client_id: int, idempotency_key: str) -> ConsumeResult | EntryResult:
    """The entry recorded under ``idempotency_key`` in ``client_id``'s key space, as it was first answered.

    A key names the consume, credit or hold sent with it; a reversal, a capture or a void,
    which has no key of its own, is not what its key names. A hold answers as it first did
    ("state": "open").
    """
    with database_guard(), _read_only():
        record = earlier_record(client_id, idempotency_key)
    if record is None:
        raise KeyNotFound(idempotency_key)
    return result_of(APPLIED, record)


def account_history(
    *, account_id: int, limit: int = DEFAULT_HISTORY_LIMIT, before: int | None = None, client_id: int | None = None
) -> History:
    """Up to ``limit`` of the account's entries, newest first, older than entry ``before``.

    With ``client_id``, only that client's: a client of the API reads its own results and
    never another client's keys, even on an account they share.
    """
    check_page_limit(limit)
    with database_guard(), _read_only():
        balances = balances_now(Account.objects.filter(pk=account_id)).first()
        if balances is None:
            raise AccountNotFound(account_id)
        rows = _newest_first(account_id, before, client_id, limit + 1)
    entries = [_history_entry(row) for row in rows]
    energy, held = balances
    return History(account_id, energy, entries[:limit], more=len(entries) > limit, held=held)


def _history_entry(row: tuple) -> HistoryEntry:
    *fields, target_key, target_amount, client = row
    record = Record(*fields)
    if target_key is not None:
        record = record._replace(idempotency_key=target_key)
    released = target_amount - record.amount if record.kind == CAPTURE else None
    return HistoryEntry(result_of(APPLIED, record, released=released, state=record.state), client)


def _newest_first(account_id: int, before: int | None, client_id: int | None, count: int) -> list[tuple]:
    """Up to ``count`` entries: the numbered ones by descending seq, then the unnumbered by ascending balance_after."""
    entries = Entry.objects.filter(account_id=account_id).annotate(
        state_now=_STATE_NOW, target_key=Coalesce("target__idempotency_key", "target__target__idempotency_key"))
    if client_id is not None:
        entries = entries.filter(client_id=client_id)
    numbered, unnumbered = entries.filter(seq__isnull=False), entries.filter(seq__isnull=True)
    if before is not None:
        position = entries.filter(pk=before).values_list("seq", "balance_after").first()
        if position is None:
            raise InvalidRequest({"before": f"account {account_id} has no entry {before}"})
        seq, after = position
        if seq is not None:
            numbered = numbered.filter(seq__lt=seq)
        else:
            numbered = numbered.none()
            # Older than ``before``: a higher balance_after, or the same one with a lower id.
            unnumbered = unnumbered.filter(balance_after__gte=after).exclude(balance_after=after, id__gte=before)
    rows = list(numbered.order_by("-seq").values_list(*_HISTORY_COLUMNS)[:count])
    if len(rows) < count:
        rows += unnumbered.order_by("balance_after", "-id").values_list(*_HISTORY_COLUMNS)[:count - len(rows)]
    return rows


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
