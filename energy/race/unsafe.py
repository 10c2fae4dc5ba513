"""The consume use case with one protection taken out: for the race demo only, never for real.

Each variant runs in a demo process against the demo tables its scenario made for it (found
through the process's ``search_path``), reports each statement with ``say`` and stops at
``pause`` where the coordinator lines it up against another process. Raw SQL keeps every
statement visible; the comments name the ORM call each one stands for.
"""

from __future__ import annotations

from django.db import IntegrityError, connection, transaction

# What a caller is answered when the database's CHECK refuses a write: an error, not an outcome.
INTEGRITY_ERROR = "integrity_error"


def without_row_lock(demo, tables: str, account_id: int, amount: int, key: str) -> str:
    """No select_for_update(): two processes can both read the balance before either deducts.

    Where the tables keep CHECK (energy >= 0), the deduction that would overdraw fails it: the
    caller gets an integrity error (``integrity_error``), not a clean ``insufficient_energy``.
    """
    t = _Tables(tables)
    try:
        with transaction.atomic():
            balance = t.read(account_id, lock=False)
            demo.say(f"reads {balance} (no FOR UPDATE, so no lock)")
            demo.pause()
            if balance < amount:
                demo.say(f"refuses: {balance} < {amount}")
                return "insufficient_energy"
            t.record(account_id, amount, key, balance - amount)
            demo.say(f"checks {balance} >= {amount}, records {amount} for key {key}")
            after = t.deduct(account_id, amount)
            demo.say(f"deducts in SQL (energy = energy - {amount}): balance {after}")
            demo.pause()
    except IntegrityError:
        demo.say(f"deducts {amount}: CHECK (energy >= 0) refuses it with an IntegrityError; "
                 "the transaction rolls back, its record with it")
        return INTEGRITY_ERROR
    demo.say("commits")
    return "applied"


def without_unique_key(demo, tables: str, account_id: int, amount: int, key: str) -> str:
    """No UNIQUE on the key: the insert that should refuse a second use of the key succeeds."""
    t = _Tables(tables)
    with transaction.atomic():
        balance = t.read(account_id, lock=True)
        demo.say(f"locks the row, reads {balance}")
        demo.pause()
        if balance < amount:
            demo.say(f"refuses: {balance} < {amount}")
            return "insufficient_energy"
        t.record(account_id, amount, key, balance - amount)
        after = t.deduct(account_id, amount)
        demo.say(f"records key {key} (nothing refuses a used key), deducts {amount}: balance {after}")
        demo.pause()
    demo.say("commits")
    return "applied"


def without_transaction(demo, tables: str, account_id: int, amount: int, key: str) -> str:
    """No transaction.atomic(): each statement commits on its own, so a crash can split the writes."""
    t = _Tables(tables)
    balance = t.read(account_id, lock=True)
    demo.say(f"reads {balance} (FOR UPDATE, but autocommit drops the lock at once)")
    if balance < amount:
        demo.say(f"refuses: {balance} < {amount}")
        return "insufficient_energy"
    try:
        t.record(account_id, amount, key, balance - amount)
    except IntegrityError:
        earlier_amount, earlier_after = t.earlier(key)
        demo.say(
            f"records key {key}: UNIQUE refuses, so it answers replayed "
            f"(balance_after {earlier_after}) and deducts nothing"
        )
        return "replayed"
    demo.say(f"records {amount} for key {key}, committed on its own")
    demo.pause()
    after = t.deduct(account_id, amount)
    demo.say(f"deducts {amount}: balance {after}, committed on its own")
    return "applied"


def with_stale_balance(demo, tables: str, account_id: int, amount: int, key: str) -> str:
    """No F(): the new balance is computed in Python from a value read before the write."""
    t = _Tables(tables)
    # Account.objects.get(pk=…): the instance keeps this value for as long as it lives.
    balance = t.read(account_id, lock=False)
    demo.say(f"reads {balance} into a Python object")
    demo.pause()
    with transaction.atomic():
        t.read(account_id, lock=True)
        demo.say(f"locks the row, but keeps the {balance} it read before")
        if balance < amount:
            demo.say(f"refuses: {balance} < {amount}")
            return "insufficient_energy"
        t.record(account_id, amount, key, balance - amount)
        # account.energy -= amount; account.save()
        t.overwrite(account_id, balance - amount)
        demo.say(f"records {amount}, saves balance {balance - amount} ({balance} - {amount} computed in Python)")
        demo.pause()
    demo.say("commits")
    return "applied"


