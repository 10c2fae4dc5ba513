"""The audit after a run: the database and every client's log against the contract's guarantees."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from energyctl.torture.history import History

# The audit of a run's database is a few thousand rows; generous for a busy machine.
AUDIT_TIMEOUT_S = 120

# Entry rows as read by TortureDatabase.snapshot(); TARGET_KEY is the key a reversal, a capture or
# a void is answered under (its consumption's or its hold's), STATE a hold's.
ID, ACCOUNT, AMOUNT, KEY, BALANCE_AFTER, KIND, TARGET_KEY, STATE = range(8)
# A hold that was resolved, by the kind of entry that resolved it.
RESOLVED_STATE = {"capture": "captured", "void": "voided"}
# Outcomes that answer with an entry: the one recorded.
ANSWERED_WITH_ENTRY = ("applied", "replayed", "answer_dropped")
# Refusals a request with a valid key may get; a refused request records nothing.
REFUSALS = ("insufficient_energy", "account_not_found")


def violations(history: History, records: list[tuple]) -> list[str]:
    """What the clients were told against what the database holds (the ledger itself: ``ledger_violations``)."""
    found: list[str] = []
    found += _answers(history, records)
    found += _resolutions(history, records)
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
    by_key = {record[KEY]: record for record in records if record[KEY] is not None}
    reversal_of = {record[TARGET_KEY]: record for record in records if record[KIND] == "reversal"}
    for key in by_key.keys() - history.keys.keys():
        found.append(f"key {key} is recorded but no client ever sent it")
    for key in reversal_of.keys() - history.reversals.keys():
        found.append(f"consumption {key} is reversed but no client ever asked to reverse it")
    for key, entry in history.keys.items():
        record = by_key.get(key)
        if record is not None and (record[KIND], record[ACCOUNT], record[AMOUNT]) != (
                entry.kind, entry.account, entry.amount):
            found.append(f"key {key} is recorded as {record[KIND]} for account {record[ACCOUNT]} amount "
                         f"{record[AMOUNT]}, sent as {entry.kind} for account {entry.account} amount {entry.amount}")
        found += _each_answer(f"key {key}", entry, record, refusals=REFUSALS)
    for key, entry in history.reversals.items():
        consumption = by_key.get(key)
        captured = consumption is not None and consumption[KIND] == "hold" and consumption[STATE] == "captured"
        if consumption is None or (consumption[KIND] != "consume" and not captured):
            found.append(f"reverse of key {key} was sent, but no consumption or captured hold is recorded under it")
        # Clients reverse only consumptions they had applied: nothing may refuse it.
        found += _each_answer(f"reverse of key {key}", entry, reversal_of.get(key), refusals=())
    return found


def _resolutions(history: History, records) -> list[str]:
    """Each capture and void sent against its hold's fate: one resolution, of the kind and amount asked.

    A client sends one resolution per hold, so the only refusal it may get is ``invalid_state``,
    and only for a hold that expired first.
    """
    found = []
    holds = {record[KEY]: record for record in records if record[KIND] == "hold"}
    resolution_of = {record[TARGET_KEY]: record for record in records if record[KIND] in RESOLVED_STATE}
    for key in resolution_of.keys() - history.resolutions.keys():
        found.append(f"hold {key} is resolved but no client ever asked to capture or void it")
    for key, record in holds.items():
        resolution = resolution_of.get(key)
        expected = "open or expired" if resolution is None else RESOLVED_STATE[resolution[KIND]]
        if record[STATE] not in expected.split(" or "):
            found.append(f"hold {key} is {record[STATE]}, yet its resolution makes it {expected}")
    for key, entry in history.resolutions.items():
        what, held, resolution = f"{entry.kind} of hold {key}", holds.get(key), resolution_of.get(key)
        if held is None:
            found.append(f"{what} was sent, but no hold is recorded under it")
            continue
        if resolution is not None and (resolution[KIND], resolution[AMOUNT]) != (
                entry.kind, held[AMOUNT] if entry.kind == "void" or entry.amount is None else entry.amount):
            found.append(f"{what} for amount {entry.amount} is recorded as {resolution[KIND]} of {resolution[AMOUNT]}")
        refusals = ("invalid_state",) if held[STATE] == "expired" else ()
        found += _each_answer(what, entry, resolution, refusals=refusals)
    return found


def _each_answer(what: str, entry, record, *, refusals: tuple[str, ...]) -> list[str]:
    """Every answer a request got against the entry it recorded (``record``, or None)."""
    found = []
    for answer in entry.answers:
        outcome = answer["outcome"]
        if outcome == "unavailable":
            continue
        if outcome in ANSWERED_WITH_ENTRY:
            if record is None:
                found.append(f"{what} was answered {outcome} but is not recorded")
            elif (answer["entry_id"], answer["amount"], answer["balance_after"]) != (
                    record[ID], record[AMOUNT], record[BALANCE_AFTER]):
                found.append(f"{what} was answered {answer} but recorded as {record}")
        elif outcome in refusals and record is not None:
            # Clients re-send only requests they had applied, so a refusal of a recorded one
            # means a replay was evaluated afresh instead of answered with the original.
            found.append(f"{what} was refused ({outcome}) yet is recorded")
        elif outcome not in refusals:
            found.append(f"{what}, always sent with the same request, was answered {outcome}")
    applied = [a for a in entry.answers if a["outcome"] in ("applied", "answer_dropped")]
    if len(applied) > 1:
        found.append(f"{what} was answered applied {len(applied)} times")
    return found
