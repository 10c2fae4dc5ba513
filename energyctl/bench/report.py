"""Benchmark: the consume path next to pgbench on the same server, with invariants checked after each run.

    python -m energyctl.bench.report [--seconds 10] [--processes 8] [--only hot,spread,http,replay] [--json]

Runs on the configured database server (DATABASE_URL, else the embedded PostgreSQL) in a
database of its own (``<name>_bench``, dropped and recreated), so real data is untouched.
Exit status 0 when every run finished and kept every invariant, 1 otherwise; targets that
are missed are reported, not failed. The HTTP workloads add the case-study peer's row
(energyctl.bench.http) where the checkout's benchmarks/ and gunicorn are present, and say
why not otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from contextlib import contextmanager

from energyctl.bench import database, pgbench
from energyctl.bench import http as http_api
from energyctl.bench import load as clients
from energyctl.bench import replay as replay_e2e
from energyctl.bench.workloads import REPLAYED_TARGET_RATIO, WORKLOADS, Workload, by_name

CONSUME_ENGINE = "energyctl consume"
BULK_ENGINE = "energyctl consume_many"
HOLDS_ENGINE = "energyctl hold + capture"
REPLAY_ENGINE = "energyctl replay FILE (fresh database)"
REPLAY_AGAIN_ENGINE = "energyctl replay FILE again (all replayed)"
WORKLOAD_NAMES = ",".join(w.name for w in WORKLOADS)
# energyctl serve should answer this many times the requests/s of the case-study peer.
PEER_TARGET_RATIO = 1.2
# Seconds of unmeasured load each HTTP server answers before its first slice.
HTTP_WARM_UP_S = 1


def run(*, seconds: int = 10, processes: int = 8, only: list[str] | None = None, rounds: int = 2,
        replay_lines: int = replay_e2e.LINES, progress=None) -> dict:

    from energy.setup import setup_django

    setup_django()
    workloads = by_name(only)
    rounds = max(1, min(rounds, seconds))
    target = database.prepare()
    report = {
        "backend": "postgresql",
        "server_version": database.server_version(target),
        "database": target.name,
        "seconds": seconds,
        "rounds": rounds,
        "processes": processes,
        "pgbench_protocol": pgbench.PROTOCOL,
        "http_client": http_api.engine_name() if any(w.kind == "http" for w in workloads) else None,
        "workloads": [],
        "notes": [],
    }
    for workload in workloads:
        if workload.kind == "replay":
            result = _run_replay(target, workload, seconds, replay_lines, progress)
        else:
            result = _run_workload(target, workload, processes, seconds, rounds, progress, report["notes"])
        report["workloads"].append(result)
    report["ok"] = all(row["ok"] for w in report["workloads"] for row in w["rows"])
    return report


def _run_workload(target, workload: Workload, requested: int, seconds: int, rounds: int, progress,
                  notes: list[str]) -> dict:
    """Every engine runs ``rounds`` slices, interleaved, so a noisy minute hurts them all alike."""
    n = workload.processes(requested)
    token = http_api.client_token(http_api.database_url(target), f"bench-{workload.name}") \
        if workload.kind == "http" else None
    with _own_engine(target, workload, n, token) as (own_name, own), \
            _peer_engine(target, workload, n, token, notes) as peer:
        engines = [(own_name, own)] + [(b.engine, _pgbench_engine(target, b, workload, n)) for b in workload.pgbench]
        engines += [peer] if peer else []
        if workload.kind == "http":
            # A server's first second opens its connections and prepares its statements: unmeasured.
            for _, measure in [engines[0], *([peer] if peer else [])]:
                database.reset(target, workload.accounts)
                measure(HTTP_WARM_UP_S)
        slices = {engine: [] for engine, _ in engines}
        for _ in range(rounds):
            for engine, measure in engines:
                if progress:
                    progress(f"{workload.name}: {engine}, {n} processes, {seconds // rounds} s")
                database.reset(target, workload.accounts)
                slices[engine].append(measure(seconds // rounds))
    rows = [_row(engine, n, _merged(slices[engine]), []) for engine, _ in engines]
    result = _with_ratios(workload, n, rows)
    if peer:
        peer_row = next(row for row in rows if row["engine"] == http_api.PEER_ENGINE)
        result["peer_ratio"] = round(rows[0]["ops_per_s"] / peer_row["ops_per_s"], 2) if peer_row["ops_per_s"] \
            else None
    return result


@contextmanager
def _own_engine(target, workload: Workload, n: int, token: str | None):
    """(name, measure(seconds)) of the project's side of a workload, set up for the whole workload."""
    if workload.kind == "http":
        url = http_api.database_url(target)
        with http_api.served(url) as server:
            yield http_api.engine_name(), lambda secs: _checked_http(target, workload, server, n, secs, token)
        return

    def measure(secs):
        measured = clients.run(target.name, workload, n, secs)
        measured["errors"] = measured["errors"] + _invariants(target, workload, measured["outcomes"].get("applied", 0))
        return measured

    yield (HOLDS_ENGINE if workload.kind == "holds" else BULK_ENGINE if workload.bulk else CONSUME_ENGINE), measure


