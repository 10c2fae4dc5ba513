"""Child processes of a run: ``prepare`` (schema and accounts) and ``client`` (the load).

Run as ``python -m energy.torture.worker prepare|client SPEC_JSON`` with ``DATABASE_URL``
in the environment; each sets Django up itself.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from energy.torture.history import (
    ANSWER,
    ANSWER_DROPPED,
    CRASH,
    READY,
    SEND,
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
    from energy.application.consume import consume
    from energy.domain.exceptions import EnergyError, Unavailable

    log = EventLog(Path(spec["log"]))
    pending = unfinished_request(read_events(log.path))
    rng = random.Random(spec["seed"])
    stop_file = Path(spec["stop_file"])
    applied: list[tuple[int, int, str]] = []
    log.write(READY, generation=spec["generation"], pid=os.getpid())
    serial = 0
    give_up_at = None
    while True:
        if give_up_at is None and stop_file.exists():
            give_up_at = time.monotonic() + spec["drain_seconds"]
        if pending is not None:
            request, pending = pending, None
        elif give_up_at is not None:
            break
        else:
            serial += 1
            request = _next_request(rng, spec, applied, f"{spec['run']}-c{spec['slot']}-g{spec['generation']}-{serial}")
        account, amount, key = request
        while True:
            log.write(SEND, key=key, account=account, amount=amount)
            try:
                result = consume(account_id=account, amount=amount, idempotency_key=key)
            except Unavailable as exc:
                log.write(ANSWER, key=key, outcome=exc.outcome, reason=exc.reason)
                if give_up_at is None and stop_file.exists():
                    give_up_at = time.monotonic() + spec["drain_seconds"]
                if give_up_at is not None and time.monotonic() > give_up_at:
                    break
                time.sleep(rng.uniform(*RETRY_PAUSE_SECONDS))
                continue
            except EnergyError as exc:
                log.write(ANSWER, key=key, outcome=exc.outcome)
                break
            except Exception as exc:
                log.write(CRASH, key=key, error=f"{type(exc).__name__}: {exc}")
                raise
            dropped = result.status == "applied" and rng.random() < spec["drop_answer_share"]
            log.write(ANSWER, key=key, outcome=ANSWER_DROPPED if dropped else result.status,
                      consumption_id=result.consumption_id, account=result.account_id, amount=result.amount,
                      balance_after=result.balance_after)
            if dropped:
                continue
            if result.status == "applied":
                applied.append(request)
            break
    log.close()


def _next_request(rng: random.Random, spec: dict, applied: list, key: str) -> tuple[int, int, str]:
    roll = rng.random()
    if applied and roll < spec["duplicate_share"]:
        return rng.choice(applied)
    roll = rng.random()
    if roll < spec["missing_share"]:
        account = spec["accounts"] + 1 + rng.randrange(1_000)
    elif roll < spec["missing_share"] + spec["hot_share"]:
        account = rng.randint(1, spec["hot_accounts"])
    else:
        account = rng.randint(spec["hot_accounts"] + 1, spec["accounts"])
    return account, rng.randint(1, spec["max_amount"]), key


def main(argv: list[str]) -> None:
    role, spec = argv[0], json.loads(argv[1])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    import django

    django.setup()
    {"prepare": prepare, "client": client}[role](spec)


if __name__ == "__main__":
    main(sys.argv[1:])
