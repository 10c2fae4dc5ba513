"""The consume path (or hold then capture) under load: N spawned OS processes, each with its own connection."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections import Counter

from energyctl.bench.scripts import CAPTURE_AMOUNT, HOLD_AMOUNT
from energyctl.bench.workloads import BULK_CHUNK, Workload, requests

# Seconds a worker may take to start Django and connect before the run is called failed.
START_TIMEOUT_S = 120


def run(db_name: str, workload: Workload, processes: int, seconds: float) -> dict:
    """Release every process at once, let them send requests for ``seconds``, and sum what they saw."""
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(db_name, workload, p, processes, seconds, barrier, results))
        for p in range(processes)
    ]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=START_TIMEOUT_S + seconds * 4) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    failures = [r["error"] for r in reports if "error" in r]
    outcomes = sum((Counter(r["outcomes"]) for r in reports), Counter())
    latencies = sorted(itertools.chain.from_iterable(r["latencies"] for r in reports))
    ops = sum(outcomes.values())
    return {
        "ops": ops,
        "elapsed": max((r["elapsed"] for r in reports), default=seconds),
        "cpu_seconds": sum(r["cpu"] for r in reports),
        "latencies": latencies,
        "outcomes": dict(outcomes),
        "errors": failures,
    }


def _worker(db_name, workload, process, processes, seconds, barrier, results) -> None:
    from energy.setup import quiet_consume_log, setup_django

    setup_django(database={"NAME": db_name})
    # One log line per consume would measure the terminal, not the consume path.
    quiet_consume_log()
    from django.db import connection

    try:
        connection.ensure_connection()
        barrier.wait(timeout=START_TIMEOUT_S)
        send = _send_bulk if workload.bulk else _send_holds if workload.kind == "holds" else _send_each
        report = send(requests(workload, process, processes), seconds)
    except Exception as exc:  # noqa: BLE001 - reported as a failed row, never a silent fast one
        report = {"error": f"{type(exc).__name__}: {exc}", "outcomes": {}, "latencies": [], "elapsed": 0, "cpu": 0}
    finally:
        connection.close()
    results.put(report)


def _send_each(stream, seconds: float) -> dict:
    from energy.application.consume import consume

    return _one_by_one(stream, seconds, lambda account_id, amount, key: consume(
        account_id=account_id, amount=amount, idempotency_key=key).status)


def _send_holds(stream, seconds: float) -> dict:
    """Each request a pair: hold HOLD_AMOUNT under a new key, then capture CAPTURE_AMOUNT of it.

    The pair's outcome is the capture's (a refused hold is its own); its latency, both calls.
    """
    from energy.application.holds import capture, hold

    def pair(account_id: int, _amount: int, key: str) -> str:
        hold(account_id=account_id, amount=HOLD_AMOUNT, idempotency_key=key)
        return capture(idempotency_key=key, amount=CAPTURE_AMOUNT).status

    return _one_by_one(stream, seconds, pair)


def _one_by_one(stream, seconds: float, send) -> dict:
    """Send ``send(account_id, amount, key)`` for request after request until ``seconds`` pass; count outcomes."""
    from energy.domain.exceptions import EnergyError

    outcomes: Counter = Counter()
    latencies = []
    cpu, start = time.process_time(), time.perf_counter()
    deadline = start + seconds
    while (sent := time.perf_counter()) < deadline:
        try:
            outcomes[send(*next(stream))] += 1
        except EnergyError as exc:
            outcomes[exc.outcome] += 1
        latencies.append(time.perf_counter() - sent)
    return {"outcomes": dict(outcomes), "latencies": latencies, "elapsed": time.perf_counter() - start,
            "cpu": time.process_time() - cpu}


def _send_bulk(stream, seconds: float) -> dict:
    from energy.application.batch import consume_many
    from energy.domain.requests import ConsumeRequest

    outcomes: Counter = Counter()
    latencies = []
    cpu, start = time.process_time(), time.perf_counter()
    deadline = start + seconds
    while (sent := time.perf_counter()) < deadline:
        chunk = [ConsumeRequest(*request) for request in itertools.islice(stream, BULK_CHUNK)]
        for outcome in consume_many(chunk):
            outcomes[outcome.outcome] += 1
        # Per request: the chunk's time shared by its requests.
        latencies.extend([(time.perf_counter() - sent) / len(chunk)] * len(chunk))
    return {"outcomes": dict(outcomes), "latencies": latencies, "elapsed": time.perf_counter() - start,
            "cpu": time.process_time() - cpu}
