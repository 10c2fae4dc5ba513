"""Persistence only: tables and the constraints the database enforces on its own."""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from energy.domain.clients import OPERATOR  # noqa: F401 - defined once, in the domain

# The constraint a replay is recognised by: only a violation of *this* constraint means
# "this client already applied this key"; any other integrity error is a real failure.
IDEMPOTENCY_KEY_CONSTRAINT = "energy_consumption_client_key_unique"
# "At most one reversal per entry", kept by the database itself: two racing reversals of one
# consumption cannot both be recorded, whatever the code that records them does.
ONE_REVERSAL_CONSTRAINT = "energy_entry_one_reversal_per_target"
# "At most one resolution per hold": a capture or a void names the hold it resolves, and the
# database refuses a second one, whichever kind it is.
ONE_RESOLUTION_CONSTRAINT = "energy_entry_one_resolution_per_hold"
# Kinds of entry, and the kinds whose entry names another one (its ``target``): a reversal
# names what it gives back, a capture or a void the hold it resolves.
KINDS = ("consume", "credit", "reversal", "hold", "capture", "void")
KINDS_WITH_TARGET = ("reversal", "capture", "void")
# What became of a hold. Only ``open`` changes, once, and only under the account's row lock.
HOLD_STATES = ("open", "captured", "voided", "expired")
# The built-in client the command line acts as. It has no token, so it can never be used
# over HTTP; its id is fixed because existing consumptions were moved into its key space.
OPERATOR_CLIENT_ID = 1


