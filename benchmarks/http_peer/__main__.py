"""energyctl serve next to its peer and pgbench, round by round, on the same PostgreSQL.

    python -m benchmarks.http_peer [--seconds 10] [--rounds 4] [--connections 8] [--accounts 1000]
                                   [--against CHECKOUT] [--json]

The peer is the case study's design served the conventional way (energyctl.bench.http,
PEER_ENGINE). Each round drives energyctl serve and the peer with the same wrk load (the same
Lua script, connections, duration and accounts; which goes first alternates), then pgbench
with the peer's SQL written by hand (energyctl.bench.scripts.CASE_STUDY) at as many clients.
Every slice starts on freshly reset tables, and each server first answers a short unmeasured
run (connections opened, statements prepared). ``--against CHECKOUT`` serves another source
tree of energyctl (an earlier commit, say) in the same rounds, as its own row. Printed per
round: requests/s, the server's CPU per request (/proc: the server and its workers), the
whole machine's busy CPU and load average during the slice, and energyctl serve's ratio to
the peer. Exit status 0 when every
response was 2xx and every invariant held; the target ratio is reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

TARGET_RATIO = 1.2
OURS, PEER, PGBENCH, AGAINST = "energyctl serve", "peer", "pgbench", "energyctl serve, against"
# Seconds of unmeasured load each server answers before the first round.
WARM_UP_S = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_peer", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each engine's slice (default 10)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, alternating which server goes first")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections and pgbench clients (default 8)")
    parser.add_argument("--accounts", type=int, default=1000, help="accounts picked at random (default 1000)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another energyctl source tree to serve in the same rounds (e.g. a worktree of main)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    args = parser.parse_args(argv)
    if min(args.seconds, args.rounds, args.connections, args.accounts) < 1:
        parser.error("every number must be at least 1")
    if args.against is not None and not (args.against / "energyctl" / "__main__.py").is_file():
        parser.error(f"--against {args.against}: not an energyctl source tree")
    from energyctl.bench import http as http_api

    missing = http_api.peer_unavailable()
    if missing:
        print(f"python -m benchmarks.http_peer: {missing}", file=sys.stderr)
        return 2
    report = run(seconds=args.seconds, rounds=args.rounds, connections=args.connections, accounts=args.accounts,
                 against=args.against.resolve() if args.against else None,
                 progress=None if args.json else lambda line: print(line, flush=True))
    if args.json:
        print(json.dumps(report))
    else:
        print(summary(report))
    return 0 if report["ok"] else 1


def run(*, seconds: int, rounds: int, connections: int, accounts: int, against: Path | None = None,
        progress=None) -> dict:
    from energy.setup import quiet_consume_log, setup_django

    setup_django()
    quiet_consume_log()
    from django.db import connection

    from energyctl.bench import database, pgbench, scripts
    from energyctl.bench import http as http_api

    # A database of its own, so a concurrent `energyctl bench` (which recreates <name>_bench) is left alone.
    os.environ.setdefault("ENERGYCTL_BENCH_DATABASE", f"{connection.settings_dict['NAME']}_http_peer")
    target = database.prepare()
    url = http_api.database_url(target)
    token = http_api.client_token(url, "bench-http-peer")
    script = scripts.render(scripts.CASE_STUDY, accounts)
    engines = {OURS: http_api.engine_name(), PEER: http_api.PEER_ENGINE,
               PGBENCH: f"pgbench -M {pgbench.PROTOCOL}, the case-study SQL"}
    if against:
        engines[AGAINST] = f"energyctl serve from {against}"
    report = {"seconds": seconds, "connections": connections, "accounts": accounts, "cpus": os.cpu_count(),
              "engines": engines, "target_ratio": TARGET_RATIO, "rounds": []}

    def ours(server, secs=seconds):
        database.reset(target, accounts)
        measured = http_api.measure(server, accounts=accounts, connections=connections, seconds=secs,
                                    prefix="peer-bench", token=token)
        measured["errors"] += database.check_invariants(target, measured.pop("applied"), in_flight=connections)
        return measured

    def peer(server, secs=seconds):
        http_api.peer_tables(url, "reset", accounts=accounts, energy=database.START_ENERGY)
        measured = http_api.measure(server, accounts=accounts, connections=connections, seconds=secs,
                                    prefix="peer-bench", token=token)
        measured.pop("applied")
        measured["errors"] += http_api.peer_tables(url, "check", energy=database.START_ENERGY)["problems"]
        return measured

    def reference(_server):
        database.reset(target, accounts)
        measured = pgbench.run(target, script, connections, seconds)
        measured["errors"] += database.check_invariants(target)
        return measured

    with ExitStack() as stack:
        servers = [(OURS, ours, stack.enter_context(http_api.served(url))),
                   (PEER, peer, stack.enter_context(http_api.peer_served(url)))]
        if against:
            servers.append((AGAINST, ours, stack.enter_context(http_api.served(url, against))))
        for _, measure, server in servers:
            measure(server, WARM_UP_S)
        for number in range(1, rounds + 1):
            # Each server goes first in turn, so none always follows the same one.
            shift = (number - 1) % len(servers)
            order = servers[shift:] + servers[:shift]
            row = {"round": number, "order": [name for name, _, _ in order]}
            for name, measure, server in [*order, (PGBENCH, reference, None)]:
                row[name] = _slice(measure, server)
            row["ratio"] = _ratio(row[OURS]["requests_per_s"], row[PEER]["requests_per_s"])
            if against:
                row["ratio_against"] = _ratio(row[OURS]["requests_per_s"], row[AGAINST]["requests_per_s"])
            report["rounds"].append(row)
            if progress:
                progress(round_line(row))
    ratios = [row["ratio"] for row in report["rounds"] if row["ratio"] is not None]
    report["ratios"] = ratios
    report["median_ratio"] = round(statistics.median(ratios), 2) if ratios else None
    report["target_met"] = bool(ratios) and min(ratios) >= TARGET_RATIO
    report["ok"] = all(not row[name]["errors"] for row in report["rounds"] for name in engines)
    return report


def _slice(measure, server) -> dict:
    """One engine's slice, with what the whole machine did meanwhile."""
    busy_before = _machine_cpu()
    measured = measure(server)
    busy, total = (after - before for after, before in zip(_machine_cpu(), busy_before, strict=True))
    ops, elapsed = measured["ops"], measured["elapsed"]
    # wrk's statuses as named by energyctl.bench.http: applied (201), replayed (200), http_<other>.
    refused = {name: count for name, count in measured["outcomes"].items() if name not in ("applied", "replayed")}
    if refused:
        measured["errors"].append(f"answers other than 2xx: {refused}")
    return {
        "requests": ops,
        "requests_per_s": round(ops / elapsed, 1) if elapsed else 0.0,
        # The server's CPU (HTTP rows) or pgbench's own (its row): the database's client either way.
        "client_cpu_us_per_request": round(measured["cpu_seconds"] / ops * 1e6, 1)
        if ops and measured["cpu_seconds"] is not None else None,
        "machine_busy_percent": round(100 * busy / total, 1) if total else None,
        # Everything the machine ran meanwhile (server, database, load generator, anything else) per request.
        "machine_cpu_us_per_request": round(busy / os.sysconf("SC_CLK_TCK") / ops * 1e6, 1) if ops else None,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "outcomes": measured["outcomes"],
        "errors": measured["errors"] + ([] if ops else ["no request completed"]),
    }


