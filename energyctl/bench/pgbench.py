"""Runs pgbench with a custom script against the benchmark database and reads its per-transaction log."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import tempfile
from pathlib import Path

from energyctl.bench.database import Target

# Prepared statements: the fastest protocol pgbench has, so the ceiling is a real one.
PROTOCOL = "prepared"


def run(target: Target, script: str, clients: int, seconds: int, requests_per_tx: int = 1,
        transactions: int | None = None) -> dict:
    """Run ``script`` on ``clients`` clients for ``seconds`` (or ``transactions`` times each, when given)."""
    from energy.db.embedded.server import binary

    with tempfile.TemporaryDirectory(prefix="energyctl-pgbench-") as tmp:
        script_file = Path(tmp) / "script.sql"
        script_file.write_text(script)
        command = [
            str(binary("pgbench")), "-n", "-M", PROTOCOL, "-c", str(clients), "-j", str(clients),
            *(["-t", str(transactions)] if transactions else ["-T", str(seconds)]), "-D", "n=0", "-f", str(script_file),
            "-l", "--log-prefix", str(Path(tmp) / "tx"), "-d", target.name,
        ]
        command += _server_arguments(target.server)
        env = {**os.environ, **({"PGPASSWORD": str(target.server["password"])} if "password" in target.server else {})}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        latencies = _logged_latencies(Path(tmp), requests_per_tx)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    transactions = _number(r"number of transactions actually processed: (\d+)", done.stdout)
    failed = _number(r"number of failed transactions: (\d+)", done.stdout)
    aborted = "aborted" in done.stdout + done.stderr
    errors = []
    if done.returncode != 0 or aborted or failed:
        errors.append((done.stderr.strip() or done.stdout.strip()).splitlines()[-1] if (done.stderr or done.stdout)
                      else f"pgbench exited {done.returncode}")
    elapsed = _elapsed(done.stdout, transactions, seconds)
    return {
        "ops": transactions * requests_per_tx,
        "elapsed": elapsed,
        "cpu_seconds": cpu,
        "latencies": latencies,
        "outcomes": {},
        "errors": errors,
    }


def _server_arguments(server: dict) -> list[str]:
    args = []
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if server.get(key):
            args += [flag, str(server[key])]
    return args


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def _elapsed(stdout: str, transactions: int, seconds: int) -> float:
    """pgbench's own rate excludes connection time; turn it back into the seconds it measured."""
    tps = re.search(r"tps = ([0-9.]+)", stdout)
    if tps and float(tps.group(1)) > 0:
        return transactions / float(tps.group(1))
    return float(seconds)


def _logged_latencies(folder: Path, requests_per_tx: int) -> list[float]:
    # Log line: client_id transaction_no latency_us script_no epoch_s epoch_us [...]
    latencies = []
    for log in folder.glob("tx.*"):
        with log.open() as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]) / 1e6 / requests_per_tx)
    latencies.sort()
    return latencies
