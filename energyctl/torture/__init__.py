"""A fault-injection run in the style of a bank test: load, faults, then a full audit.

Client processes send random consumes, credits, reverses and holds (captured, voided or left to
expire) and retry with the same key after ``unavailable`` or a lost answer, while clients are
SIGKILLed, server backends terminated, the server crashed and restarted, and row locks held past
``lock_timeout``. Each client logs what it sent and what it was answered; afterwards the logs and
the database are checked against the contract's guarantees. Only the controller touches the
cluster directly; all Django work happens in child processes.
"""

from energyctl.torture.config import TortureConfig

__all__ = ["Report", "TortureConfig", "run_torture"]


def __getattr__(name: str):
    # The run (and the cluster code it imports) loads only when used: `energyctl --help`
    # imports this package for TortureConfig's defaults and should not pay for the rest.
    if name in ("Report", "run_torture"):
        from energyctl.torture import run

        return getattr(run, name)
    raise AttributeError(name)