def resolve_without_hold_lock(demo, tables: str, key: str, resolution: str) -> str:
    """Capture or void (``resolution``) the hold under ``key``, its state checked without a lock.

    The real use cases lock the account's row before they read the hold, so a capture and a void
    of one hold queue and the second sees the first's resolution. Here both read "open".
    """
    account, entries = (connection.ops.quote_name(f"{tables}_{kind}") for kind in ("account", "consumption"))
    done = {"capture": "captured", "void": "voided"}[resolution]
    with transaction.atomic(), connection.cursor() as cursor:
        # Entry.objects.get(kind="hold", key=…): no select_for_update(), on the hold or its account.
        cursor.execute(f"SELECT id, account_id, amount, state FROM {entries} "  # noqa: S608 - quoted table name
                       "WHERE idempotency_key = %s AND kind = 'hold'", [key])
        hold_id, account_id, amount, state = cursor.fetchone()
        demo.say(f"{resolution}: reads hold {key}: {state} (no lock on the hold or its account)")
        demo.pause()
        if state != "open":
            demo.say(f"refuses: the hold is {state}")
            return "invalid_state"
        cursor.execute(f"INSERT INTO {entries} (account_id, kind, amount, target_id) "  # noqa: S608 - quoted table name
                       "VALUES (%s, %s, %s, %s)", [account_id, resolution, amount, hold_id])
        # A capture spends what was held; a void gives it back to energy.
        back = amount if resolution == "void" else 0
        cursor.execute(f"UPDATE {account} SET held = held - %s, energy = energy + %s WHERE id = %s "  # noqa: S608
                       "RETURNING energy, held", [amount, back, account_id])
        energy, held = cursor.fetchone()
        cursor.execute(f"UPDATE {entries} SET state = %s WHERE id = %s", [done, hold_id])  # noqa: S608
        what = f"spends the {amount} held" if resolution == "capture" else f"gives the {amount} back"
        demo.say(f"records a {resolution} of {key}, {what}, marks it {done}: energy {energy}, held {held}")
        demo.pause()
    demo.say("commits")
    return "applied"


class _Tables:
    """The SQL of one scenario's demo tables: ``<prefix>_account`` and ``<prefix>_consumption``."""

    def __init__(self, prefix: str):
        self.account = connection.ops.quote_name(f"{prefix}_account")
        self.consumption = connection.ops.quote_name(f"{prefix}_consumption")

    def read(self, account_id: int, *, lock: bool) -> int:
        # Account.objects[.select_for_update()].values_list("energy", flat=True).get(pk=…)
        lock_clause = " FOR UPDATE" if lock else ""
        return self._one(f"SELECT energy FROM {self.account} WHERE id = %s{lock_clause}", [account_id])  # noqa: S608 - quoted table name

    def record(self, account_id: int, amount: int, key: str, balance_after: int) -> None:
        # Consumption.objects.create(…)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {self.consumption} (account_id, amount, idempotency_key, balance_after) "  # noqa: S608 - quoted table name
                "VALUES (%s, %s, %s, %s)",
                [account_id, amount, key, balance_after],
            )

    def deduct(self, account_id: int, amount: int) -> int:
        # Account.objects.filter(pk=…).update(energy=F("energy") - amount)
        return self._one(
            f"UPDATE {self.account} SET energy = energy - %s WHERE id = %s RETURNING energy", [amount, account_id]  # noqa: S608 - quoted table name
        )

    def overwrite(self, account_id: int, balance: int) -> int:
        return self._one(f"UPDATE {self.account} SET energy = %s WHERE id = %s RETURNING energy", [balance, account_id])  # noqa: S608 - quoted table name

    def earlier(self, key: str) -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT amount, balance_after FROM {self.consumption} WHERE idempotency_key = %s", [key]  # noqa: S608 - quoted table name
            )
            return cursor.fetchone()

    def _one(self, sql: str, params: list) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]
