"""One open hold, a capture and a void racing to resolve it: without the lock, and through the real use cases.

T1 captures, T2 voids, lined up so that both have read the hold before either writes. The
real use cases lock the account's row before they read the hold, so T2 queues behind T1 and
then finds the hold captured (invalid_state). Without that lock both find it open and both
resolve it: the energy is spent and given back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from energy.race.audit import DOUBLE_RESOLUTION, audit_holds
from energy.race.errors import DemoFailed
from energy.race.report import ScenarioResult
from energy.race.sandbox import PROTECTED_TABLES
from energy.race.stage import Stage

if TYPE_CHECKING:
    from energy.race.context import Demo

NO_HOLD_LOCK = "no_hold_lock"
REMOVED = "the hold's row lock (its state read unlocked)"
KEY = "hold-1"
# The protected race's account in the copy of the real tables: apart from the consume race's and the burst's.
PROTECTED_ACCOUNT = 5
TIMEOUT_S = 30.0



def run_no_hold_lock(demo: Demo, account_id: int) -> ScenarioResult:
    demo.progress(f"{NO_HOLD_LOCK}: a capture and a void of one hold, without the lock")
    start = demo.balance
    demo.schema.seed_hold(NO_HOLD_LOCK, account_id, start, demo.amount, KEY)
    stage = Stage()
    stage.note(_opening(account_id, start, demo.amount, "a hold of"))
    stage.note("these tables lack the one-resolution UNIQUE index and CHECK (held >= 0) too: "
               "the real schema's last lines of defence would refuse the second resolution with an error")
    for session, worker, resolution in (("T1", demo.pool[0], "capture"), ("T2", demo.pool[1], "void")):
        stage.add(session, worker, "resolve_without_hold_lock", tables=NO_HOLD_LOCK, key=KEY, resolution=resolution)
    # Both read "open"; T1 writes, T2 waits for T1's account row, then writes over T1's resolution.
    stage.play(("T1", "T2", "T1", "T2", "T1", "T2", "T2"))
    energy, held, opening = demo.schema.holds_account(NO_HOLD_LOCK, account_id)
    entries = demo.schema.hold_entries(NO_HOLD_LOCK, account_id)
    findings = audit_holds(opening, energy, held, entries)
    stage.note(_ending(energy, held, entries))
    return ScenarioResult(
        name=NO_HOLD_LOCK,
        protection_removed=REMOVED,
        expected_balance=start - demo.amount,
        final_balance=energy,
        consumptions_recorded=_captures(entries),
        anomalies=[finding.message for finding in findings],
        timeline=stage.timeline,
        failure_shown=any(finding.kind == DOUBLE_RESOLUTION for finding in findings),
    )


def run_protected(demo: Demo, result: ScenarioResult) -> None:
    """The same race through the real hold, capture and void, on the copy of the real tables.

    What it shows goes into the protected scenario's timeline; what goes wrong, into its anomalies.
    """
    demo.progress("protected: a capture and a void of one hold through the real use cases")
    start, amount, account_id = demo.balance, demo.amount, PROTECTED_ACCOUNT
    _hold(demo, account_id, amount)
    stage = Stage()
    stage.note(_opening(account_id, start, amount, "hold() holds"))
    for session, worker, resolution in (("T1", demo.pool[0], "capture"), ("T2", demo.pool[1], "void")):
        stage.add(session, worker, "resolve_held_open", key=KEY, resolution=resolution)
    stage.play(("T1", "T2", "T1", "T2", "T2"))
    energy, held, opening = demo.schema.holds_account(PROTECTED_TABLES, account_id)
    entries = demo.schema.hold_entries(PROTECTED_TABLES, account_id)
    stage.note(_ending(energy, held, entries))
    result.timeline += stage.timeline
    anomalies = [f"holds: {finding.message}" for finding in audit_holds(opening, energy, held, entries)]
    t1, t2 = stage.sessions["T1"], stage.sessions["T2"]
    if t2.blocked_by != ["T1"]:
        anomalies.append("holds: the void did not wait for the capture's lock")
    if (t1.result, t2.result) != ("applied", "invalid_state"):
        anomalies.append(f"holds: the capture was answered {t1.result} and the void {t2.result}, "
                         "not applied and invalid_state")
    if (energy, held) != (start - amount, 0):
        anomalies.append(f"holds: the account ends with energy {energy} and held {held}, "
                         f"not {start - amount} and 0")
    result.anomalies += anomalies


def _hold(demo: Demo, account_id: int, amount: int) -> None:
    worker = demo.pool[0]
    worker.send("run", "hold", {"account_id": account_id, "amount": amount, "key": KEY})
    kind, payload = worker.receive(time.monotonic() + TIMEOUT_S)
    if (kind, payload) != ("done", "applied"):
        raise DemoFailed(f"the protected hold could not be placed: {payload}")


def _opening(account_id: int, start: int, amount: int, held_by: str) -> str:
    return (f"account {account_id} starts with {start}; {held_by} {amount} under key {KEY} "
            f"leaves energy {start - amount}, held {amount}; T1 captures it, T2 voids it")


def _ending(energy: int, held: int, entries: list[tuple]) -> str:
    resolutions = [kind for _, kind, *_ in entries if kind in ("capture", "void")]
    return (f"ends with energy {energy}, held {held}, and {len(resolutions)} resolution(s) of the hold"
            f"{': ' + ', '.join(resolutions) if resolutions else ''}")


def _captures(entries: list[tuple]) -> int:
    return sum(1 for _, kind, *_ in entries if kind == "capture")
