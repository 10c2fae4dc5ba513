"""The protected path under load: many processes, duplicate keys, a few accounts, then an audit."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

from energy.race.audit import audit
from energy.race.errors import DemoFailed
from energy.race.pool import Pool
from energy.race.sandbox import PROTECTED_TABLES, DemoSchema

ACCOUNTS = (2, 3, 4)
REQUESTS_PER_PROCESS = 50
# Each key is sent this many times, shuffled across processes: retries racing each other.
COPIES = 4
# A fixed seed: the same requests on every run, so two runs can be compared.
SEED = 20261125
TIMEOUT_S = 60.0
# Enough of each kind of finding to see what went wrong without drowning the report.
MAX_LISTED = 5


def requests_per_process(processes: int, balance: int) -> list[list[tuple[int, int, str]]]:
    rng = random.Random(SEED)
    # Amounts up to a tenth of the balance: roughly half the keys fit before the accounts run dry.
    largest = max(1, balance // 10)
    distinct = [
        (rng.choice(ACCOUNTS), rng.randint(1, largest), f"burst-{n}")
        for n in range(processes * REQUESTS_PER_PROCESS // COPIES)
    ]
    requests = [request for request in distinct for _ in range(COPIES)]
    rng.shuffle(requests)
    return [requests[p::processes] for p in range(processes)]


def run_burst(pool: Pool, schema: DemoSchema, balance: int) -> tuple[str, list[str]]:
    """Run the burst on the protected tables; a one-line summary and every broken guarantee."""
    plan = requests_per_process(len(pool), balance)
    workers = [pool[p] for p in range(len(pool))]
    for worker, requests in zip(workers, plan, strict=True):
        worker.send("run", "burst", {"requests": requests})
    deadline = time.monotonic() + TIMEOUT_S
    outcomes = []
    for worker in workers:
        kind, payload = worker.receive(deadline)
        if kind != "done":
            raise DemoFailed(f"a burst process failed: {payload}")
        outcomes.extend(payload)
    anomalies = _audit_accounts(schema, balance) + _audit_answers(schema, outcomes)
    counts = Counter(outcome["status"] for outcome in outcomes)
    summary = (
        f"burst: {len(workers)} processes x {REQUESTS_PER_PROCESS} requests over {len(ACCOUNTS)} accounts, "
        f"each key sent {COPIES} times: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    )
    return summary, anomalies


def _audit_accounts(schema: DemoSchema, balance: int) -> list[str]:
    anomalies = []
    for account_id in ACCOUNTS:
        records = schema.records(PROTECTED_TABLES, account_id)
        final = schema.balance(PROTECTED_TABLES, account_id)
        findings = audit(balance, final, [(key, amount) for _, _, key, amount, _ in records])
        anomalies += [f"burst, account {account_id}: {finding.message}" for finding in findings]
        below = [after for *_, after in records if after < 0]
        if below:
            anomalies.append(f"burst, account {account_id}: {len(below)} records left a balance below zero")
    # The ledger audit of `energyctl audit`, on the demo's copies of the real tables.
    from energy.application.audit import audit_ledger

    ledger = audit_ledger(schema=schema.name).violations
    return anomalies + [f"burst, ledger audit, account {v.account_id}: {v.problem}" for v in ledger]


def _audit_answers(schema: DemoSchema, outcomes: list[dict]) -> list[str]:
    """Per key: one applied and the rest replayed with the same record, or every copy refused."""
    record_of = {key: record_id for record_id, account_id, key, *_ in schema.records(PROTECTED_TABLES)
                 if account_id in ACCOUNTS}
    answers = defaultdict(list)
    for outcome in outcomes:
        answers[outcome["key"]].append(outcome)
    anomalies = []
    for key, got in sorted(answers.items()):
        statuses = Counter(answer["status"] for answer in got)
        if key in record_of:
            same_record = all(answer.get("consumption_id") == record_of[key] for answer in got)
            if statuses != Counter({"applied": 1, "replayed": len(got) - 1}) or not same_record:
                anomalies.append(f"burst: key {key} was answered {_counted(statuses)}, not once applied "
                                 "and otherwise replayed with the same record")
        elif set(statuses) != {"insufficient_energy"}:
            anomalies.append(f"burst: key {key} has no record but was answered {_counted(statuses)}")
    if len(anomalies) > MAX_LISTED:
        anomalies = anomalies[:MAX_LISTED] + [f"burst: {len(anomalies) - MAX_LISTED} more keys like these"]
    return anomalies


def _counted(statuses: Counter) -> str:
    return ", ".join(f"{status} x{n}" for status, n in sorted(statuses.items()))
