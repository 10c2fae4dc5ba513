"""Persistence only: tables and the constraints the database enforces on its own."""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

# The constraint a replay is recognised by: only a violation of *this* constraint means
# "this key was already applied"; any other integrity error is a real failure.
IDEMPOTENCY_KEY_CONSTRAINT = "energy_consumption_key_unique"


class Account(models.Model):
    id = models.BigAutoField(primary_key=True)
    energy = models.BigIntegerField()

    class Meta:
        constraints = [
            # Last line of defence: even a buggy writer cannot overdraw an account.
            models.CheckConstraint(condition=Q(energy__gte=0), name="energy_account_energy_not_negative"),
        ]


class Consumption(models.Model):
    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="consumptions")
    amount = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=255)
    # The balance right after this consumption: stored so a replay answers with the
    # original result instead of recomputing it from a balance that has moved on.
    balance_after = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name=IDEMPOTENCY_KEY_CONSTRAINT),
            models.CheckConstraint(condition=Q(amount__gt=0), name="energy_consumption_amount_positive"),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="energy_consumption_balance_after_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(idempotency_key=""), name="energy_consumption_key_not_empty"
            ),
        ]
