"""Start-up cost of one-shot ``energyctl consume``, ``balance`` and ``--help`` next to the import floor.

    python -m benchmarks.cli_startup [--runs 20] [--against SCRIPT] [--json]

The floor is ``python -c "import psycopg, django.db.models"``: what any Django program that
talks to PostgreSQL pays before doing anything. ``psql -c`` running the same transaction is
shown for scale. Everything runs against a throwaway embedded PostgreSQL that is already
running and migrated; each consume uses a new key, so every run really applies. Commands
run interleaved, one round after another, so background load hits them alike. Prints
median and spread of wall time and the median CPU time per command; exit status 1 when
the median CPU time of ``energyctl consume`` is more than ``TARGET_ABOVE_FLOOR_MS`` above
the floor's (CPU time, unlike wall time, barely moves with the load of a shared machine).
``--against SCRIPT`` adds another ``energyctl`` (e.g. an install of an older commit) to the
same rounds, so that before and after are measured side by side in one run.
Profile what a command imports with ``python -X importtime -m energyctl ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What the command line may add above the import floor for one consume.
TARGET_ABOVE_FLOOR_MS = 100
ENERGY = 10**12
FLOOR = "import psycopg, django.db.models (floor)"

# The floor again, with the garbage collector treated as energyctl treats it (energyctl/startup.py):
# how much of the distance to the floor is that treatment rather than what the command leaves out.
FLOOR_COLLECTOR_PAUSED = "import gc; gc.disable(); import psycopg, django.db.models; gc.freeze()"
DJANGO_SETUP_ONLY = (
    "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'settings'; "
    "os.environ.setdefault('ENERGYCTL_LOG_LEVEL', 'WARNING'); django.setup()"
)
PSQL_TRANSACTION = """
BEGIN;
SELECT energy FROM energy_account WHERE id = 1 FOR UPDATE;
INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after, created_at)
    SELECT 1, id, 1, '{key}', energy - 1, now() FROM energy_account WHERE id = 1;
UPDATE energy_account SET energy = energy - 1 WHERE id = 1;
COMMIT;
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="Timed runs per command (default 20).")
    parser.add_argument("--against", type=Path, metavar="SCRIPT",
                        help="Another energyctl to time in the same rounds (before/after side by side).")
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON document.")
    options = parser.parse_args()
    if options.against and not options.against.is_file():
        parser.error(f"--against: no such script {options.against}")
    root = Path(tempfile.mkdtemp(prefix="energyctl-startup-"))
    env = {**os.environ, "ENERGYCTL_PGDATA": str(root / "pgdata")}
    env.pop("DATABASE_URL", None)
    try:
        figures = measure(env, options.runs, options.against)
    finally:
        subprocess.run([*energyctl(), "db", "stop"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    above = figures["energyctl consume"]["median_cpu_ms"] - figures[FLOOR]["median_cpu_ms"]
    met = above <= TARGET_ABOVE_FLOOR_MS
    balance_vs_consume = figures["energyctl balance"]["median_cpu_ms"] - figures["energyctl consume"]["median_cpu_ms"]
    if options.json:
        print(json.dumps({"runs": options.runs, "target_above_floor_ms": TARGET_ABOVE_FLOOR_MS,
                          "consume_cpu_above_floor_ms": round(above, 1), "target_met": met,
                          "balance_cpu_minus_consume_ms": round(balance_vs_consume, 1),
                          "against": str(options.against) if options.against else None,
                          "load_average": os.getloadavg()[0], "commands": figures}))
    else:
        for name, stats in figures.items():
            print(f"{name:46} median {stats['median_ms']:7.1f} ms  min {stats['min_ms']:7.1f}  "
                  f"max {stats['max_ms']:7.1f}  cpu {stats['median_cpu_ms']:7.1f} ms")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; energyctl consume is "
              f"{above:.0f} ms of CPU above the floor (target {TARGET_ABOVE_FLOOR_MS} ms): "
              f"{'met' if met else 'not met'}; balance {balance_vs_consume:+.0f} ms against consume")
    return 0 if met else 1


def measure(env: dict, runs: int, against: Path | None = None) -> dict:
    # The first consume starts the server and migrates; it is the set-up, not a sample.
    subprocess.run([*energyctl(), "consume", "--account", "1", "--amount", "1", "--key", "warm-up"],
                   env=env, capture_output=True)
    check([*energyctl(), "seed", "--accounts", "1", "--energy", str(ENERGY)], env)
    psql = psql_command(env)
    commands = {
        "python -c pass": lambda i: [sys.executable, "-c", "pass"],
        # The floor under any command that touches the database: Django and psycopg imported.
        FLOOR: lambda i: [sys.executable, "-c", "import psycopg, django.db.models"],
        "floor, collector paused as energyctl does": lambda i: [sys.executable, "-c", FLOOR_COLLECTOR_PAUSED],
        "django.setup() alone": lambda i: [sys.executable, "-c", DJANGO_SETUP_ONLY],
        **script_commands("energyctl", energyctl(), "startup"),
        **(script_commands("against: energyctl", [str(against)], "against") if against else {}),
        "psql -c (same transaction)": lambda i: [*psql, "-c", PSQL_TRANSACTION.format(key=f"psql-{i}")],
    }
    samples = {name: {"wall": [], "cpu": []} for name in commands}
    for i in range(runs):
        for name, command in commands.items():
            wall, cpu = timed(command(i), env, expect_failure="bad input" in name)
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
    return {name: _stats(s["wall"], s["cpu"]) for name, s in samples.items()}


def script_commands(label: str, script: list[str], keys: str) -> dict:
    """The timed command lines of one energyctl script; each consume a new key, so each applies."""
    return {
        f"{label} --help": lambda i: [*script, "--help"],
        f"{label} consume (bad input)": lambda i: [*script, "consume", "--account", "x", "--amount", "1",
                                                   "--key", "k"],
        f"{label} consume": lambda i: [*script, "consume", "--account", "1", "--amount", "1",
                                       "--key", f"{keys}-{i}", "--json"],
        f"{label} balance": lambda i: [*script, "balance", "--account", "1", "--json"],
    }


def timed(command: list[str], env: dict, expect_failure: bool = False) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run of ``command``."""
    before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = (time.perf_counter() - started) * 1000
    cpu = (_children_cpu() - before) * 1000
    if (done.returncode != 0) != expect_failure:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return wall, cpu


def _stats(wall: list[float], cpu: list[float]) -> dict:
    return {"median_ms": round(statistics.median(wall), 1), "min_ms": round(min(wall), 1),
            "max_ms": round(max(wall), 1), "median_cpu_ms": round(statistics.median(cpu), 1)}


def _children_cpu() -> float:
    """CPU seconds of waited-for children: unlike wall time, barely moved by other load on the machine."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def energyctl() -> list[str]:
    return [str(Path(sys.executable).parent / "energyctl")]


def psql_command(env: dict) -> list[str]:
    from energy.db.embedded import server as embedded_pg

    server = embedded_pg.running(Path(env["ENERGYCTL_PGDATA"]))
    if server is None:
        raise SystemExit("the embedded PostgreSQL did not start")
    return [str(embedded_pg.binary("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(server.socket_dir),
            "-p", str(server.port), "-U", "postgres", "-d", embedded_pg.DATABASE_NAME]


def check(command: list[str], env: dict) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")


if __name__ == "__main__":
    sys.exit(main())
