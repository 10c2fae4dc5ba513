"""Child processes of a run: ``prepare`` (schema and accounts) and ``client`` (the load).

A client sends consumes, credits, holds, reverses of consumptions and captures it had applied,
and one capture or void of some of its holds (the others, and some short-lived ones it does
resolve, expire first); each is retried with its key until it gets a final answer, and now and
then it sends a finished request again, or runs ``holds expire``.

Run as ``python -m energyctl.torture.worker prepare|client SPEC_JSON`` with ``DATABASE_URL``
in the environment; each sets Django up itself.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

from energyctl.torture.history import (
    ANSWER,
    ANSWER_DROPPED,
    CAPTURE,
    CONSUME,
    CRASH,
    CREDIT,
    EXPIRE,
    HOLD,
    READY,
    REVERSE,
    SEND,
    VOID,
    EventLog,
    read_events,
    unfinished_request,
)

# Pause before retrying after `unavailable`: short, since faults here heal within a second.
RETRY_PAUSE_SECONDS = (0.02, 0.15)


def prepare(spec: dict) -> None:
    from django.core.management import call_command

    from energy.application.accounts import seed_accounts

    call_command("migrate", verbosity=0)
    seed_accounts(count=spec["accounts"], energy=spec["start_energy"])


def client(spec: dict) -> None:
    log = EventLog(Path(spec["log"]))
    pending = unfinished_request(read_events(log.path))
    rng = random.Random(spec["seed"])
    stop = _Stop(Path(spec["stop_file"]), spec["drain_seconds"])
    applied: list[tuple[str, int | None, int | None, str, int | None]] = []
    # Holds this client has sent a capture or a void for: each is resolved one way only.
    resolved: set[str] = set()
    drops = _AnswerDrops(spec["drop_answer_every"])
    log.write(READY, generation=spec["generation"], pid=os.getpid())
    for serial in itertools.count(1):
        if pending is not None:
            request, pending = pending, None
        elif stop.requested():
            break
        elif rng.random() < spec["expire_share"]:
            _expire(log)
            continue
        else:
            key = f"{spec['run']}-c{spec['slot']}-g{spec['generation']}-{serial}"
            request = _next_request(rng, spec, applied, resolved, key)
        if request[0] in (CAPTURE, VOID):
            resolved.add(request[3])
        if _send_until_answered(request, log, rng, stop, drops) == "applied":
            applied.append(request)
    log.close()


class _Stop:
    """The controller's stop file; once seen, the key in hand may be retried for a while longer."""

    def __init__(self, path: Path, drain_seconds: float):
        self.path, self.drain_seconds, self.deadline = path, drain_seconds, None

    def requested(self) -> bool:
        if self.deadline is None and self.path.exists():
            self.deadline = time.monotonic() + self.drain_seconds
        return self.deadline is not None

    def overdue(self) -> bool:
        return self.requested() and time.monotonic() > self.deadline


class _AnswerDrops:
    """Which applied answers to throw away: the first, then every ``every``-th (counted, not drawn)."""

    def __init__(self, every: int):
        self.every, self.applied = every, 0

    def drop_next_applied(self) -> bool:
        self.applied += 1
        return self.every > 0 and self.applied % self.every == 1 % self.every


def _send_until_answered(request, log: EventLog, rng: random.Random, stop: _Stop, drops: _AnswerDrops) -> str | None:
    """Send with the same key until a final answer (returned), or until the drain time runs out (None)."""
    from energy.domain.exceptions import EnergyError, Unavailable

    kind, account, amount, key, expires_in = request
    extra = {} if expires_in is None else {"expires_in": expires_in}
    while True:
        log.write(SEND, kind=kind, key=key, account=account, amount=amount, **extra)
        try:
            result = _send(kind, account, amount, key, expires_in)
        except Unavailable as exc:
            log.write(ANSWER, kind=kind, key=key, outcome=exc.outcome, reason=exc.reason)
            if stop.overdue():
                return None
            time.sleep(rng.uniform(*RETRY_PAUSE_SECONDS))
            continue
        except EnergyError as exc:
            log.write(ANSWER, kind=kind, key=key, outcome=exc.outcome)
            return exc.outcome
        except Exception as exc:
            log.write(CRASH, key=key, error=f"{type(exc).__name__}: {exc}")
            raise
        dropped = result.status == "applied" and drops.drop_next_applied()
        log.write(ANSWER, kind=kind, key=key, outcome=ANSWER_DROPPED if dropped else result.status,
                  entry_id=result.entry_id, account=result.account_id, amount=result.amount,
                  balance_after=result.balance_after)
        if not dropped:
            return result.status


