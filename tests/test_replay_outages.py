"""A replay rides out short outages, and stops with exit 75 when the database stays away.

Each test runs ``energyctl replay -`` as a real OS process against a throwaway cluster of
its own, feeds it half of the lines, waits until they are applied, does the fault, then
feeds the rest. The ledger is read back with psycopg afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from energyctl.torture.cluster import OwnCluster
from tests.support import ENERGYCTL

LINES = 400
HALF = LINES // 2
CHUNK = 20
ACCOUNTS = 4
START_ENERGY = 1_000_000
# A hang guard for a busy two-core machine, not a performance claim.
WAIT_S = 90


def line(n: int) -> str:
    return json.dumps({"account_id": 1 + n % ACCOUNTS, "amount": 1 + n % 3, "idempotency_key": f"out-{n}"}) + "\n"


@pytest.fixture(scope="module")
def own_cluster():
    own = OwnCluster()
    for args in (("migrate",), ("seed", "--accounts", str(ACCOUNTS), "--energy", str(START_ENERGY))):
        done = subprocess.run([_energyctl(), *args], env=_env(own.url), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    yield own
    own.close()


@pytest.fixture
def cluster(own_cluster):
    """The module's cluster, up, with every account back at its opening energy and no consumption."""
    own_cluster.ensure_up()
    with own_cluster.connect() as conn:
        conn.execute("TRUNCATE energy_consumption")
        conn.execute("UPDATE energy_account SET energy = opening_energy")
    return own_cluster


def _energyctl() -> str:
    return str(ENERGYCTL)


def _env(url: str) -> dict:
    """The environment a shell would give: no DJANGO_SETTINGS_MODULE (pytest-django's names the checkout's)."""
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return {**inherited, "DATABASE_URL": url, "ENERGYCTL_LOG_LEVEL": "WARNING"}


def start_replay(cluster, *options: str) -> subprocess.Popen:
    """A replay of stdin, fed the first half of the lines, which it has applied when this returns."""
    replaying = subprocess.Popen([_energyctl(), "replay", "-", "--json", "--chunk-size", str(CHUNK), *options],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=_env(cluster.url))
    replaying.stdin.write("".join(line(n) for n in range(HALF)))
    replaying.stdin.flush()
    deadline = time.monotonic() + WAIT_S
    while recorded(cluster) < HALF:
        assert time.monotonic() < deadline and replaying.poll() is None, replaying.communicate()
        time.sleep(0.05)
    return replaying


def finish(replaying: subprocess.Popen) -> tuple[dict, str]:
    replaying.stdin.write("".join(line(n) for n in range(HALF, LINES)))
    out, err = replaying.communicate(timeout=WAIT_S)
    assert "Traceback" not in err, err
    return (json.loads(out) if out.strip() else {}), err


def recorded(cluster) -> int:
    with cluster.connect() as conn:
        return conn.execute("SELECT count(*) FROM energy_consumption").fetchone()[0]


def assert_each_line_applied_exactly_once(cluster) -> None:
    with cluster.connect() as conn:
        records, keys = conn.execute(
            "SELECT count(*), count(DISTINCT idempotency_key) FROM energy_consumption").fetchone()
        off = conn.execute(
            """SELECT count(*) FROM energy_account a
               LEFT JOIN (SELECT account_id, sum(amount) AS spent FROM energy_consumption GROUP BY account_id) c
                 ON c.account_id = a.id
               WHERE a.energy <> a.opening_energy - coalesce(c.spent, 0)""").fetchone()[0]
    assert (records, keys, off) == (LINES, LINES, 0)


@pytest.mark.slow
def test_a_replay_rides_out_the_termination_of_its_connection(cluster):
    replaying = start_replay(cluster)
    with cluster.connect() as conn:
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()[0]
    assert ended == 1
    summary, err = finish(replaying)

    assert replaying.returncode == 0, err
    assert "waiting for the database" in err
    assert summary["applied"] == LINES and summary["unavailable"] == 0, summary
    assert_each_line_applied_exactly_once(cluster)


@pytest.mark.slow
def test_a_replay_waits_through_a_server_restart_and_finishes(cluster):
    replaying = waiting_on_a_stopped_server(cluster)
    assert replaying.poll() is None
    cluster.ensure_up()
    summary, err = finish_rest(replaying)

    assert replaying.returncode == 0, err
    assert "waiting for the database" in err
    assert summary["applied"] == LINES and summary["total"] == LINES, summary
    assert_each_line_applied_exactly_once(cluster)


def waiting_on_a_stopped_server(cluster) -> subprocess.Popen:
    """A replay whose first half is applied, then a chunk sent after the server stopped."""
    replaying = start_replay(cluster)
    cluster.stop()
    replaying.stdin.write("".join(line(n) for n in range(HALF, HALF + CHUNK)))
    replaying.stdin.flush()
    time.sleep(1.5)  # the replay meets the stopped server and waits
    return replaying


def finish_rest(replaying: subprocess.Popen) -> tuple[dict, str]:
    replaying.stdin.write("".join(line(n) for n in range(HALF + CHUNK, LINES)))
    out, err = replaying.communicate(timeout=WAIT_S)
    assert "Traceback" not in err, err
    return json.loads(out), err


@pytest.mark.slow
def test_without_retries_a_dead_server_stops_the_replay_at_once_with_exit_75(cluster):
    replaying = start_replay(cluster, "--retry-for", "0")
    cluster.stop()
    started = time.monotonic()
    summary, err = finish(replaying)

    assert replaying.returncode == 75, err
    assert time.monotonic() - started < 10
    # The rest of the stream was read and counted, not sent: the counts add up to the file.
    assert summary["total"] == LINES and summary["applied"] == HALF and summary["unavailable"] == LINES - HALF
    assert "Run the same command again to continue" in err
    cluster.ensure_up()
    assert recorded(cluster) == HALF


@pytest.mark.slow
def test_when_the_budget_is_spent_the_replay_stops_and_the_rerun_finishes(cluster):
    replaying = start_replay(cluster, "--retry-for", "1")
    cluster.stop()
    started = time.monotonic()
    summary, err = finish(replaying)

    assert replaying.returncode == 75, err
    assert 1 <= time.monotonic() - started < 15
    assert "waiting for the database" in err
    assert (summary["applied"], summary["unavailable"]) == (HALF, LINES - HALF), summary
    cluster.ensure_up()
    rerun = subprocess.run([_energyctl(), "replay", "-", "--json"], input="".join(line(n) for n in range(LINES)),
                           capture_output=True, text=True, env=_env(cluster.url), timeout=WAIT_S)
    assert rerun.returncode == 0, rerun.stderr
    assert (json.loads(rerun.stdout)["replayed"], json.loads(rerun.stdout)["applied"]) == (HALF, LINES - HALF)
    assert_each_line_applied_exactly_once(cluster)


@pytest.mark.slow
def test_ctrl_c_while_waiting_for_the_database_exits_130_with_the_summary(cluster):
    replaying = waiting_on_a_stopped_server(cluster)  # with up to 30 s of budget left
    replaying.send_signal(signal.SIGINT)
    out, err = replaying.communicate(timeout=WAIT_S)

    assert replaying.returncode == 130, err
    assert "Traceback" not in err and "run the same command again" in err
    assert json.loads(out)["applied"] == HALF
