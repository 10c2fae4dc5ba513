"""Replaying JSON Lines files: each request applied exactly once, bad lines counted, never fatal."""

import json

import pytest
from typer.testing import CliRunner

from energy.application.replay import ReplayInterrupted, replay_lines
from energyctl.app import app

pytestmark = pytest.mark.django_db(transaction=True)

runner = CliRunner()


def line(account_id, amount, key) -> str:
    return json.dumps({"account_id": account_id, "amount": amount, "idempotency_key": key})


def balance(account_id: int) -> int:
    from energy.models import Account

    return Account.objects.get(pk=account_id).energy


def shell_environment(url: str) -> dict[str, str]:
    """This process's environment as a shell would pass it to ``energyctl``: the database at ``url``,
    and no DJANGO_SETTINGS_MODULE (pytest-django's names the checkout's ``settings``)."""
    import os

    return {**{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}, "DATABASE_URL": url}


def summary_of(result) -> dict:
    assert result.stdout.count("\n") == 1, result.output
    return json.loads(result.stdout)


MIXED = "\n".join(
    [
        line(1, 10, "a"),
        line(1, 10, "a"),  # the same request again: replayed
        "",
        "{not json",
        line(2, 500, "too-much"),
        line(9, 1, "nobody"),
        line(1, 11, "a"),  # key reused for another amount
        json.dumps({"account_id": 1, "amount": 1.5, "idempotency_key": "float"}),
        line(3, 20, "b"),
        "   ",
    ]
) + "\n"


