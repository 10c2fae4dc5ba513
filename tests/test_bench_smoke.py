"""The benchmark runs end to end on a tiny budget: its JSON has the promised shape and no run broke an invariant.

Timings are not checked here: a loaded test machine says nothing about speed.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ["single", "hot", "spread", "storm", "bulk", "holds", "http", "http-hot", "replay", "replay-hot"]
REPLAY_LINES = 600
ROW_KEYS = {"engine", "processes", "ops", "ops_per_s", "p50_ms", "p99_ms", "cpu_us_per_op", "ratio",
            "outcomes", "invariants_ok", "problems", "ok"}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def shell_environment() -> dict[str, str]:
    """This process's environment as a user's shell has it: without pytest's DJANGO_SETTINGS_MODULE, so the
    processes a benchmark starts (energyctl, the peer under gunicorn) each pick their own settings."""
    return {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}


def run(*command, env=None):
    done = subprocess.run([*command, "--json", "--seconds", "1", "--processes", "2", "--replay-lines",
                           str(REPLAY_LINES)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=env or shell_environment())
    assert done.stdout.strip(), done.stderr
    return done, json.loads(done.stdout)


def test_benchmark_runs_every_workload_and_keeps_every_invariant():
    done, report = run(sys.executable, "-m", "energyctl.bench.report")
    assert done.returncode == 0, (done.stderr, report)
    assert report["ok"] is True
    assert report["pgbench_protocol"] == "prepared"
    assert report["database"].endswith("_bench")
    assert [w["name"] for w in report["workloads"]] == WORKLOADS
    for workload in report["workloads"]:
        assert workload["rows"][0]["engine"].startswith("energyctl"), workload
        reference = [row for row in workload["rows"] if row["engine"] == workload["reference"]]
        assert len(reference) == 1 and reference[0]["engine"].startswith("pgbench"), workload
        assert reference[0]["ratio"] == 1.0
        for row in workload["rows"]:
            assert set(row) == ROW_KEYS, row
            assert row["ok"] and row["invariants_ok"] and row["problems"] == [], row
            assert row["ops"] > 0 and row["ops_per_s"] > 0, row
            assert row["p50_ms"] <= row["p99_ms"], row
    hot = next(w for w in report["workloads"] if w["name"] == "hot")
    assert [r["engine"] for r in hot["rows"]][1:] == ["pgbench case-study SQL", "pgbench one-statement CTE"]
    storm = next(w for w in report["workloads"] if w["name"] == "storm")
    assert storm["rows"][0]["outcomes"].get("replayed", 0) > 0, storm
    for name in ("http", "http-hot"):
        http = next(w for w in report["workloads"] if w["name"] == name)
        assert http["rows"][0]["engine"].startswith("energyctl serve"), http
        assert set(http["rows"][0]["outcomes"]) == {"applied"}, http
        assert http["rows"][0]["cpu_us_per_op"] > 0, http  # the server's CPU, read from /proc
    for name in ("replay", "replay-hot"):
        replay = next(w for w in report["workloads"] if w["name"] == name)
        first, again = replay["rows"][0], replay["rows"][1]
        assert (first["ops"], first["outcomes"]) == (REPLAY_LINES, {"applied": REPLAY_LINES}), replay
        assert (again["ops"], again["outcomes"]) == (REPLAY_LINES, {"replayed": REPLAY_LINES}), replay


def test_http_bench_without_wrk_uses_the_built_in_client_and_says_so():
    import shutil

    if shutil.which("wrk") is None:
        path = os.environ.get("PATH", "")
    else:
        path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                               if not (Path(d) / "wrk").exists())
    energyctl = Path(sys.executable).with_name("energyctl")
    done, report = run(str(energyctl), "bench", "--only", "http-hot", env={**shell_environment(), "PATH": path})
    assert done.returncode == 0, (done.stderr, report)
    row = report["workloads"][0]["rows"][0]
    assert "built-in client (wrk not on PATH)" in row["engine"] and report["http_client"] == row["engine"]
    assert row["ok"] and set(row["outcomes"]) == {"applied"}, row


def test_cli_bench_command_runs_one_workload():
    energyctl = Path(sys.executable).with_name("energyctl")
    done, report = run(str(energyctl), "bench", "--only", "single")
    assert done.returncode == 0, (done.stderr, report)
    assert [w["name"] for w in report["workloads"]] == ["single"]
    assert report["workloads"][0]["rows"][0]["outcomes"].keys() == {"applied"}


def test_unknown_workload_is_a_usage_error():
    energyctl = Path(sys.executable).with_name("energyctl")
    done = subprocess.run([str(energyctl), "bench", "--only", "nope"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=shell_environment())
    assert done.returncode == 2, done.stderr
    assert "nope" in done.stderr


def test_unknown_workload_with_json_is_one_error_document_on_stdout():
    energyctl = Path(sys.executable).with_name("energyctl")
    done = subprocess.run([str(energyctl), "bench", "--only", "nope", "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=shell_environment())
    assert done.returncode == 2, done.stderr
    document = json.loads(done.stdout)
    assert (document["status"], document["error"]) == ("error", "invalid_request"), document
    assert "nope" in document["detail"]


def test_cli_startup_times_another_script_in_the_same_rounds():
    script = str(Path(sys.executable).parent / "energyctl")
    command = [sys.executable, "-m", "benchmarks.cli_startup", "--runs", "1", "--against", script, "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=shell_environment())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    commands = report["commands"]
    ours = {name for name in commands if name.startswith("energyctl ")}
    assert {"energyctl consume", "energyctl balance", "energyctl --help"} <= ours, commands
    # Every energyctl command is timed for the other script too, under the same name.
    assert {f"against: {name}" for name in ours} <= set(commands), commands
    assert all(figures["median_cpu_ms"] > 0 for figures in commands.values()), commands
    assert isinstance(report["target_met"], bool) and report["against"] == script


def test_http_peer_benchmark_prints_each_round_with_every_answer_2xx():
    """energyctl serve, the case-study peer under gunicorn and pgbench, round by round, with the ratio of each."""
    if importlib.util.find_spec("gunicorn") is None:
        pytest.skip("the peer needs gunicorn: pip install -e '.[test,bench]'")
    command = [sys.executable, "-m", "benchmarks.http_peer", "--seconds", "1", "--rounds", "2", "--connections", "2",
               "--accounts", "20", "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=shell_environment())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["engines"]) == {"energyctl serve", "peer", "pgbench"}, report["engines"]
    assert [row["round"] for row in report["rounds"]] == [1, 2]
    # Which server goes first alternates.
    assert [row["order"] for row in report["rounds"]] == [["energyctl serve", "peer"], ["peer", "energyctl serve"]]
    for row in report["rounds"]:
        for name in ("energyctl serve", "peer", "pgbench"):
            figures = row[name]
            assert figures["requests"] > 0 and figures["requests_per_s"] > 0, (name, figures)
            assert figures["errors"] == [], (name, figures)
            assert 0 <= figures["machine_busy_percent"] <= 100, (name, figures)
        for name in ("energyctl serve", "peer"):
            # Every answer was 201: a new key each request, on accounts rich enough for the whole run.
            assert set(row[name]["outcomes"]) == {"applied"}, (name, row[name]["outcomes"])
            assert row[name]["client_cpu_us_per_request"] > 0, (name, row[name])
        assert row["ratio"] == round(row["energyctl serve"]["requests_per_s"] / row["peer"]["requests_per_s"], 2)
    assert report["ratios"] == [row["ratio"] for row in report["rounds"]]
    assert report["ok"] is True and isinstance(report["target_met"], bool)


def hold_pairs_effect(conn, account_id: int) -> tuple:
    """What hold-then-capture pairs left on one account: its balances, and its entries in chain order
    with each capture's hold by position; ids, keys and clock readings aside, since those differ by run."""
    account = conn.execute("SELECT energy, held, last_seq, opening_energy FROM energy_account WHERE id = %s",
                           [account_id]).fetchone()
    entries = conn.execute(
        """SELECT e.seq, e.kind, e.client_id, e.amount, e.balance_after, e.held_after, e.state, held.seq,
                  e.idempotency_key IS NULL, e.expires_at - e.created_at
           FROM energy_consumption e LEFT JOIN energy_consumption held ON held.id = e.target_id
           WHERE e.account_id = %s ORDER BY e.seq""", [account_id]).fetchall()
    return account, entries


