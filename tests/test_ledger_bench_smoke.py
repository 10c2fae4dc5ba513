"""The ledger benchmark runs end to end on a tiny ledger, which its own audit finds consistent.

Timings are not checked here: a loaded test machine says nothing about speed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ledger_benchmark_fills_a_sound_ledger_and_prints_every_figure():
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.ledger", "--consumptions", "3000", "--accounts", "30",
                           "--runs", "1", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)

    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["consumptions"] == 3000
    for name in ("audit_seconds", "history_newest_page_ms", "history_deep_page_ms"):
        assert figures[name] >= 0 and figures[f"{name}_without_index"] >= 0, figures
