"""Benchmark: ``energyctl replay FILE`` as a whole process, next to pgbench at one client.

    python -m energyctl.bench.replay [--lines 20000] [--accounts 1000] [--rounds 3] [--against SCRIPT] [--json]

Each round makes a fresh database (tables without statistics, as a user's first big replay
meets them), seeds the accounts with ``energyctl seed``, then times two whole processes:
``energyctl replay FILE`` on a file of new keys (amounts 1-5, spread over the accounts), and
the same command again, where every line comes back replayed. Start-up is included. pgbench
runs the case study's SQL at one client on the same server for the reference rate, and the
ledger is audited after every round. Runs on a throwaway embedded cluster, or in a database
of its own on the server of DATABASE_URL. Prints figures; exit 1 only if a run failed.

``--against SCRIPT`` runs another ``energyctl`` (e.g. an install of an older commit) through
the same rounds, each on a fresh database of its own, alternating which goes first, so that
the two are compared side by side in one run; CPU time of the replays is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from energyctl.bench import scripts

# Rich enough that no line of any file ends in insufficient_energy.
START_ENERGY = 10**9
PGBENCH_SECONDS = 5
# Lines of a benchmark file, as a user's first big replay.
LINES = 20_000


def write_requests(path: Path, lines: int, accounts: int, seed: int | str) -> None:
    rng = random.Random(seed)
    with path.open("w") as out:
        for n in range(lines):
            request = {"account_id": rng.randint(1, accounts), "amount": rng.randint(1, 5),
                       "idempotency_key": f"replay-{seed}-{n}"}
            out.write(json.dumps(request) + "\n")


def energyctl(url: str, *args: str, script: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    script = script or Path(sys.executable).parent / "energyctl"
    env = {**os.environ, "DATABASE_URL": url, "ENERGYCTL_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    done = subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=600)
    return time.perf_counter() - started, done


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def replay_round(database, lines: int, accounts: int, seed: int, workdir: Path, script: Path | None = None) -> dict:
    requests = workdir / f"requests-{seed}.jsonl"
    write_requests(requests, lines, accounts, seed)
    url = database.url
    for args in (("migrate",), ("seed", "--accounts", str(accounts), "--energy", str(START_ENERGY))):
        _, done = energyctl(url, *args, script=script)
        if done.returncode != 0:
            raise SystemExit(f"energyctl {args[0]} failed: {done.stderr.strip()}")
    cpu = _children_cpu()
    first_s, first = energyctl(url, "replay", str(requests), "--json", script=script)
    first_cpu, cpu = _children_cpu() - cpu, _children_cpu()
    again_s, again = energyctl(url, "replay", str(requests), "--json", script=script)
    again_cpu = _children_cpu() - cpu
    problems = []
    for name, done, outcome in (("first run", first, "applied"), ("re-run", again, "replayed")):
        summary = json.loads(done.stdout) if done.stdout.strip() else {}
        if done.returncode != 0 or summary.get(outcome) != lines:
            problems.append(f"{name}: exit {done.returncode}, {summary or done.stderr.strip()}")
    problems += ledger_problems(url)
    return {"first_s": first_s, "again_s": again_s, "first_cpu_s": first_cpu, "again_cpu_s": again_cpu,
            "problems": problems}


def ledger_problems(url: str) -> list[str]:
    """The contract's guarantees, checked on what the replays left behind."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        drift = conn.execute(
            """SELECT count(*) FROM energy_account a
               LEFT JOIN (SELECT account_id, sum(amount) AS spent FROM energy_consumption GROUP BY account_id) c
                 ON c.account_id = a.id
               WHERE a.energy <> a.opening_energy - coalesce(c.spent, 0) OR a.energy < 0""").fetchone()[0]
        records, keys = conn.execute(
            "SELECT count(*), count(DISTINCT (client_id, idempotency_key)) FROM energy_consumption").fetchone()
    problems = [f"{drift} accounts off their ledger"] if drift else []
    return problems + ([f"{records - keys} keys recorded twice"] if records != keys else [])


def pgbench_rate(database, accounts: int) -> float:
    from energy.db.embedded.server import binary

    with tempfile.TemporaryDirectory(prefix="energyctl-pgbench-") as tmp:
        script = Path(tmp) / "case.sql"
        script.write_text(scripts.render(scripts.CASE_STUDY, accounts))
        done = subprocess.run(
            [str(binary("pgbench")), "-n", "-M", "prepared", "-c", "1", "-j", "1", "-T", str(PGBENCH_SECONDS),
             "-D", "n=0", "-f", str(script), database.url],
            capture_output=True, text=True, timeout=PGBENCH_SECONDS + 60)
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise SystemExit(f"pgbench failed: {done.stderr.strip() or done.stdout.strip()}")


def run(lines: int, accounts: int, rounds: int, progress=None, against: Path | None = None) -> dict:
    from energyctl.torture.cluster import OwnCluster, TortureDatabase, open_database

    server_url = os.environ.get("DATABASE_URL")
    cluster: TortureDatabase | None = None if server_url else OwnCluster()
    scripts_run = {"this": None, **({"against": against} if against else {})}
    measured = {label: [] for label in scripts_run}
    problems, rates = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="energyctl-replay-bench-") as tmp:
            for round_number in range(rounds):
                labels = list(scripts_run)[:: 1 if round_number % 2 == 0 else -1]
                for label in labels:
                    # A fresh database per run: the first replay meets tables without statistics.
                    database = (open_database(server_url) if server_url
                                else _fresh_database(cluster, f"{round_number}_{label}"))
                    try:
                        if progress:
                            progress(f"round {round_number + 1}/{rounds} ({label}): replay of {lines:,} lines, "
                                     "then its re-run")
                        one = replay_round(database, lines, accounts, round_number, Path(tmp), scripts_run[label])
                        measured[label].append(one)
                        problems += [f"{label}: {problem}" for problem in one["problems"]]
                        if label == labels[-1]:
                            if progress:
                                progress(f"round {round_number + 1}/{rounds}: pgbench case-study SQL, 1 client")
                            rates.append(pgbench_rate(database, accounts))
                    finally:
                        if server_url:
                            database.close()
    finally:
        if cluster is not None:
            cluster.close()
    pgbench = statistics.median(rates)
    report = {"lines": lines, "accounts": accounts, "rounds": rounds,
              "pgbench_case_study_1_client_tx_per_s": round(pgbench, 1),
              **_figures(measured["this"], lines, pgbench)}
    if against:
        report["against"] = {"script": str(against), **_figures(measured["against"], lines, pgbench)}
    return {**report, "problems": problems, "ok": not problems}


