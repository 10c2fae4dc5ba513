"""What can go wrong with a consume, in business words."""


class ConsumeError(Exception):
    """A request the use case refused; nothing was written."""


class AccountNotFound(ConsumeError):
    """No account has this id."""


class InsufficientEnergy(ConsumeError):
    """The balance is below the amount asked for."""


class IdempotencyReplay(ConsumeError):
    """This key was applied before; ``record`` is what it recorded."""

    def __init__(self, record):
        super().__init__(record.idempotency_key)
        self.record = record
