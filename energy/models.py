"""Persistence only: tables and the constraints the database enforces on its own."""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from energy.domain.clients import OPERATOR  # noqa: F401 - defined once, in the domain

# The constraint a replay is recognised by: only a violation of *this* constraint means
# "this client already applied this key"; any other integrity error is a real failure.
IDEMPOTENCY_KEY_CONSTRAINT = "energy_consumption_client_key_unique"
# The built-in client the command line acts as. It has no token, so it can never be used
# over HTTP; its id is fixed because existing consumptions were moved into its key space.
OPERATOR_CLIENT_ID = 1


class Account(models.Model):
    id = models.BigAutoField(primary_key=True)
    energy = models.BigIntegerField()
    # What the account started with: the ledger audit's starting point, since
    # energy = opening_energy - sum(amounts of its consumptions) must always hold.
    opening_energy = models.BigIntegerField()

    class Meta:
        constraints = [
            # Last line of defence: even a buggy writer cannot overdraw an account.
            models.CheckConstraint(condition=Q(energy__gte=0), name="energy_account_energy_not_negative"),
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


class Consumption(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No index of its own: the history index starts with it.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="consumptions", db_index=False)
    # Whose key space the idempotency key belongs to. No index of its own: the UNIQUE
    # (client, key) index starts with it.
    client = models.ForeignKey(Client, on_delete=models.PROTECT, related_name="consumptions", db_index=False)
    amount = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=255)
    # The balance right after this consumption: stored so a replay answers with the
    # original result instead of recomputing it from a balance that has moved on.
    balance_after = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [
            # An account's history, newest first (the order its consumptions were applied):
            # a page is an index range, whatever the account's size or the page's depth.
            models.Index(fields=["account", "balance_after", "-id"], name="energy_consumption_history"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["client", "idempotency_key"], name=IDEMPOTENCY_KEY_CONSTRAINT),
            models.CheckConstraint(condition=Q(amount__gt=0), name="energy_consumption_amount_positive"),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="energy_consumption_balance_after_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(idempotency_key=""), name="energy_consumption_key_not_empty"
            ),
        ]
