"""``energyctl serve`` as a real process: answers, survives stalled clients and a database restart.

Every server here is the installed script, started as a user starts it, on a port of its own.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from energyctl.torture.cluster import OwnCluster

ENERGYCTL = str(Path(sys.executable).parent / "energyctl")
# A hang guard for a busy shared machine, not a performance claim.
START_TIMEOUT_S = 60
# The answer a normal request must get while dozens of connections stall.
ANSWER_WITHIN_S = 1.0
STALLED_CONNECTIONS = 40

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(url: str, *args: str, exit_codes: list | None = None):
    port = free_port()
    server = subprocess.Popen([ENERGYCTL, "serve", "--port", str(port), *args],
                              env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, f"serve exited: {server.stderr.read()}"
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
        yield port, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server must not outlive the test
            server.kill()
            server.wait()
        if exit_codes is not None:
            exit_codes.append(server.returncode)


def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 10):
    """(status, decoded body, headers) of one request on a new connection, as the test client."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload,
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN[0]}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    finally:
        connection.close()


def consume(port: int, key: str, amount: int = 1, account: int = 1):
    return request(port, "POST", "/api/energy/consume/",
                   {"account_id": account, "amount": amount, "idempotency_key": key})


# The Bearer token of the client the requests act as, set by the cluster fixture.
TOKEN: list[str] = [""]


@pytest.fixture
def cluster():
    own = OwnCluster()
    env = {**os.environ, "DATABASE_URL": own.url}
    for command in (["migrate"], ["seed", "--accounts", "2", "--energy", "1000"],
                    ["clients", "add", "serve-test", "--all-accounts", "--json"]):
        done = subprocess.run([ENERGYCTL, *command], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    TOKEN[0] = json.loads(done.stdout)["token"]
    yield own
    own.close()


def test_serve_answers_consume_and_balance_on_kept_connections(cluster):
    exit_codes = []
    with served(cluster.url, exit_codes=exit_codes) as (port, _server):
        first = consume(port, "http-1", amount=30)
        again = consume(port, "http-1", amount=30)
        balance = request(port, "GET", "/api/energy/accounts/1/")
        with cluster.connect() as admin:
            backends = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                     " AND pid <> pg_backend_pid()").fetchone()[0]
    assert (first[0], first[1]["status"]) == (201, "applied")
    assert (again[0], again[1]["status"], again[2].get("Idempotent-Replayed")) == (200, "replayed", "true")
    assert balance[:2] == (200, {"account_id": 1, "energy": 970})
    # Connections were kept after the requests ended (one per thread that served one).
    assert backends >= 1
    assert exit_codes == [0]  # SIGTERM is a clean stop


def test_stalled_connections_do_not_delay_a_normal_request(cluster):
    with served(cluster.url) as (port, server):
        stalled = []
        try:
            for i in range(STALLED_CONNECTIONS):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                # Half a request: headers cut off, or a body shorter than announced.
                sock.sendall(b"GET /api/energy/accounts/1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " if i % 2 else
                             b"POST /api/energy/consume/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 90\r\n\r\n{\"account_id\": 1,")
                stalled.append(sock)
            time.sleep(0.5)  # let the server take them all in
            started = time.monotonic()
            status, body, _ = consume(port, "while-stalled")
            answered_in = time.monotonic() - started
            balance = request(port, "GET", "/api/energy/accounts/1/")
        finally:
            for sock in stalled:
                sock.close()
        assert server.poll() is None
    assert (status, body["status"]) == (201, "applied")
    assert answered_in < ANSWER_WITHIN_S, answered_in
    assert balance[:2] == (200, {"account_id": 1, "energy": 999})


def test_a_database_restart_costs_at_most_unavailable_answers_then_every_request_succeeds(cluster):
    with served(cluster.url) as (port, server):
        warm = [consume(port, f"warm-{i}") for i in range(8)]  # every thread now holds a connection
        cluster.crash_and_restart(downtime=0.2)
        after = [consume(port, f"after-{i}") for i in range(12)]
        cluster.stop()
        down = consume(port, "during-outage")
        cluster.ensure_up()
        retried = consume(port, "during-outage")
        following = [consume(port, f"following-{i}") for i in range(12)]
        assert server.poll() is None
    assert all(status == 201 for status, _, _ in warm), warm
    # Kept connections died with the server; each is checked before reuse and replaced.
    assert [status for status, _, _ in after] == [201] * 12, after
    assert (down[0], down[1]["error"], down[2].get("Retry-After")) == (503, "unavailable", "1"), down
    assert (retried[0], retried[1]["status"]) == (201, "applied"), retried
    assert [status for status, _, _ in following] == [201] * 12, following
    # Kept connections are not probed before each request: the dead ones were found by the
    # token lookup, the first statement of a request, and replaced there.
    assert "a kept database connection was found closed" in server.stderr.read()


def test_sigterm_lets_a_request_in_flight_finish_and_answer(cluster):
    """A service manager's stop (SIGTERM) arrives while a consume waits for a row lock: it still applies and answers."""
    answers = []
    with cluster.connect() as holder, served(cluster.url) as (port, server):
        holder.execute("BEGIN")
        holder.execute("SELECT energy FROM energy_account WHERE id = 1 FOR UPDATE")
        in_flight = threading.Thread(target=lambda: answers.append(consume(port, "in-flight", amount=7)))
        in_flight.start()
        _wait_for_lock_waiter(cluster, holder.info.backend_pid)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the server is stopping while the request still waits
        holder.execute("COMMIT")
        in_flight.join(timeout=30)
        assert server.wait(timeout=30) == 0
    assert [(status, body["status"]) for status, body, _ in answers] == [(201, "applied")], answers
    with cluster.connect() as admin:
        assert admin.execute("SELECT energy FROM energy_account WHERE id = 1").fetchone()[0] == 993


def _wait_for_lock_waiter(cluster, holder_pid: int) -> None:
    """Until another backend waits for a lock that backend ``holder_pid`` holds."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with cluster.connect() as watcher:  # autocommit: each query sees the activity as it is now
        while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                                  (holder_pid,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the request never reached the database"
            time.sleep(0.05)


def test_serve_with_several_processes_shares_the_port_and_replaces_a_dead_one(cluster):
    exit_codes = []
    with served(cluster.url, "--workers", "2", "--threads", "2", exit_codes=exit_codes) as (port, server):
        statuses = [consume(port, f"multi-{i}")[0] for i in range(10)]
        workers = _children(server.pid)
        os.kill(int(workers[0]), signal.SIGKILL)
        deadline = time.monotonic() + START_TIMEOUT_S
        # Until reaped the killed worker is still listed (a zombie): wait for it to go and a new one to come.
        while workers[0] in (replaced := _children(server.pid)) or len(replaced) < 2:
            assert time.monotonic() < deadline, replaced
            time.sleep(0.2)
        statuses += [consume(port, f"multi-after-{i}")[0] for i in range(10)]
    assert statuses == [201] * 20
    assert len(workers) == 2 and len(replaced) == 2 and workers[0] not in replaced, (workers, replaced)
    assert exit_codes == [0]


def _children(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()


def test_a_port_already_taken_is_a_one_line_configuration_error(cluster):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([ENERGYCTL, "serve", "--port", str(port)], capture_output=True, text=True,
                              env={**os.environ, "DATABASE_URL": cluster.url}, timeout=START_TIMEOUT_S)
    assert done.returncode == 78, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
