"""One fault-injection run: prepare, load with faults, drain, audit, report."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from energyctl.torture.check import KIND, STATE, ledger_violations, violations
from energyctl.torture.cluster import open_database
from energyctl.torture.config import FAULT_KINDS, TortureConfig
from energyctl.torture.faults import FaultInjector
from energyctl.torture.fleet import Fleet
from energyctl.torture.history import load_history

# Schema set-up and seeding in a fresh process; generous for a busy machine.
PREPARE_TIMEOUT_S = 180


@dataclass
class Report:
    database: str
    clients: int
    accounts: int
    load_seconds: float
    requests: int
    # Requests sent per kind (consume, credit, reverse), retries and re-sends included.
    requests_by_kind: dict[str, int]
    keys: int
    outcomes: dict[str, int]
    unavailable_reasons: dict[str, int]
    unanswered_keys: int
    lost_answers_replayed: int
    faults: dict[str, int]
    kills_in_flight: int
    answers_dropped: int
    faults_not_injected: list[str]
    violations: list[str]
    duration_seconds: float
    seed: int
    client_exit_codes: list[int] = field(default_factory=list)
    # How the run's holds ended (as every read sees them), and what the clients' `holds expire` released.
    hold_states: dict[str, int] = field(default_factory=dict)
    released_by_holds_expire: int = 0
    # Where the clients' logs were copied when a guarantee was violated, to study the failure.
    kept_logs: str | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {**asdict(self), "violation_count": len(self.violations)}


def run_torture(config: TortureConfig) -> Report:
    _validate(config)
    seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    began = time.monotonic()
    database = open_database(config.database_url)
    fleet = None
    try:
        spec = _spec(config, seed)
        _prepare(database.url, spec)
        fleet = Fleet(database.url, database.workdir, spec, config.clients)
        fleet.wait_ready()
        injector = FaultInjector(database, fleet, config)
        load_started = time.monotonic()
        injector.run_until(load_started + config.seconds)
        database.ensure_up()
        codes = fleet.finish(timeout=config.drain_seconds + 30)
        load_seconds = time.monotonic() - load_started
        _, records = database.snapshot()
        history = load_history(fleet.log_paths())
        found = ledger_violations(database.url) + violations(history, records)
        kept_logs = _keep_logs(fleet) if found else None
    finally:
        if fleet is not None:
            fleet.kill_all()
        database.close()
    return Report(
        database=database.description,
        clients=config.clients,
        accounts=config.accounts,
        load_seconds=round(load_seconds, 2),
        requests=history.requests,
        requests_by_kind=_by_kind(history),
        keys=len(history.keys) + len(history.reversals) + len(history.resolutions),
        outcomes=dict(Counter(a["outcome"] for k in _every_key(history) for a in k.answers)),
        unavailable_reasons=dict(_reasons(history)),
        unanswered_keys=sum(1 for k in _every_key(history) if not k.final),
        lost_answers_replayed=sum(1 for k in _every_key(history) if _first_final(k) == "replayed"),
        faults={kind: injector.injected[kind] for kind in FAULT_KINDS},
        kills_in_flight=history.kills_in_flight,
        answers_dropped=Counter(a["outcome"] for k in _every_key(history) for a in k.answers)["answer_dropped"],
        faults_not_injected=injector.failed,
        violations=found,
        duration_seconds=round(time.monotonic() - began, 2),
        seed=seed,
        client_exit_codes=codes,
        kept_logs=kept_logs,
        hold_states=dict(Counter(record[STATE] for record in records if record[KIND] == "hold")),
        released_by_holds_expire=sum(expiry["released"] for expiry in history.expiries),
    )


def _keep_logs(fleet: Fleet) -> str:
    kept = Path(tempfile.mkdtemp(prefix="energyctl-torture-logs-"))
    for path in fleet.log_paths():
        shutil.copy(path, kept / path.name)
    return str(kept)


def _validate(config: TortureConfig) -> None:
    if config.clients < 1 or config.seconds <= 0:
        raise ValueError("a run needs at least one client and a positive number of seconds")
    if config.accounts <= config.hot_accounts:
        raise ValueError(f"accounts must be more than the {config.hot_accounts} hot ones")


def _spec(config: TortureConfig, seed: int) -> dict:
    keys = ("accounts", "hot_accounts", "hot_share", "missing_share", "duplicate_share", "credit_share",
            "reverse_share", "hold_share", "resolve_share", "short_hold_share", "expire_share",
            "drop_answer_every", "start_energy",
            "max_amount", "lock_timeout_ms", "drain_seconds")
    return {**{k: getattr(config, k) for k in keys}, "seed": seed, "run": f"t{seed:x}"}


def _prepare(url: str, spec: dict) -> None:
    env = {**os.environ, "DATABASE_URL": url, "ENERGYCTL_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "energyctl.torture.worker", "prepare", json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=PREPARE_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"preparing the database failed:\n{done.stderr[-2000:]}")


def _every_key(history):
    """Each request's history: consumes, credits and holds by key; reverses, captures and voids by the key they name."""
    return [*history.keys.values(), *history.reversals.values(), *history.resolutions.values()]


def _by_kind(history) -> dict[str, int]:
    sent = Counter()
    for entry in _every_key(history):
        sent[entry.kind] += entry.sends
    return dict(sent)


def _first_final(entry) -> str | None:
    """A key first answered ``replayed`` was applied by an attempt whose answer never arrived."""
    return entry.final[0]["outcome"] if entry.final else None


def _reasons(history) -> Counter:
    kinds = Counter()
    for entry in _every_key(history):
        for answer in entry.answers:
            if answer["outcome"] == "unavailable":
                kinds[_reason_kind(answer.get("reason", ""))] += 1
    return kinds


def _reason_kind(reason: str) -> str:
    if "row lock" in reason:
        return "lock_timeout"
    if "administrator command" in reason:
        return "backend_terminated"
    return "connection_lost_or_refused"