def _figures(runs: list[dict], lines: int, pgbench: float) -> dict:
    """Medians over the rounds of one script's replays, as rates and ratios to pgbench."""
    figures = {}
    for name, key, target in (("replay_new_keys", "first", 10.0), ("replay_rerun", "again", 15.0)):
        seconds = statistics.median(run[f"{key}_s"] for run in runs)
        figures[name] = {"seconds": round(seconds, 3), "lines_per_s": round(lines / seconds, 1),
                         "ratio": round(lines / seconds / pgbench, 2), "target_ratio": target,
                         "cpu_seconds": round(statistics.median(run[f"{key}_cpu_s"] for run in runs), 3)}
    return figures


def run_case(target, accounts: int, lines: int, seed: int | str) -> list[dict]:
    """For ``energyctl bench``: the file replayed on a fresh database, then again, as two bench rows.

    ``target`` is the bench's own database, dropped and made again here, migrated and seeded
    by the installed script; each row has the shape the bench's other engines return.
    """
    from energyctl.bench import database
    from energyctl.bench.http import database_url

    url = database_url(target)
    database.recreate(target)
    for args in (("migrate",), ("seed", "--accounts", str(accounts), "--energy", str(database.START_ENERGY))):
        _, done = energyctl(url, *args)
        if done.returncode != 0:
            raise RuntimeError(f"energyctl {args[0]} failed: {done.stderr.strip()}")
    with tempfile.TemporaryDirectory(prefix="energyctl-replay-bench-") as tmp:
        path = Path(tmp) / "requests.jsonl"
        write_requests(path, lines, accounts, seed)
        first = _bench_row(url, path, "applied", lines)
        first["errors"] += database.check_invariants(target, first["outcomes"].get("applied", 0))
        again = _bench_row(url, path, "replayed", lines)
        again["errors"] += database.check_invariants(target, first["outcomes"].get("applied", 0))
    return [first, again]


def _bench_row(url: str, path: Path, expected: str, lines: int) -> dict:
    import resource

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = children_cpu()
    elapsed, done = energyctl(url, "replay", str(path), "--json")
    cpu = children_cpu() - before
    summary = json.loads(done.stdout) if done.stdout.strip() else {}
    outcomes = {k: v for k, v in summary.items() if k not in ("total", "seconds") and v}
    errors = [] if done.returncode == 0 else [
        f"energyctl replay exited {done.returncode}: {done.stderr.strip()[-300:]}"]
    if outcomes.get(expected) != lines:
        errors.append(f"{outcomes} instead of {lines} {expected}")
    total = summary.get("total", 0)
    # One figure per line: the whole process's time shared by its lines.
    latencies = [elapsed / total] * total if total else []
    return {"ops": total, "elapsed": elapsed, "cpu_seconds": cpu, "latencies": latencies, "outcomes": outcomes,
            "errors": errors}


def _fresh_database(cluster, suffix: str):
    """A new database on the throwaway cluster, so every run starts from empty, unanalysed tables."""
    import psycopg
    from psycopg import sql

    name = f"replay_bench_{suffix}"
    with cluster.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = type("Fresh", (), {})()
    database.url = cluster.url.rsplit("/", 1)[0] + "/" + name
    database.connect = lambda: psycopg.connect(database.url, autocommit=True)
    return database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m energyctl.bench.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=LINES, help=f"requests in the file (default {LINES})")
    parser.add_argument("--accounts", type=int, default=1_000, help="accounts they spread over (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh databases to run on; medians (default 3)")
    parser.add_argument("--against", type=Path, metavar="SCRIPT",
                        help="another energyctl to run through the same rounds, side by side")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if min(args.lines, args.accounts, args.rounds) < 1:
        parser.error("--lines, --accounts and --rounds must be at least 1")
    if args.against and not args.against.is_file():
        parser.error(f"--against: no such script {args.against}")
    report = run(args.lines, args.accounts, args.rounds,
                 progress=None if args.json else lambda text: print(text, file=sys.stderr), against=args.against)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"pgbench case-study SQL, 1 client: {report['pgbench_case_study_1_client_tx_per_s']:,.0f} tx/s")
        shown = [("energyctl", report), *([(str(args.against), report["against"])] if args.against else [])]
        for script, figures in shown:
            for name, row in (("replay, new keys", figures["replay_new_keys"]),
                              ("replay, re-run", figures["replay_rerun"])):
                print(f"{script} {name}: {report['lines']:,} lines in {row['seconds']:.2f} s "
                      f"(CPU {row['cpu_seconds']:.2f} s) = {row['lines_per_s']:,.0f} lines/s = "
                      f"{row['ratio']}x pgbench (target {row['target_ratio']}x)")
        for problem in report["problems"]:
            print(f"FAILED: {problem}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
