"""What can go wrong when an account's ledger is asked to change, in business words.

Each error carries an ``outcome``: the contract's name for it. Adapters map outcomes to HTTP
statuses and exit codes; nothing here knows of either.
"""

from __future__ import annotations


class EnergyError(Exception):
    """Base of every business failure of a request."""

    outcome = "error"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(EnergyError):
    """The request breaks an input rule; ``fields`` names each offending field."""

    outcome = "invalid_request"

    def __init__(self, fields: dict[str, str]):
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))
        self.fields = fields


class AccountNotFound(EnergyError):
    """No account has this id."""

    outcome = "account_not_found"

    def __init__(self, account_id: int):
        super().__init__(f"Account {account_id} does not exist.")
        self.account_id = account_id


class InsufficientEnergy(EnergyError):
    """The balance is lower than the amount asked for."""

    outcome = "insufficient_energy"

    def __init__(self, account_id: int, balance: int, amount: int):
        super().__init__(f"Account {account_id} has {balance} energy; {amount} was requested.")
        self.account_id, self.balance, self.amount = account_id, balance, amount


class IdempotencyKeyMismatch(EnergyError):
    """The key was already used for another kind of request, account or amount."""

    outcome = "idempotency_key_mismatch"

    def __init__(self, key: str):
        super().__init__(
            "This idempotency key was already used with a different kind, account or amount; "
            "use a new key for a new request."
        )
        self.key = key


class ClientNotFound(EnergyError):
    """No client has this name."""

    outcome = "client_not_found"

    def __init__(self, name: str):
        super().__init__(f"No client is named {name!r}.")
        self.name = name


class ClientNameTaken(InvalidRequest):
    """Another client already has this name."""

    def __init__(self, name: str):
        super().__init__({"name": f"{name!r} is already taken"})
        self.name = name


class NotAClientOfTheApi(InvalidRequest):
    """The operator is the command line itself: it has no token to rotate or revoke."""

    def __init__(self, name: str):
        super().__init__({"name": f"{name!r} is the command line's own client and has no token"})
        self.name = name


class KeyNotFound(EnergyError):
    """No entry is recorded under this key in the client's key space."""

    outcome = "key_not_found"

    def __init__(self, key: str):
        super().__init__(f"Nothing is recorded under the key {key!r}.")
        self.key = key


class InvalidState(EnergyError):
    """The entry a request names is not in a state that allows it (e.g. reversing a credit, capturing a voided hold)."""

    outcome = "invalid_state"

    def __init__(self, key: str, names: str, allowed: str):
        super().__init__(f"The key {key!r} names {names}; {allowed}.")
        self.key, self.names = key, names


class OutOfRange(InvalidRequest):
    """The entry would take the account's energy + held past the signed 64-bit range its columns hold."""

    def __init__(self, account_id: int, energy: int, amount: int):
        super().__init__({"amount": f"would take account {account_id}'s energy + held ({energy}) past the "
                                    "largest amount an account can hold (2**63 - 1)"})
        self.account_id, self.energy, self.amount = account_id, energy, amount


class Unavailable(EnergyError):
    """The database could not answer in time; retrying with the same key is safe."""

    outcome = "unavailable"

    def __init__(self, reason: str):
        super().__init__(f"The database is unavailable ({reason}); retry with the same idempotency key.")
        self.reason = reason


def error_document(error: str, detail: str, fields: dict | None = None) -> dict:
    """The contract's error body, the same for the HTTP API and the CLI's ``--json``."""
    document = {"status": "error", "error": error, "detail": detail}
    if fields is not None:
        document["fields"] = fields
    return document


def describe(exc: EnergyError) -> dict:
    """The error body of a failed outcome."""
    return error_document(exc.outcome, exc.detail, exc.fields if isinstance(exc, InvalidRequest) else None)
