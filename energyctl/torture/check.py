"""The audit after a run: the database and every client's log against the contract's guarantees."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from energyctl.torture.history import History

# The audit of a run's database is a few thousand rows; generous for a busy machine.
AUDIT_TIMEOUT_S = 120

# Consumption rows as read by TortureDatabase.snapshot().
ID, ACCOUNT, AMOUNT, KEY, BALANCE_AFTER = range(5)


def violations(history: History, records: list[tuple]) -> list[str]:
    """What the clients were told against what the database holds (the ledger itself: ``ledger_violations``)."""
    found: list[str] = []
    found += _answers(history, records)
    found += [f"client crashed on an unexpected error: {error}" for error in history.crashes]
    found += [f"key {key} was sent with two different requests" for key in history.conflicting_sends]
    return found


def ledger_violations(database_url: str) -> list[str]:
    """The ledger audit of ``energyctl audit``, run on the run's database: one definition of consistent."""
    env = {**os.environ, "DATABASE_URL": database_url, "ENERGYCTL_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "energyctl", "audit", "--json"], env=env, capture_output=True,
                          text=True, timeout=AUDIT_TIMEOUT_S)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"the ledger audit failed (exit {done.returncode}): {done.stdout}{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return [f"ledger audit, account {v['account_id']}: {v['problem']}" for v in report["violations"]]


def _answers(history: History, records) -> list[str]:
    found = []
    by_key = {record[KEY]: record for record in records}
    for key in by_key.keys() - history.keys.keys():
        found.append(f"key {key} is recorded but no client ever sent it")
    for key, entry in history.keys.items():
        record = by_key.get(key)
        if record is not None and (record[ACCOUNT], record[AMOUNT]) != (entry.account, entry.amount):
            found.append(f"key {key} is recorded for account {record[ACCOUNT]} amount {record[AMOUNT]}, "
                         f"sent for account {entry.account} amount {entry.amount}")
        for answer in entry.answers:
            outcome = answer["outcome"]
            if outcome == "unavailable":
                continue
            if outcome in ("applied", "replayed", "answer_dropped"):
                if record is None:
                    found.append(f"key {key} was answered {outcome} but is not recorded")
                elif (answer["consumption_id"], answer["amount"], answer["balance_after"]) != (
                        record[ID], record[AMOUNT], record[BALANCE_AFTER]):
                    found.append(f"key {key} was answered {answer} but recorded as {record}")
            elif outcome in ("insufficient_energy", "account_not_found") and record is not None:
                # Clients re-send only keys they had applied, so a refusal of a recorded key
                # means a replay was evaluated afresh instead of answered with the original.
                found.append(f"key {key} was refused ({outcome}) yet is recorded")
            elif outcome not in ("insufficient_energy", "account_not_found"):
                found.append(f"key {key}, always sent with the same request, was answered {outcome}")
        applied = [a for a in entry.answers if a["outcome"] in ("applied", "answer_dropped")]
        if len(applied) > 1:
            found.append(f"key {key} was answered applied {len(applied)} times")
    return found
