"""Benchmark: the consume path next to pgbench on the same server, with invariants checked after each run.

    python -m benchmarks.bench [--seconds 10] [--processes 8] [--only hot,spread] [--json]

Runs on the configured database server (DATABASE_URL, else the embedded PostgreSQL) in a
database of its own (``<name>_bench``, dropped and recreated), so real data is untouched.
Exit status 0 when every run finished and kept every invariant, 1 otherwise; targets that
are missed are reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from benchmarks import clients, database, pgbench
from benchmarks.workloads import Workload, by_name

CONSUME_ENGINE = "energyctl consume"
BULK_ENGINE = "energyctl consume_many"


def run(*, seconds: int = 10, processes: int = 8, only: list[str] | None = None, rounds: int = 2,
        progress=None) -> dict:
    from energy.standalone import setup_django

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
        "workloads": [],
    }
    for workload in workloads:
        report["workloads"].append(_run_workload(target, workload, processes, seconds, rounds, progress))
    report["ok"] = all(row["ok"] for w in report["workloads"] for row in w["rows"])
    return report


def _run_workload(target, workload: Workload, requested: int, seconds: int, rounds: int, progress) -> dict:
    """Every engine runs ``rounds`` slices, interleaved, so a noisy minute hurts them all alike."""
    n = workload.processes(requested)
    engines = [(BULK_ENGINE if workload.bulk else CONSUME_ENGINE, None)] + [(b.engine, b) for b in workload.pgbench]
    slices = {engine: [] for engine, _ in engines}
    for _ in range(rounds):
        for engine, bench in engines:
            if progress:
                progress(f"{workload.name}: {engine}, {n} processes, {seconds // rounds} s")
            database.reset(target, workload.accounts)
            if bench is None:
                measured = clients.run(target.name, workload, n, seconds // rounds)
                problems = database.check_invariants(target, measured["outcomes"].get("applied", 0))
            else:
                script = _script(bench.script, workload.accounts)
                measured = pgbench.run(target, script, n, seconds // rounds, bench.requests_per_tx)
                problems = database.check_invariants(target)
            measured["errors"] = measured["errors"] + problems
            slices[engine].append(measured)
    rows = [_row(engine, n, _merged(slices[engine]), []) for engine, _ in engines]
    reference = rows[1]["ops_per_s"] if len(rows) > 1 else 0
    for row in rows:
        row["ratio"] = round(row["ops_per_s"] / reference, 2) if reference else None
    ratio = rows[0]["ratio"]
    return {
        "name": workload.name,
        "title": workload.title.replace("N processes", f"{n} processes"),
        "processes": n,
        "reference": rows[1]["engine"] if len(rows) > 1 else None,
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
        "cpu_seconds": sum(m["cpu_seconds"] for m in measured),
        "latencies": sorted(x for m in measured for x in m["latencies"]),
        "outcomes": outcomes,
        "errors": [e for m in measured for e in m["errors"]],
    }


def _script(script: str, accounts: int) -> str:
    from benchmarks.scripts import render

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
        "cpu_us_per_op": round(measured["cpu_seconds"] / ops * 1e6, 1) if ops else None,
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
        if workload["target_ratio"] is not None:
            verdict = "met" if workload["target_met"] else "not met"
            console.print(f"{workload['name']}: {workload['rows'][0]['ratio']}x {workload['reference']} "
                          f"(target {workload['target_ratio']}x): {verdict}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each run (default 10)")
    parser.add_argument("--processes", type=int, default=8, help="processes / pgbench clients (default 8)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved slices each engine's time is split into (default 2)")
    parser.add_argument("--only", default="", help="comma-separated workloads: single,hot,spread,storm,bulk")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.processes < 1:
        parser.error("--seconds and --processes must be at least 1")
    from rich.console import Console

    err = Console(stderr=True)
    only = [name for name in args.only.split(",") if name] or None
    try:
        by_name(only)
    except ValueError as exc:
        parser.error(str(exc))
    report = run(seconds=args.seconds, processes=args.processes, only=only, rounds=args.rounds,
                 progress=None if args.json else lambda text: err.print(f"[dim]{text}[/dim]"))
    if args.json:
        print(json.dumps(report))
    else:
        render(report, Console())
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
