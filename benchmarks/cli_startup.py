"""One-shot ``energyctl consume`` next to the floor of any Django-ORM tool, side by side in one run.

    python -m benchmarks.cli_startup [--runs 20] [--against SCRIPT] [--json]

The floor is a Python process that runs ``django.setup()`` with the project's settings,
connects and runs ``SELECT 1``: what any command-line tool built on the Django ORM pays
before doing anything. Both run against the same throwaway embedded PostgreSQL, already
running and migrated, alternating run by run so that a busy moment of the machine hits both
alike; each consume uses a new key, so every run really applies. Prints the median wall
time of each (and CPU time, which the machine's other load moves less), the difference and
the ratio, and exits 1 when the consume's median is more than ``TARGET_ABOVE_FLOOR_MS``
above the floor's. ``--against SCRIPT`` adds another ``energyctl`` (e.g. an install of an
older commit) to the same rounds. ``balance`` and ``--help`` are timed too, for scale.

Where the time goes: ``python -X importtime -m energyctl consume …`` for imports,
``python -m cProfile -s cumtime -m energyctl consume …`` for the rest.
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

# What the command line may add, in wall time, to the floor of any Django-ORM tool.
TARGET_ABOVE_FLOOR_MS = 100
ENERGY = 10**12
FLOOR = "floor: django.setup(), connect, SELECT 1"
FLOOR_CODE = (
    "import os, django\n"
    "os.environ['DJANGO_SETTINGS_MODULE'] = 'energy.settings'\n"
    "os.environ.setdefault('ENERGYCTL_LOG_LEVEL', 'WARNING')\n"
    "django.setup()\n"
    "from django.db import connection\n"
    "with connection.cursor() as cursor:\n"
    "    cursor.execute('SELECT 1')\n"
    "    cursor.fetchone()\n"
)
CONSUME = "energyctl consume"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="Timed runs of each command (default 20).")
    parser.add_argument("--against", type=Path, metavar="SCRIPT",
                        help="Another energyctl to time in the same rounds (before/after side by side).")
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON document.")
    options = parser.parse_args()
    if options.against and not options.against.is_file():
        parser.error(f"--against: no such script {options.against}")
    root = Path(tempfile.mkdtemp(prefix="energyctl-startup-"))
    env = {**os.environ, "ENERGYCTL_PGDATA": str(root / "pgdata")}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    # The other script gets a cluster of its own: a schema marker of another version would make
    # each of the two migrate again on every run.
    against_env = {**env, "ENERGYCTL_PGDATA": str(root / "against")}
    try:
        figures = measure(env, options.runs, options.against, against_env)
    finally:
        subprocess.run([*energyctl(), "db", "stop"], env=env, capture_output=True)
        if options.against:
            subprocess.run([str(options.against), "db", "stop"], env=against_env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    floor, consume = figures[FLOOR]["median_ms"], figures[CONSUME]["median_ms"]
    summary = {"floor_median_ms": floor, "consume_median_ms": consume,
               "difference_ms": round(consume - floor, 1), "ratio": round(consume / floor, 2),
               "target_above_floor_ms": TARGET_ABOVE_FLOOR_MS, "target_met": consume - floor <= TARGET_ABOVE_FLOOR_MS}
    if options.json:
        print(json.dumps({"runs": options.runs, **summary, "against": str(options.against or "") or None,
                          "load_average": os.getloadavg()[0], "commands": figures}))
    else:
        for name, stats in figures.items():
            print(f"{name:44} median {stats['median_ms']:7.1f} ms  min {stats['min_ms']:7.1f}  "
                  f"max {stats['max_ms']:7.1f}  cpu {stats['median_cpu_ms']:7.1f} ms")
        print(f"energyctl consume {consume:.1f} ms, floor {floor:.1f} ms: {summary['difference_ms']:+.1f} ms, "
              f"ratio {summary['ratio']:.2f} (target at most {TARGET_ABOVE_FLOOR_MS} ms above: "
              f"{'met' if summary['target_met'] else 'NOT met'}); {options.runs} runs each, load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0 if summary["target_met"] else 1


def measure(env: dict, runs: int, against: Path | None = None, against_env: dict | None = None) -> dict:
    # The first command starts the server and migrates; it is the set-up, not a sample.
    check([*energyctl(), "seed", "--accounts", "1", "--energy", str(ENERGY)], env)
    commands = {FLOOR: (lambda i: [sys.executable, "-c", FLOOR_CODE], env),
                **script_commands("energyctl", energyctl(), env, "startup")}
    if against:
        check([str(against), "seed", "--accounts", "1", "--energy", str(ENERGY)], against_env)
        commands.update(script_commands("against: energyctl", [str(against)], against_env, "against"))
    samples = {name: {"wall": [], "cpu": []} for name in commands}
    for i in range(runs):
        for name, (command, command_env) in commands.items():
            wall, cpu = timed(command(i), command_env)
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
    return {name: _stats(s["wall"], s["cpu"]) for name, s in samples.items()}


def script_commands(label: str, script: list[str], env: dict, keys: str) -> dict:
    """The timed command lines of one energyctl script, with the environment each runs in."""
    return {
        f"{label} consume": (lambda i: [*script, "consume", "--account", "1", "--amount", "1", "--key", f"{keys}-{i}",
                                        "--json"], env),
        f"{label} balance": (lambda i: [*script, "balance", "--account", "1", "--json"], env),
        f"{label} --help": (lambda i: [*script, "--help"], env),
    }


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run of ``command``."""
    before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = (time.perf_counter() - started) * 1000
    cpu = (_children_cpu() - before) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return wall, cpu


def _stats(wall: list[float], cpu: list[float]) -> dict:
    return {"median_ms": round(statistics.median(wall), 1), "min_ms": round(min(wall), 1),
            "max_ms": round(max(wall), 1), "median_cpu_ms": round(statistics.median(cpu), 1)}


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def energyctl() -> list[str]:
    return [str(Path(sys.executable).parent / "energyctl")]


def check(command: list[str], env: dict) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")


if __name__ == "__main__":
    sys.exit(main())
