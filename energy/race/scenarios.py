"""The scenarios: who runs what, in which order, and what each must show (the hold ones: ``hold_race``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from energy.race import hold_race
from energy.race.audit import DEDUCTIONS_EXCEED_RECORDS, DUPLICATE_KEY, OVERDRAW, RECORDS_EXCEED_DEDUCTIONS, audit
from energy.race.burst import ACCOUNTS, run_burst
from energy.race.context import Demo
from energy.race.report import ScenarioResult, Step
from energy.race.sandbox import PROTECTED_TABLES
from energy.race.stage import Stage
from energy.race.unsafe import INTEGRITY_ERROR

ACCOUNT = 1


@dataclass(frozen=True)
class Unsafe:
    removed: str
    program: str
    # Steps in order, as in an isolation-tester permutation.
    order: tuple[str, ...]
    # Anomaly kinds, any of which shows this scenario's failure.
    shows: frozenset[str]
    # The second request is a retry of the first (same key) rather than a request of its own.
    retry: bool = False
    mismatch_name: str = ""
    # The second process needs room for a second deduction, or the balance check alone would
    # refuse the duplicate and hide what the missing constraint lets through.
    start: Callable[[int, int], int] = lambda balance, amount: balance
    unique_key: bool = True
    # Whether the tables keep CHECK (energy >= 0). Where they do not, the scenario runs a second
    # time on tables that do, to show what that last line of defence alone makes of the race.
    balance_check: bool = True


PROTECTED = "protected"
UNSAFE = {
    "no_select_for_update": Unsafe(
        removed="row lock (select_for_update)",
        program="without_row_lock",
        # T2's last step (commit, or the CHECK's error) follows by itself.
        order=("T1", "T2", "T1", "T2", "T1", "T2"),
        shows=frozenset({OVERDRAW}),
        balance_check=False,
    ),
    "no_unique_key": Unsafe(
        removed="UNIQUE on the idempotency key",
        program="without_unique_key",
        order=("T1", "T2", "T1", "T1", "T2", "T2", "T2"),
        shows=frozenset({DUPLICATE_KEY}),
        retry=True,
        start=lambda balance, amount: 2 * amount,
        unique_key=False,
    ),
    "no_atomic": Unsafe(
        removed="transaction (atomic)",
        program="without_transaction",
        order=("T1", "kill T1", "T2"),
        shows=frozenset({RECORDS_EXCEED_DEDUCTIONS, DEDUCTIONS_EXCEED_RECORDS}),
        retry=True,
        mismatch_name="partial write",
    ),
    "no_f_expression": Unsafe(
        removed="F() update",
        program="with_stale_balance",
        order=("T1", "T2", "T1", "T2", "T1", "T2", "T2"),
        shows=frozenset({RECORDS_EXCEED_DEDUCTIONS}),
        mismatch_name="lost update",
    ),
}


# Suffix of the tables of the second run, which keep CHECK (energy >= 0).
WITH_CHECK = "_check"


def unsafe_tables(name: str) -> list[tuple[str, bool, bool]]:
    """(table prefix, unique key, balance check) of each pair of tables scenario ``name`` needs."""
    spec = UNSAFE[name]
    tables = [(name, spec.unique_key, spec.balance_check)]
    if not spec.balance_check:
        tables.append((name + WITH_CHECK, spec.unique_key, True))
    return tables


def run_scenario(name: str, demo: Demo) -> ScenarioResult:
    if name == PROTECTED:
        return run_protected(demo)
    if name == hold_race.NO_HOLD_LOCK:
        return hold_race.run_no_hold_lock(demo, ACCOUNT)
    return run_unsafe(name, UNSAFE[name], demo)


def run_unsafe(name: str, spec: Unsafe, demo: Demo) -> ScenarioResult:
    demo.progress(f"{name}: two processes without the {spec.removed}")
    start = spec.start(demo.balance, demo.amount)
    stage = Stage()
    stage.note(_opening(start, demo.amount, _keys(spec)))
    if not spec.balance_check:
        stage.note("these tables lack CHECK (energy >= 0) too, so nothing stops the overdraw; "
                   "a second run below keeps the CHECK")
    _race(spec, demo, stage, name, start)
    result = _result(name, spec.removed, start, demo, stage, name, spec.mismatch_name, spec.shows)
    result.balance_check = spec.balance_check
    if not spec.balance_check:
        _again_with_check(name, spec, demo, start, result)
    return result


def _keys(spec: Unsafe) -> tuple[str, str]:
    return ("order-1", "order-1") if spec.retry else ("order-1", "order-2")


def _race(spec: Unsafe, demo: Demo, stage: Stage, tables: str, start: int) -> None:
    demo.schema.seed(tables, {ACCOUNT: start})
    keys = _keys(spec)
    # The process that may be killed is the pool's last, so the others stay warm.
    first, second = (demo.pool[-1], demo.pool[0]) if "kill T1" in spec.order else (demo.pool[0], demo.pool[1])
    for session, worker, key in (("T1", first, keys[0]), ("T2", second, keys[1])):
        stage.add(session, worker, spec.program, tables=tables, account_id=ACCOUNT, amount=demo.amount, key=key)
    stage.play(spec.order)


def _again_with_check(name: str, spec: Unsafe, demo: Demo, start: int, result: ScenarioResult) -> None:
    """The same race on tables that keep CHECK (energy >= 0): the overdraw becomes an error."""
    demo.progress(f"{name}: again, with CHECK (energy >= 0) kept")
    tables = name + WITH_CHECK
    stage = Stage()
    stage.note(f"again from {start}, on tables that keep CHECK (energy >= 0) as the real schema does")
    _race(spec, demo, stage, tables, start)
    final = demo.schema.balance(tables, ACCOUNT)
    recorded = len(demo.schema.records(tables, ACCOUNT))
    outcomes = {session.name: session.result for session in stage.sessions.values()}
    stage.note(f"ends with balance {final} and {recorded} record(s)")
    result.timeline += stage.timeline
    result.with_balance_check = {"final_balance": final, "consumptions_recorded": recorded, "outcomes": outcomes}
    refused = outcomes["T2"] == INTEGRITY_ERROR
    if refused:
        result.anomalies.append(
            f"with CHECK (energy >= 0) kept: no overdraw (balance {final}), but T2 gets an integrity error "
            "from the CHECK instead of insufficient_energy: the last line of defence refuses, it does not answer")
    else:
        result.anomalies.append(f"with CHECK (energy >= 0) kept: T2 was answered {outcomes['T2']}, "
                                "not the integrity error this run exists to show")
    result.failure_shown = result.failure_shown and refused


def run_protected(demo: Demo) -> ScenarioResult:
    demo.progress("protected: two processes through the real use case")
    demo.schema.seed(PROTECTED_TABLES, {ACCOUNT: demo.balance, hold_race.PROTECTED_ACCOUNT: demo.balance,
                                        **{a: demo.balance for a in ACCOUNTS}})
    stage = Stage()
    stage.note(_opening(demo.balance, demo.amount, ("order-1", "order-2")))
    for session, worker, key in (("T1", demo.pool[0], "order-1"), ("T2", demo.pool[1], "order-2")):
        stage.add(session, worker, "consume_held_open", account_id=ACCOUNT, amount=demo.amount, key=key)
    stage.play(("T1", "T2", "T1", "T2", "T2"))
    result = _result(PROTECTED, "none", demo.balance, demo, stage, PROTECTED_TABLES, "", frozenset())
    t2 = stage.sessions["T2"]
    if t2.blocked_by != ["T1"]:
        result.anomalies.append("T2 did not wait for T1's row lock")
    if t2.result != "insufficient_energy":
        result.anomalies.append(f"T2 was answered {t2.result}, not insufficient_energy")
    hold_race.run_protected(demo, result)
    demo.progress(f"protected: a burst of {len(demo.pool)} processes with duplicate keys")
    summary, burst_anomalies = run_burst(demo.pool, demo.schema, demo.balance)
    result.timeline.append(Step("", summary))
    result.anomalies += burst_anomalies
    return result


def _opening(start: int, amount: int, keys: tuple[str, str]) -> str:
    if keys[0] == keys[1]:
        return f"account {ACCOUNT} starts with {start}; T1 consumes {amount} with key {keys[0]}, T2 retries it"
    return f"account {ACCOUNT} starts with {start}; T1 and T2 each consume {amount} (keys {keys[0]}, {keys[1]})"


def _result(name, removed, start, demo, stage, tables, mismatch_name, shows) -> ScenarioResult:
    final = demo.schema.balance(tables, ACCOUNT)
    records = [(key, amount) for _, _, key, amount, _ in demo.schema.records(tables, ACCOUNT)]
    findings = audit(start, final, records, mismatch_name=mismatch_name)
    stage.note(f"ends with balance {final} and {len(records)} record(s) totalling {sum(a for _, a in records)}")
    return ScenarioResult(
        name=name,
        protection_removed=removed,
        expected_balance=start - demo.amount,
        final_balance=final,
        consumptions_recorded=len(records),
        anomalies=[finding.message for finding in findings],
        timeline=stage.timeline,
        failure_shown=any(finding.kind in shows for finding in findings),
    )
