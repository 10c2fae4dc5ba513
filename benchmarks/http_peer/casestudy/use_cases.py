"""The consume use case: it owns the transaction and every protection the case study names."""

from django.db import IntegrityError, transaction
from django.db.models import F

from benchmarks.http_peer.casestudy.exceptions import AccountNotFound, IdempotencyReplay, InsufficientEnergy
from benchmarks.http_peer.casestudy.models import Account, EnergyConsumption


def consume_energy(*, account_id: int, amount: int, idempotency_key: str) -> tuple[EnergyConsumption, int]:
    """Record the consumption and deduct it, all or nothing; returns the record and the balance after it."""
    try:
        with transaction.atomic():
            try:
                # The row lock: a concurrent consume of this account waits here until this one commits.
                account = Account.objects.select_for_update().get(pk=account_id)
            except Account.DoesNotExist:
                raise AccountNotFound(account_id) from None
            if account.energy < amount:
                raise InsufficientEnergy(account_id)
            record = EnergyConsumption.objects.create(account=account, amount=amount,
                                                      idempotency_key=idempotency_key)
            # Computed by the database, never written back from the value read above.
            Account.objects.filter(pk=account_id).update(energy=F("energy") - amount)
    except IntegrityError:
        # The UNIQUE key refused the insert and the whole transaction rolled back.
        raise IdempotencyReplay(EnergyConsumption.objects.get(idempotency_key=idempotency_key)) from None
    return record, account.energy - amount