@contextmanager
def _peer_engine(target, workload: Workload, n: int, token: str | None, notes: list[str]):
    """(name, measure(seconds)) of the case-study peer for an HTTP workload, or None where it cannot run.

    The same wrk load as energyctl serve's, headers included (the peer reads no token); its
    own tables, reset before each slice and checked after it.
    """
    missing = http_api.peer_unavailable() if workload.kind == "http" else None
    if workload.kind != "http" or missing:
        if missing and missing not in notes:
            notes.append(f"no {http_api.PEER_ENGINE} row: {missing}")
        yield None
        return
    from energyctl.bench.database import START_ENERGY

    url = http_api.database_url(target)

    def measure(secs):
        http_api.peer_tables(url, "reset", accounts=workload.accounts, energy=START_ENERGY)
        measured = http_api.measure(server, accounts=workload.accounts, connections=n, seconds=secs,
                                    prefix=workload.name, token=token)
        measured.pop("applied")
        unexpected = {k: v for k, v in measured["outcomes"].items() if k not in ("applied", "replayed")}
        if unexpected:
            measured["errors"].append(f"answers other than 201/200: {unexpected}")
        measured["errors"] += http_api.peer_tables(url, "check", energy=START_ENERGY)["problems"]
        return measured

    http_api.peer_tables(url, "reset", accounts=workload.accounts, energy=START_ENERGY)
    with http_api.peer_served(url) as server:
        yield http_api.PEER_ENGINE, measure


def _checked_http(target, workload: Workload, server, n: int, seconds: int, token: str | None) -> dict:
    measured = http_api.measure(server, accounts=workload.accounts, connections=n, seconds=seconds,
                                prefix=workload.name, token=token)
    unexpected = {k: v for k, v in measured["outcomes"].items() if k not in ("applied", "replayed")}
    if unexpected:
        measured["errors"].append(f"answers other than 201/200: {unexpected}")
    measured["errors"] += database.check_invariants(target, measured.pop("applied"), in_flight=n)
    return measured


def _pgbench_engine(target, bench, workload: Workload, n: int):
    script = _script(bench.script, workload.accounts)

    def measure(secs):
        measured = pgbench.run(target, script, n, secs, bench.requests_per_tx)
        measured["errors"] = measured["errors"] + _invariants(target, workload)
        return measured

    return measure


def _invariants(target, workload: Workload, applied: int | None = None) -> list[str]:
    """What a run broke: the consume checks, or for holds the ledger audit and one capture per hold."""
    if workload.kind != "holds":
        return database.check_invariants(target, applied)
    from energy.application.audit import audit_ledger

    # The benchmark's database is Django's connection since database.prepare().
    violations = audit_ledger().violations
    problems = [f"audit, account {v.account_id}: {v.problem}" for v in violations[:5]]
    if len(violations) > 5:
        problems.append(f"audit: {len(violations) - 5} more violations")
    with target.connect() as conn:
        holds, captured, captures = conn.execute(
            "SELECT count(*) FILTER (WHERE kind = 'hold'),"
            " count(*) FILTER (WHERE kind = 'hold' AND state = 'captured'),"
            " count(*) FILTER (WHERE kind = 'capture') FROM energy_consumption").fetchone()
    if not holds == captured == captures:
        problems.append(f"{holds} holds, {captured} of them captured, {captures} captures recorded")
    if applied is not None and captures != applied:
        problems.append(f"{applied} pairs answered applied but {captures} captures recorded")
    return problems