def _expire(log: EventLog) -> None:
    """``holds expire`` once, as cron would: what it released, or why it could not run."""
    from energy.application.holds import expire_holds
    from energy.domain.exceptions import EnergyError

    try:
        log.write(EXPIRE, **expire_holds())
    except EnergyError as exc:
        log.write(EXPIRE, outcome=exc.outcome)


def _send(kind: str, account: int | None, amount: int | None, key: str, expires_in: int | None):
    """One request through its use case, as the operator."""
    if kind == HOLD:
        from energy.application.holds import hold

        return hold(account_id=account, amount=amount, idempotency_key=key, expires_in=expires_in)
    if kind == CAPTURE:
        from energy.application.holds import capture

        return capture(idempotency_key=key, amount=amount)
    if kind == VOID:
        from energy.application.holds import void

        return void(idempotency_key=key)
    if kind == CREDIT:
        from energy.application.entries import credit

        return credit(account_id=account, amount=amount, idempotency_key=key)
    if kind == REVERSE:
        from energy.application.entries import reverse

        return reverse(idempotency_key=key)
    from energy.application.consume import consume

    return consume(account_id=account, amount=amount, idempotency_key=key)


def _next_request(rng: random.Random, spec: dict, applied: list, resolved: set[str],
                  key: str) -> tuple[str, int | None, int | None, str, int | None]:
    roll = rng.random()
    if applied and roll < spec["duplicate_share"]:
        return rng.choice(applied)
    roll = rng.random()
    # A capture is reversed by its hold's key, as a consumption by its own.
    spent = [request[3] for request in applied if request[0] in (CONSUME, CAPTURE)]
    open_holds = [request for request in applied if request[0] == HOLD and request[3] not in resolved]
    shares = [spec["reverse_share"], spec["credit_share"], spec["hold_share"], spec["resolve_share"]]
    if roll < shares[0]:
        if spent:
            return REVERSE, None, None, rng.choice(spent), None
    elif roll < sum(shares[:4]) and roll >= sum(shares[:3]):
        if open_holds:
            return _resolution(rng, rng.choice(open_holds))
    # With nothing to reverse or resolve yet, a client consumes.
    kind = CREDIT if shares[0] <= roll < sum(shares[:2]) else HOLD if sum(shares[:2]) <= roll < sum(
        shares[:3]) else CONSUME
    expires_in = None
    if kind == HOLD:
        # Some holds live a second or two, so that they expire while the run goes on.
        expires_in = rng.randint(1, 2) if rng.random() < spec["short_hold_share"] else 900
    roll = rng.random()
    if roll < spec["missing_share"]:
        account = spec["accounts"] + 1 + rng.randrange(1_000)
    elif roll < spec["missing_share"] + spec["hot_share"]:
        account = rng.randint(1, spec["hot_accounts"])
    else:
        account = rng.randint(spec["hot_accounts"] + 1, spec["accounts"])
    return kind, account, rng.randint(1, spec["max_amount"]), key, expires_in


def _resolution(rng: random.Random, held: tuple) -> tuple[str, None, int | None, str, None]:
    """A capture of all of the hold, a capture of part of it, or a void."""
    amount, key = held[2], held[3]
    roll = rng.random()
    if roll < 0.4:
        return CAPTURE, None, None, key, None
    if roll < 0.7:
        return CAPTURE, None, rng.randint(1, amount), key, None
    return VOID, None, None, key, None


def main(argv: list[str]) -> None:
    role, spec = argv[0], json.loads(argv[1])
    from energy.setup import setup_django

    setup_django()
    {"prepare": prepare, "client": client}[role](spec)


if __name__ == "__main__":
    main(sys.argv[1:])