def _machine_cpu() -> tuple[int, int]:
    """Busy and total clock ticks of every CPU since boot (/proc/stat), idle and iowait not busy."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def _ratio(ours: float, peer: float) -> float | None:
    return round(ours / peer, 2) if peer else None


def round_line(row: dict) -> str:
    parts = []
    for name in (OURS, PEER, PGBENCH, AGAINST):
        if name not in row:
            continue
        figures = row[name]
        cpu = figures["client_cpu_us_per_request"]
        parts.append(f"{name} {figures['requests_per_s']:,.0f}/s "
                     f"({'-' if cpu is None else f'{cpu:,.0f}'} µs client CPU/req, "
                     f"machine {figures['machine_busy_percent']}% busy = {figures['machine_cpu_us_per_request']:,.0f} "
                     f"µs/req, load {figures['load_average_1m']})"
                     + (f" FAILED: {'; '.join(figures['errors'])}" if figures["errors"] else ""))
    against = f", {row['ratio_against']}x against" if "ratio_against" in row else ""
    return f"round {row['round']} ({' then '.join(row['order'])}): " + " | ".join(parts) + \
        f" | ratio {row['ratio']}x{against}"


def summary(report: dict) -> str:
    verdict = "met" if report["target_met"] else "not met"
    return (f"{' vs '.join(report['engines'].values())}; "
            f"{report['connections']} connections, {report['accounts']:,} accounts, {report['seconds']} s slices, "
            f"{report['cpus']} CPUs\n"
            f"ratio per round: {', '.join(f'{r}x' for r in report['ratios'])}; median {report['median_ratio']}x; "
            f"target {report['target_ratio']}x in every round: {verdict}\n"
            f"{'every response 2xx, every invariant kept' if report['ok'] else 'FAILED: see the rounds above'}"
            f" ({time.strftime('%Y-%m-%d %H:%M:%S')})")


if __name__ == "__main__":
    sys.exit(main())
