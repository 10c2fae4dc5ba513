"""Persistence only: an account's balance, and one row per consumption under a UNIQUE key."""

from django.db import models


class Account(models.Model):
    energy = models.BigIntegerField()


class EnergyConsumption(models.Model):
    account = models.ForeignKey(Account, on_delete=models.PROTECT)
    amount = models.BigIntegerField()
    # The database refuses a key twice: a retried request can never deduct again.
    idempotency_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