def test_replay_counts_every_outcome_and_exits_6_when_a_line_failed(accounts, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(MIXED)
    result = runner.invoke(app, ["replay", str(path), "--json"])

    assert result.exit_code == 6, result.output
    summary = summary_of(result)
    assert summary.pop("seconds") >= 0
    assert summary == {"total": 8, "applied": 2, "replayed": 1, "insufficient_energy": 1, "account_not_found": 1,
                       "idempotency_key_mismatch": 1, "invalid_request": 2, "unavailable": 0}
    assert (balance(1), balance(2), balance(3)) == (90, 100, 80)


def test_replay_reports_failed_lines_with_their_numbers_on_stderr(accounts, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(MIXED)
    result = runner.invoke(app, ["replay", str(path)])

    assert "line 4: invalid_request" in result.stderr
    assert "line 7: idempotency_key_mismatch" in result.stderr
    assert "line 8: invalid_request: amount: must be an integer" in result.stderr
    assert "applied" in result.stdout and "total" in result.stdout


def test_rerunning_the_same_file_applies_nothing_twice(accounts, tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(line(1 + i % 3, 5, f"k{i}") + "\n" for i in range(30)))

    first = summary_of(runner.invoke(app, ["replay", str(path), "--json", "--chunk-size", "7"]))
    again = runner.invoke(app, ["replay", str(path), "--json"])

    assert first["applied"] == 30
    assert again.exit_code == 0, again.output
    assert summary_of(again)["replayed"] == 30 and summary_of(again)["applied"] == 0
    assert (balance(1), balance(2), balance(3)) == (50, 50, 50)


def test_replay_reads_stdin_when_the_file_is_a_dash(accounts):
    result = runner.invoke(app, ["replay", "-", "--json"], input=line(1, 25, "s1") + "\n" + line(2, 5, "s2") + "\n")

    assert result.exit_code == 0, result.output
    assert summary_of(result)["applied"] == 2
    assert balance(1) == 75


def test_a_missing_file_is_an_invalid_request(tmp_path):
    result = runner.invoke(app, ["replay", str(tmp_path / "absent.jsonl"), "--json"])

    assert result.exit_code == 2, result.output
    body = summary_of(result)
    assert body["error"] == "invalid_request" and "file" in body["fields"]


def test_an_interrupted_replay_keeps_what_was_done_and_the_rerun_finishes_it(accounts):
    def lines_then_ctrl_c():
        for i in range(10):
            yield line(1, 1, f"i{i}")
        raise KeyboardInterrupt

    with pytest.raises(ReplayInterrupted) as stopped:
        replay_lines(lines_then_ctrl_c(), chunk_size=4)

    assert stopped.value.summary.counts["applied"] == 8
    rerun = replay_lines((line(1, 1, f"i{i}") for i in range(10)), chunk_size=4)
    assert (rerun.counts["replayed"], rerun.counts["applied"]) == (8, 2)
    assert balance(1) == 90


def test_ctrl_c_exits_130_with_one_line_after_the_summary(accounts, tmp_path, monkeypatch):
    import energy.application.replay as module

    calls = []

    def stop_on_second_chunk(requests, **options):
        calls.append(len(requests))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(requests, **options)

    original = module.apply_many
    monkeypatch.setattr(module, "apply_many", stop_on_second_chunk)
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(line(1, 1, f"c{i}") + "\n" for i in range(6)))
    result = runner.invoke(app, ["replay", str(path), "--json", "--chunk-size", "3"])

    assert result.exit_code == 130, result.output
    assert summary_of(result)["applied"] == 3
    assert "run the same command again" in result.stderr
    assert balance(1) == 97


def test_replay_applies_each_chunk_before_reading_further_lines(accounts):
    balances_seen = []

    def lines():
        for i in range(4):
            yield line(1, 1, f"s{i}")
        balances_seen.append(balance(1))
        for _ in range(1000):
            yield "[]"

    summary = replay_lines(lines(), chunk_size=2)

    assert balances_seen == [96]
    assert summary.counts["applied"] == 4 and summary.counts["invalid_request"] == 1000


@pytest.mark.slow
def test_ctrl_c_on_a_real_process_stops_cleanly_and_the_rerun_applies_each_key_once(accounts):
    import signal
    import subprocess
    import time

    from energy.models import Entry
    from tests.support import ENERGYCTL, test_database_url

    requests = "".join(line(1 + i % 3, 1, f"sig{i}") + "\n" for i in range(60))
    first_half = requests[: requests.index(line(1, 1, "sig30"))]
    script = str(ENERGYCTL)
    env = shell_environment(test_database_url())
    replaying = subprocess.Popen([script, "replay", "-", "--chunk-size", "10"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    replaying.stdin.write(first_half)
    replaying.stdin.flush()
    deadline = time.monotonic() + 60
    while Entry.objects.count() < 30:
        assert time.monotonic() < deadline and replaying.poll() is None, replaying.communicate()
        time.sleep(0.05)
    replaying.send_signal(signal.SIGINT)
    out, err = replaying.communicate(timeout=30)

    assert replaying.returncode == 130, err
    assert "Traceback" not in err and "run the same command again" in err
    assert "30" in out
    rerun = subprocess.run([script, "replay", "-", "--json"], input=requests, capture_output=True, text=True,
                           env=env, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert (json.loads(rerun.stdout)["replayed"], json.loads(rerun.stdout)["applied"]) == (30, 30)
    assert Entry.objects.count() == 60 and (balance(1), balance(2), balance(3)) == (80, 80, 80)


def test_the_command_line_and_the_use_case_share_one_retry_budget_default():
    from energy.application.replay import RETRY_FOR_S
    from energyctl.commands.replay import DEFAULT_RETRY_FOR_S

    assert DEFAULT_RETRY_FOR_S == RETRY_FOR_S


def test_replay_keys_takes_the_same_retry_budget(accounts, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    path = tmp_path / "requests.jsonl"
    path.write_text(line(1, 5, "m1") + "\n")
    out = StringIO()
    call_command("replay_keys", str(path), "--json", "--retry-for", "0", stdout=out)
    assert json.loads(out.getvalue())["applied"] == 1


@pytest.mark.slow
def test_a_lock_held_past_the_budget_stops_the_replay_and_counts_the_rest_unavailable(accounts):
    """In-process, on a real held row lock: waits are reported, then the budget runs out."""
    from tests.workers import row_lock_held

    waits = []
    lines = [line(1, 1, f"held-{i}") for i in range(3)] + ["[]"] + [line(2, 1, f"after-{i}") for i in range(3)]
    with row_lock_held(account_id=1):
        summary = replay_lines(lines, chunk_size=3, retry_for=0.5, on_waiting=waits.append)

    assert summary.stopped
    assert (summary.counts["unavailable"], summary.counts["invalid_request"], summary.counts["applied"]) == (6, 1, 0)
    assert waits and waits[0].first and "lock" in waits[0].reason
    assert balance(1) == 100 and balance(2) == 100


# --- Long lines: refused by number, never held in memory ------------------------------------------

def test_read_lines_bounds_each_line_and_counts_every_byte():
    import io

    from energy.application.replay import OverlongLine, read_lines

    text = b"a" * 8 + b"\n" + b"b" * 9 + b"\n" + b"c" * 100 + b"\n" + b"\n" + b"d" * 9
    read = list(read_lines(io.BytesIO(text), limit=8))
    assert read == [b"a" * 8 + b"\n", OverlongLine(10, 8), OverlongLine(101, 8), b"\n", OverlongLine(9, 8)]
    assert sum(len(line) for line in read) == len(text)
    assert list(read_lines(io.BytesIO(b"x" * 8), limit=8)) == [b"x" * 8]


def test_a_line_over_the_bound_is_invalid_by_number_and_the_rest_goes_on(accounts, tmp_path):
    from energy.application.replay import MAX_LINE_BYTES

    path = tmp_path / "requests.jsonl"
    padded = json.dumps({"account_id": 1, "amount": 1, "idempotency_key": "at-the-bound"})
    padded = padded[:-1] + " " * (MAX_LINE_BYTES - len(padded)) + "}"
    too_long = padded[:-1] + " }"
    path.write_text("\n".join([line(1, 10, "a"), too_long, padded, line(2, 5, "b")]) + "\n")
    result = runner.invoke(app, ["replay", str(path), "--json"])

    assert result.exit_code == 6, result.output
    summary = summary_of(result)
    assert (summary["total"], summary["applied"], summary["invalid_request"]) == (4, 3, 1)
    assert f"line 2: invalid_request: body: is {MAX_LINE_BYTES + 2} bytes long" in result.stderr
    assert (balance(1), balance(2)) == (89, 95)


# Runs the command in argv[2:] and writes its peak RSS (KiB) to argv[1]. A process started
# straight from pytest would not do: Linux counts the peak of the memory it was forked from
# (pytest's) into its own, while this launcher is a fresh, small interpreter.
PEAK_RSS_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as peak:
    peak.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def replay_process(path, url: str, tmp_path) -> tuple[int, dict, str, int]:
    """``energyctl replay FILE --json`` as a process: exit code, summary, stderr and peak RSS (KiB)."""
    import subprocess
    import sys

    from tests.support import ENERGYCTL, PROCESS_TIMEOUT_S

    out, err, peak = (tmp_path / f"{path.name}.{suffix}" for suffix in ("out", "err", "peak"))
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        done = subprocess.run([sys.executable, "-c", PEAK_RSS_LAUNCHER, str(peak), str(ENERGYCTL), "replay",
                               str(path), "--json"], stdout=stdout, stderr=stderr, env=shell_environment(url),
                              timeout=PROCESS_TIMEOUT_S)
    return done.returncode, json.loads(out.read_text()), err.read_text(), int(peak.read_text())


@pytest.mark.slow
def test_a_huge_line_leaves_a_real_replays_memory_flat(accounts, tmp_path):
    from tests.support import test_database_url

    url = test_database_url()
    huge_key = 50 * 1024 * 1024
    small, huge = tmp_path / "small.jsonl", tmp_path / "huge.jsonl"
    small.write_text(line(1, 1, "s1") + "\n" + line(1, 1, "x" * 300) + "\n" + line(2, 1, "s2") + "\n")
    with open(huge, "w") as file:
        file.write(line(1, 1, "h1") + "\n")
        file.write('{"account_id": 1, "amount": 1, "idempotency_key": "')
        for _ in range(huge_key // (1024 * 1024)):
            file.write("x" * (1024 * 1024))
        file.write('"}\n' + line(2, 1, "h2") + "\n")

    small_code, small_summary, small_err, small_peak = replay_process(small, url, tmp_path)
    huge_code, huge_summary, huge_err, huge_peak = replay_process(huge, url, tmp_path)

    assert (small_code, huge_code) == (6, 6), (small_err, huge_err)
    for summary in (small_summary, huge_summary):
        assert (summary["total"], summary["applied"], summary["invalid_request"]) == (3, 2, 1), summary
    assert "line 2: invalid_request" in huge_err and "bytes long" in huge_err
    grown = huge_peak - small_peak
    print(f"peak RSS: {small_peak} KiB with a small file, {huge_peak} KiB with a 50 MiB line")
    assert grown < 20 * 1024, f"a 50 MiB line grew the replay's peak RSS by {grown} KiB"
    assert (balance(1), balance(2)) == (98, 98)
