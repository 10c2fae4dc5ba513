"""The workloads: who sends which requests, and which pgbench scripts they are held against."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator

from energyctl.bench import scripts
from energyctl.bench.scripts import CAPTURE_AMOUNT, HOLD_AMOUNT

SPREAD_ACCOUNTS = 10_000
# Accounts of the HTTP and end-to-end replay workloads, as a new user would try them.
API_ACCOUNTS = 1_000
# Requests per consume_many call in the bulk workload, as a replay file would be read.
BULK_CHUNK = 1_000
# Share of the bulk list that repeats a key sent earlier in the same list.
BULK_REPEATS = 0.1


@dataclass(frozen=True)
class PgbenchRun:
    engine: str
    script: str
    requests_per_tx: int = 1


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    accounts: int
    many_processes: bool
    # The pgbench run the consume path is measured against, and the ratio it should reach.
    target_ratio: float | None
    pgbench: tuple[PgbenchRun, ...] = field(default_factory=tuple)
    bulk: bool = False
    # How the project's side runs: "use case" (consume in N processes), "holds" (hold then
    # capture in N processes, one pair a request), "http" (energyctl serve driven over N
    # connections) or "replay" (energyctl replay FILE as a process).
    kind: str = "use case"

    def processes(self, requested: int) -> int:
        return requested if self.many_processes else 1


CASE = PgbenchRun("pgbench case-study SQL", scripts.CASE_STUDY)
ONE = PgbenchRun("pgbench one-statement CTE", scripts.ONE_STATEMENT)
CASE_ONE_CLIENT = PgbenchRun("pgbench case-study SQL, 1 client", scripts.CASE_STUDY)

WORKLOADS = (
    Workload("single", "1 process, one account", 1, False, 0.6, (CASE, ONE)),
    Workload("hot", "N processes, one hot account", 1, True, 0.8, (CASE, ONE)),
    Workload("spread", f"N processes, {SPREAD_ACCOUNTS:,} accounts", SPREAD_ACCOUNTS, True, 0.5, (CASE, ONE)),
    Workload("storm", "N processes, half the requests replays", SPREAD_ACCOUNTS, True, None,
             (PgbenchRun("pgbench one-statement CTE, key then replay", scripts.STORM, 2),)),
    Workload("bulk", "consume_many over a request list, 1 process", SPREAD_ACCOUNTS, False, 5.0,
             (CASE_ONE_CLIENT,), bulk=True),
    Workload("holds", f"N processes, hold {HOLD_AMOUNT} then capture {CAPTURE_AMOUNT}, {SPREAD_ACCOUNTS:,} accounts",
             SPREAD_ACCOUNTS, True, None, (PgbenchRun("pgbench hold then capture SQL", scripts.HOLD_CAPTURE),),
             kind="holds"),
    Workload("http", f"HTTP, N connections, {API_ACCOUNTS:,} accounts", API_ACCOUNTS, True, 0.5, (CASE,),
             kind="http"),
    Workload("http-hot", "HTTP, N connections, one hot account", 1, True, 0.5, (CASE,), kind="http"),
    Workload("replay", f"energyctl replay FILE, new keys over {API_ACCOUNTS:,} accounts", API_ACCOUNTS, False,
             10.0, (CASE_ONE_CLIENT,), kind="replay"),
    Workload("replay-hot", "energyctl replay FILE, new keys on one hot account", 1, False, None,
             (CASE_ONE_CLIENT,), kind="replay"),
)
# A re-run of the same file (every line replayed) should reach this, against the same pgbench.
REPLAYED_TARGET_RATIO = 15.0


def by_name(names: list[str] | None) -> tuple[Workload, ...]:
    """The workloads named; a name also selects its family ("http" selects "http-hot" too)."""
    if not names:
        return WORKLOADS
    unknown = set(names) - {w.name for w in WORKLOADS}
    if unknown:
        raise ValueError(f"unknown workloads: {', '.join(sorted(unknown))}")
    return tuple(w for w in WORKLOADS if w.name in names or w.name.split("-")[0] in names)


def requests(workload: Workload, process: int, processes: int) -> Iterator[tuple[int, int, str]]:
    """Endless (account_id, amount, key) requests for one process of ``workload``."""
    rng = random.Random(process)
    pick = (lambda: 1) if workload.accounts == 1 else (lambda: rng.randint(1, workload.accounts))
    if workload.name == "storm":
        yield from _storm(process, processes)
        return
    if workload.bulk:
        yield from _bulk(rng, pick)
        return
    n = 0
    while True:
        n += 1
        yield pick(), 1, f"{workload.name}-{process}-{n}"


def _storm(process: int, processes: int) -> Iterator[tuple[int, int, str]]:
    """Processes work in pairs that send the same keys, so every key is applied once and replayed once."""
    paired = processes > 1 and (process ^ 1) < processes
    n = 0
    while True:
        n += 1
        if paired:
            key_no = n
            yield _storm_account(process // 2, key_no), 1, f"storm-{process // 2}-{key_no}"
        else:
            key_no = (n + 1) // 2
            yield _storm_account(1000 + process, key_no), 1, f"storm-solo-{process}-{key_no}"


def _storm_account(group: int, key_no: int) -> int:
    return (group * 7919 + key_no * 104729) % SPREAD_ACCOUNTS + 1


def _bulk(rng: random.Random, pick) -> Iterator[tuple[int, int, str]]:
    sent: list[tuple[int, int, str]] = []
    n = 0
    while True:
        if sent and rng.random() < BULK_REPEATS:
            yield rng.choice(sent)
            continue
        n += 1
        request = (pick(), 1, f"bulk-{n}")
        sent.append(request)
        yield request