class Account(models.Model):
    id = models.BigAutoField(primary_key=True)
    energy = models.BigIntegerField()
    # What the account started with: the ledger audit's starting point, since
    # energy = opening_energy - sum(amounts of its consumptions) must always hold.
    opening_energy = models.BigIntegerField()
    # The position of the account's newest entry in its chain. Raised by the same UPDATE that
    # changes the balance, under the same row lock, and copied into the entry as its ``seq``:
    # the account's entries form one line, in the order they were applied, whatever order
    # their rows were inserted in. Accounts from before it existed start at 0.
    last_seq = models.BigIntegerField(db_default=0)
    # Reserved by open holds: not spendable, not gone. energy + held is what the account owns.
    # Expired holds stay in it until a writer locks the account and releases them; reads
    # count them as energy meanwhile.
    held = models.BigIntegerField(db_default=0)

    class Meta:
        constraints = [
            # Last line of defence: even a buggy writer cannot overdraw an account.
            models.CheckConstraint(condition=Q(energy__gte=0), name="energy_account_energy_not_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="energy_account_held_not_negative"),
            models.CheckConstraint(
                condition=Q(opening_energy__gte=0), name="energy_account_opening_energy_not_negative"
            ),
        ]


class Client(models.Model):
    """A caller of the HTTP API; idempotency keys are scoped to it."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=64, unique=True)
    # SHA-256 (hex) of the one active token; the token itself is never stored. A token
    # carries 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    # NULL for the operator, which has no token and cannot authenticate over HTTP.
    token_hash = models.CharField(max_length=64, unique=True, null=True)  # noqa: DJ001 - unique among real tokens
    # After a rotation with --keep-old-for, the hash of the token just replaced: it keeps
    # working until previous_token_expires_at, as the database's clock tells, and both
    # tokens are found through a unique index. A later rotation or a revocation clears it.
    previous_token_hash = models.CharField(max_length=64, unique=True, null=True)  # noqa: DJ001 - as token_hash
    previous_token_expires_at = models.DateTimeField(null=True)
    scopes = models.JSONField(default=list)
    # Account ids the client may consume from or read; NULL means every account. No
    # foreign key: a client may be allowed an account before the account exists.
    accounts = models.JSONField(null=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())
    last_used_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="energy_client_name_not_empty"),
            # An old token kept without an end would never stop working.
            models.CheckConstraint(
                condition=Q(previous_token_hash__isnull=True) | Q(previous_token_expires_at__isnull=False),
                name="energy_client_previous_token_expires",
            ),
        ]


class Entry(models.Model):
    """One change to an account's balance (a consume, a credit, a reversal, a hold, a capture or a void).

    The table keeps the name it had when it held consumptions only: renaming a large table
    that writers use is not worth a name.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the history indexes start with it.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries", db_index=False)
    # Whose key space the idempotency key belongs to. No index of its own: the UNIQUE
    # (client, key) index starts with it.
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="entries", db_index=False)
    # A database default, so that rows written by code from before kinds existed (during a
    # rolling deploy) are consumes, as they are.
    kind = models.CharField(max_length=16, db_default="consume", choices=[(k, k) for k in KINDS])
    amount = models.BigIntegerField()
    # NULL for a reversal, a capture or a void: each is answered under the key of the entry it
    # names, which already holds that key in the UNIQUE (client, key) space.
    idempotency_key = models.CharField(max_length=255, null=True)  # noqa: DJ001 - NULL is "no key of its own"
    # The entry a reversal gives back, or the hold a capture or a void resolves. No index of its
    # own: the one-reversal and one-resolution UNIQUE indexes find them, and entries are never
    # deleted. DO_NOTHING leaves the reference to the database's foreign key.
    target = models.ForeignKey("self", on_delete=models.DO_NOTHING, null=True, related_name="+", db_index=False)
    # The balance right after this entry: stored so a replay answers with the original result
    # instead of recomputing it from a balance that has moved on.
    balance_after = models.BigIntegerField()
    # Position in the account's chain (see Account.last_seq). NULL for entries recorded
    # before the chain was numbered: they come first, in their balance_after order.
    seq = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(db_default=Now())
    # The account's held right after this entry (0 before holds existed): with balance_after,
    # the total the audit's chain follows, since a hold moves energy without changing it.
    held_after = models.BigIntegerField(db_default=0)
    # A hold's end of life, by the database's clock; NULL for every other kind.
    expires_at = models.DateTimeField(null=True)
    # A hold's resolution (HOLD_STATES); NULL for every other kind. The one column of an entry
    # that ever changes, and only from 'open', under the account's row lock.
    state = models.CharField(max_length=16, null=True, choices=[(s, s) for s in HOLD_STATES])  # noqa: DJ001

    class Meta:
        db_table = "energy_consumption"
        indexes = [
            # The history of entries from before ``seq``, newest first (the order they were
            # applied: each lowered the balance); entries with a seq are never in it.
            models.Index(fields=["account", "balance_after", "-id"], name="energy_entry_early_history",
                         condition=Q(seq__isnull=True)),
            # Open holds by expiry: what a read counts as energy, what a writer releases, what
            # ``holds expire`` finds. Holds leave it when resolved, so it stays small.
            models.Index(fields=["account", "expires_at"], name="energy_entry_open_holds",
                         condition=Q(kind="hold", state="open")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["client", "idempotency_key"], name=IDEMPOTENCY_KEY_CONSTRAINT),
            # One line per account: no two entries at one position. Also the history's index.
            models.UniqueConstraint(fields=["account", "seq"], name="energy_entry_account_seq_unique",
                                    condition=Q(seq__isnull=False)),
            models.UniqueConstraint(fields=["target"], name=ONE_REVERSAL_CONSTRAINT, condition=Q(kind="reversal")),
            models.UniqueConstraint(fields=["target"], name=ONE_RESOLUTION_CONSTRAINT,
                                    condition=Q(kind__in=("capture", "void"))),
            models.CheckConstraint(condition=Q(amount__gt=0), name="energy_consumption_amount_positive"),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="energy_consumption_balance_after_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(idempotency_key=""), name="energy_consumption_key_not_empty"
            ),
            models.CheckConstraint(condition=Q(held_after__gte=0), name="energy_entry_held_after_not_negative"),
            models.CheckConstraint(condition=Q(kind__in=KINDS), name="energy_entry_kind_known"),
            # A key of its own exactly when the entry names no other: consumes, credits and
            # holds have one, a reversal, a capture or a void is answered under its target's.
            models.CheckConstraint(
                condition=(Q(kind__in=KINDS_WITH_TARGET, idempotency_key__isnull=True, target__isnull=False)
                           | (~Q(kind__in=KINDS_WITH_TARGET) & Q(idempotency_key__isnull=False, target__isnull=True))),
                name="energy_entry_key_or_target",
            ),
            # A hold has an expiry and a state; no other kind has either.
            models.CheckConstraint(
                condition=(Q(kind="hold", expires_at__isnull=False, state__isnull=False, state__in=HOLD_STATES)
                           | (~Q(kind="hold") & Q(expires_at__isnull=True, state__isnull=True))),
                name="energy_entry_hold_fields",
            ),
        ]