def _run_replay(target, workload: Workload, seconds: int, lines: int, progress) -> dict:
    """The file replayed on a fresh database, then again, next to pgbench at one client.

    pgbench runs half its time before the replays and half after, so the writes the replays
    leave for the server to flush (checkpoints) weigh on both sides alike.
    """
    bench = workload.pgbench[0]
    reference = _pgbench_engine(target, bench, workload, 1)
    halves = [max(1, seconds // 2), max(1, seconds - seconds // 2)]
    slices = []
    if progress:
        progress(f"{workload.name}: {bench.engine}, {halves[0]} s")
    database.reset(target, workload.accounts)
    slices.append(reference(halves[0]))
    if progress:
        progress(f"{workload.name}: energyctl replay of {lines:,} lines, fresh database, then again")
    first, again = replay_e2e.run_case(target, workload.accounts, lines, workload.name)
    if progress:
        progress(f"{workload.name}: {bench.engine}, {halves[1]} s")
    database.reset(target, workload.accounts)
    slices.append(reference(halves[1]))
    rows = [_row(REPLAY_ENGINE, 1, first, []), _row(REPLAY_AGAIN_ENGINE, 1, again, []),
            _row(bench.engine, 1, _merged(slices), [])]
    return _with_ratios(workload, 1, rows, reference_index=2)


def _with_ratios(workload: Workload, n: int, rows: list[dict], reference_index: int = 1) -> dict:
    reference = rows[reference_index]["ops_per_s"] if len(rows) > reference_index else 0
    for row in rows:
        row["ratio"] = round(row["ops_per_s"] / reference, 2) if reference else None
    ratio = rows[0]["ratio"]
    return {
        "name": workload.name,
        "title": workload.title.replace("N processes", f"{n} processes").replace("N connections",
                                                                                 f"{n} connections"),
        "processes": n,
        "reference": rows[reference_index]["engine"] if len(rows) > reference_index else None,
        "target_ratio": workload.target_ratio,
        "target_met": None if workload.target_ratio is None or ratio is None else ratio >= workload.target_ratio,
        "rows": rows,
    }


def _merged(measured: list[dict]) -> dict:
    outcomes: dict = {}
    for m in measured:
        for name, count in m["outcomes"].items():
            outcomes[name] = outcomes.get(name, 0) + count
    return {
        "ops": sum(m["ops"] for m in measured),
        "elapsed": sum(m["elapsed"] for m in measured),
        # None where CPU could not be read (an HTTP server off Linux).
        "cpu_seconds": None if any(m["cpu_seconds"] is None for m in measured)
        else sum(m["cpu_seconds"] for m in measured),
        "latencies": sorted(x for m in measured for x in m["latencies"]),
        "outcomes": outcomes,
        "errors": [e for m in measured for e in m["errors"]],
    }


def _script(script: str, accounts: int) -> str:
    from energyctl.bench.scripts import render

    return render(script, accounts)


def _row(engine: str, processes: int, measured: dict, problems: list[str]) -> dict:
    ops, elapsed, latencies = measured["ops"], measured["elapsed"], measured["latencies"]
    problems = measured["errors"] + problems
    if ops == 0:
        problems.append("no request completed")
    return {
        "engine": engine,
        "processes": processes,
        "ops": ops,
        "ops_per_s": round(ops / elapsed, 1) if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "cpu_us_per_op": round(measured["cpu_seconds"] / ops * 1e6, 1) if ops and measured["cpu_seconds"] is not None
        else None,
        "outcomes": measured["outcomes"],
        "invariants_ok": not problems,
        "problems": problems,
        "ok": not problems,
    }


def _percentile(latencies: list[float], percent: int) -> float | None:
    """The ``percent``-th percentile of latencies in seconds, in milliseconds."""
    if len(latencies) < 2:  # quantiles needs two points; one is its own every percentile
        return round(latencies[0] * 1000, 3) if latencies else None
    return round(statistics.quantiles(latencies, n=100, method="inclusive")[percent - 1] * 1000, 3)


def render(report: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"energyctl vs pgbench (-M {report['pgbench_protocol']}), PostgreSQL "
                        f"{report['server_version']}, {report['seconds']} s per engine "
                        f"in {report['rounds']} interleaved slices")
    for column in ("workload", "engine", "procs", "ops/s", "p50 ms", "p99 ms", "client CPU µs/op",
                   "x ref", "invariants"):
        table.add_column(column, justify="left" if column in ("workload", "engine") else "right")
    for workload in report["workloads"]:
        for i, row in enumerate(workload["rows"]):
            table.add_row(
                workload["name"] if i == 0 else "", row["engine"], str(row["processes"]),
                f"{row['ops_per_s']:,.0f}", _ms(row["p50_ms"]), _ms(row["p99_ms"]),
                "-" if row["cpu_us_per_op"] is None else f"{row['cpu_us_per_op']:,.0f}",
                "-" if row["ratio"] is None else f"{row['ratio']:.2f}",
                "ok" if row["ok"] else "[red]FAILED: " + "; ".join(row["problems"]) + "[/red]",
                end_section=i == len(workload["rows"]) - 1,
            )
    if not console.is_terminal and console.width < 120:
        # Written to a file or a pipe: a table folded to 80 columns would be unreadable there.
        from rich.console import Console

        console = Console(file=console.file, width=120, highlight=False)
    console.print(table)
    for workload in report["workloads"]:
        if workload.get("peer_ratio") is not None:
            verdict = "met" if workload["peer_ratio"] >= PEER_TARGET_RATIO else "not met"
            console.print(f"{workload['name']}: {workload['peer_ratio']}x {http_api.PEER_ENGINE} "
                          f"(target {PEER_TARGET_RATIO}x): {verdict}")
        if workload["target_ratio"] is not None:
            verdict = "met" if workload["target_met"] else "not met"
            console.print(f"{workload['name']}: {workload['rows'][0]['ratio']}x {workload['reference']} "
                          f"(target {workload['target_ratio']}x): {verdict}")
        if workload["name"] == "replay":
            again = workload["rows"][1]["ratio"]
            verdict = "met" if again is not None and again >= REPLAYED_TARGET_RATIO else "not met"
            console.print(f"replay, all replayed: {again}x {workload['reference']} "
                          f"(target {REPLAYED_TARGET_RATIO}x): {verdict}")
    for note in report["notes"]:
        console.print(note)
    if report.get("http_client"):
        console.print(f"HTTP load: {report['http_client']}; its CPU column is the server's (energyctl serve "
                      "and its workers), the database's client there")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m energyctl.bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each run (default 10)")
    parser.add_argument("--processes", type=int, default=8, help="processes / pgbench clients (default 8)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved slices each engine's time is split into (default 2)")
    parser.add_argument("--only", default="", help=f"comma-separated workloads: {WORKLOAD_NAMES}")
    parser.add_argument("--replay-lines", type=int, default=replay_e2e.LINES,
                        help=f"lines of each end-to-end replay file (default {replay_e2e.LINES:,})")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.processes < 1 or args.replay_lines < 1:
        parser.error("--seconds, --processes and --replay-lines must be at least 1")
    from rich.console import Console

    err = Console(stderr=True)
    only = [name for name in args.only.split(",") if name] or None
    try:
        by_name(only)
    except ValueError as exc:
        parser.error(str(exc))
    progress = None if args.json else lambda text: err.print(f"[dim]{text}[/dim]")
    report = run(seconds=args.seconds, processes=args.processes, only=only, rounds=args.rounds,
                 replay_lines=args.replay_lines, progress=progress)
    if args.json:
        print(json.dumps(report))
    else:
        render(report, Console())
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
