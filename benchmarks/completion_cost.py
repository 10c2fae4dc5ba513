"""What shell completion costs a one-shot command: start-up with and without it, side by side.

    python -m benchmarks.completion_cost [--runs 30] [--json]

Runs ``energyctl --help``, ``energyctl --version`` and ``energyctl consume`` (a new key each
time, so every run applies) as fresh processes, alternating the app built with and without
Typer's completion options, against a throwaway embedded PostgreSQL. Process start-up on a
busy machine varies by tens of milliseconds, so it also times, in this process, the only work
completion adds: building the command line (the same modules are imported either way).
Prints medians and differences; asserts nothing.
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
from itertools import count
from pathlib import Path

# The console script's steps (the app built for the command named, run by Click), with the
# completion options switched by the first argument.
RUN_CLI = (
    "import sys, typer\n"
    "from energyctl.app import build_app\n"
    "completion, args = sys.argv[1] == 'with', sys.argv[2:]\n"
    "named = next((arg for arg in args if not arg.startswith('-')), None)\n"
    "command = typer.main.get_command(build_app(named, completion=completion))\n"
    "sys.exit(command.main(args, prog_name='energyctl', standalone_mode=False) or 0)\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="Timed runs per command and variant (default 30).")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="energyctl-completion-"))
    env = {**os.environ, "ENERGYCTL_PGDATA": str(root / "pgdata"), "ENERGYCTL_LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    try:
        figures = measure(env, options.runs)
    finally:
        _cli(env, "without", "db", "stop")
        shutil.rmtree(root, ignore_errors=True)
    if options.json:
        print(json.dumps({"runs": options.runs, "commands": figures}))
    else:
        for name, row in figures.items():
            print(f"{name:<22} without {row['without_ms']:8.2f} ms   with {row['with_ms']:8.2f} ms   "
                  f"difference {row['difference_ms']:+7.2f} ms")
    return 0


def measure(env: dict, runs: int) -> dict:
    _cli(env, "without", "seed", "--accounts", "1", "--energy", str(10**12))  # starts and migrates the server
    keys = count()
    commands = {
        "energyctl --help": lambda: ["--help"],
        "energyctl --version": lambda: ["--version"],
        "energyctl consume": lambda: ["consume", "--account", "1", "--amount", "1", "--key", f"c{next(keys)}"],
    }
    figures = {"building the app": _build_cost(runs * 20)}
    for name, args in commands.items():
        times = {"without": [], "with": []}
        for _ in range(runs):
            for variant in times:  # alternating, so a busy moment of the machine hits both alike
                started = time.perf_counter()
                _cli(env, variant, *args())
                times[variant].append((time.perf_counter() - started) * 1000)
        without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
        figures[name] = {"without_ms": round(without, 1), "with_ms": round(with_, 1),
                         "difference_ms": round(with_ - without, 1)}
    return figures


def _build_cost(runs: int) -> dict:
    from typer.main import get_command

    from energyctl.app import build_app

    times = {"without": [], "with": []}
    for _ in range(runs):
        for variant in times:
            started = time.perf_counter()
            get_command(build_app("consume", completion=variant == "with"))
            times[variant].append((time.perf_counter() - started) * 1000)
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    return {"without_ms": round(without, 3), "with_ms": round(with_, 3), "difference_ms": round(with_ - without, 3)}


def _cli(env: dict, variant: str, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", RUN_CLI, variant, *args], env=env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"energyctl {' '.join(args)} failed: {done.stderr[-1000:]}")


if __name__ == "__main__":
    raise SystemExit(main())