def test_hold_then_capture_script_leaves_what_the_use_cases_leave():
    """The holds workload's pgbench script is the same work as hold() then capture(): same rows, same balances."""
    from django.db import connection

    from energy.application.audit import audit_ledger
    from energy.application.holds import capture, hold
    from energy.models import Account
    from energyctl.bench import pgbench, scripts
    from energyctl.bench.database import Target
    from tests.support import test_database_name

    pairs = 3
    for account_id in (1, 2):
        Account.objects.create(id=account_id, energy=1000, opening_energy=1000)
    for n in range(1, pairs + 1):
        hold(account_id=2, amount=scripts.HOLD_AMOUNT, idempotency_key=f"use-case-{n}")
        capture(idempotency_key=f"use-case-{n}", amount=scripts.CAPTURE_AMOUNT)
    params = connection.get_connection_params()
    target = Target(name=test_database_name(),
                    server={key: params[key] for key in ("host", "port", "user", "password") if params.get(key)})
    ran = pgbench.run(target, scripts.render(scripts.HOLD_CAPTURE, 1), 1, 0, transactions=pairs)
    assert (ran["errors"], ran["ops"]) == ([], pairs), ran
    with target.connect() as conn:
        by_script, by_use_cases = hold_pairs_effect(conn, 1), hold_pairs_effect(conn, 2)
    assert by_script == by_use_cases
    assert by_use_cases[0] == (1000 - pairs * scripts.CAPTURE_AMOUNT, 0, 2 * pairs, 1000), by_use_cases
    assert audit_ledger().violations == []


def test_cli_bench_holds_reports_hold_then_capture_next_to_pgbench_with_the_ledger_audited():
    energyctl = Path(sys.executable).with_name("energyctl")
    done, report = run(str(energyctl), "bench", "--only", "holds")
    assert done.returncode == 0, (done.stderr, report)
    assert report["ok"] is True
    [workload] = report["workloads"]
    assert workload["name"] == "holds" and workload["reference"] == "pgbench hold then capture SQL", workload
    ours, reference = workload["rows"]
    assert ours["engine"] == "energyctl hold + capture" and reference["engine"] == workload["reference"], workload
    for row in (ours, reference):
        assert set(row) == ROW_KEYS, row
        assert row["ok"] and row["invariants_ok"] and row["problems"] == [] and row["ops"] > 0, row
    # Every pair's capture answered applied, and the audit found every pair recorded once.
    assert ours["outcomes"] == {"applied": ours["ops"]}, ours
