"""``energyctl serve`` as a real process: answers, survives stalled clients and a database restart.

Every server here is the installed script, started as a user starts it, on a port of its own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from energyctl.http_server import IDLE_TIMEOUT_S
from energyctl.torture.cluster import OwnCluster
from tests.support import ENERGYCTL, energyctl, free_port, test_database_url

# A hang guard for a busy shared machine, not a performance claim.
START_TIMEOUT_S = 60
STALLED_CONNECTIONS = 40

pytestmark = pytest.mark.slow


class Log:
    """A server's stderr, in a file: read at any time, and never a full pipe that blocks the server.

    Once the server has stopped, the file is gone and ``read()`` gives what it held.
    """

    def __init__(self, path: Path):
        self.path, self.kept = path, None

    def read(self) -> str:
        return self.kept if self.kept is not None else self.path.read_text(errors="replace")

    def close(self) -> None:
        self.kept = self.read()
        self.path.unlink()


@contextmanager
def served(url: str, *args: str, exit_codes: list | None = None, env: dict | None = None):
    port = free_port()
    # As a shell starts it: pytest-django's DJANGO_SETTINGS_MODULE is the checkout's, not the installed tool's.
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    with tempfile.NamedTemporaryFile(prefix="energyctl-serve-", suffix=".log", delete=False) as log_file:
        log_path = Path(log_file.name)
        server = subprocess.Popen([ENERGYCTL, "serve", "--port", str(port), *args],
                                  env={**environment, "DATABASE_URL": url, **(env or {})}, stdout=subprocess.DEVNULL,
                                  stderr=log_file)
    server.stderr = Log(log_path)
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
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server must not outlive the test
            server.kill()
            server.wait()
        if exit_codes is not None:
            exit_codes.append(server.returncode)
        server.stderr.close()


def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = IDLE_TIMEOUT_S / 2):
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
    for command in (["migrate"], ["seed", "--accounts", "2", "--energy", "1000"],
                    ["clients", "add", "serve-test", "--all-accounts", "--json"]):
        done = energyctl(*command, url=own.url)
        assert done.returncode == 0, done.stderr
    TOKEN[0] = done.json["token"]
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
    assert balance[:2] == (200, {"account_id": 1, "energy": 970, "held": 0})
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
            # Accepted after every stalled one (the listen queue is first in, first out), and answered
            # while they all stay open: they are closed only after IDLE_TIMEOUT_S, longer than this waits.
            status, body, _ = consume(port, "while-stalled")
            balance = request(port, "GET", "/api/energy/accounts/1/")
        finally:
            for sock in stalled:
                sock.close()
        assert server.poll() is None
    assert (status, body["status"]) == (201, "applied")
    assert balance[:2] == (200, {"account_id": 1, "energy": 999, "held": 0})


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
    # The answer names no database detail; the server's log gives the reason under the answer's error id.
    error_id = re.fullmatch(r"The service cannot answer right now; .* Error id: ([0-9a-f]{12})\.",
                            down[1]["detail"]).group(1)
    database_details = (str(cluster.info.port), str(cluster.info.socket_dir), "psycopg", "connect")
    assert not any(part in down[1]["detail"] for part in database_details), down
    assert re.search(rf"unavailable \(error id {error_id}\) on POST /api/energy/consume/: .+", server.stderr.read())
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
        done = energyctl("serve", "--port", str(port), url=cluster.url)
    assert done.returncode == 78, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


# --- The edges, on the suite's database: one server for the tests below ------------------------------

EDGE_ENV = {"ENERGYCTL_TRUSTED_PROXY": "127.0.0.1"}


@pytest.fixture(scope="module")
def edge(django_db_setup, django_db_blocker):
    """(port, process) of one ``energyctl serve`` on the suite's database, trusting X-Forwarded-Proto."""
    with django_db_blocker.unblock():
        url = test_database_url()
    with served(url, "--workers", "2", env=EDGE_ENV) as running:
        yield running


@pytest.fixture
def shop(transactional_db):
    """Account 1 with 100 energy; the token of client ``shop``, allowed every account."""
    from energy.application.clients import add_client
    from energy.models import Account

    Account.objects.create(id=1, energy=100, opening_energy=100)
    return add_client(name="shop", accounts=None).token


def call(port: int, method: str, path: str, body: dict | None = None, headers: list | None = None):
    """(status, headers, parsed body) of one request; header values may be raw bytes."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        raw = json.dumps(body).encode() if body is not None else b""
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in [*(headers or []), ("Content-Type", "application/json"), ("Content-Length", str(len(raw)))]:
            connection.putheader(name, value)
        connection.endheaders(raw)
        response = connection.getresponse()
        content = response.read()
        return response.status, response.headers, json.loads(content) if content else None
    finally:
        connection.close()


def raw_request(port: int, request: bytes) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of a request sent byte for byte, as no client library would."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.headers.get("Content-Type", ""), response.read()


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


@pytest.mark.django_db(transaction=True)
def test_one_key_however_it_arrives_names_one_record(edge, shop, tmp_path):
    from energy.models import Entry

    port, _ = edge
    body = {"account_id": 1, "amount": 30}
    first = call(port, "POST", "/api/energy/consume/", {**body, "idempotency_key": "abc"}, [bearer(shop)])
    assert first[0] == 201, first
    spellings = {
        "bare header": call(port, "POST", "/api/energy/consume/", body, [bearer(shop), ("Idempotency-Key", "abc")]),
        "quoted header": call(port, "POST", "/api/energy/consume/", body,
                              [bearer(shop), ("Idempotency-Key", '"abc"')]),
        "body and header": call(port, "POST", "/api/energy/consume/", {**body, "idempotency_key": "abc"},
                                [bearer(shop), ("Idempotency-Key", '"abc"')]),
    }
    for spelling, (status, headers, answer) in spellings.items():
        assert (status, headers["Idempotent-Replayed"], answer) == (200, "true", {**first[2], "status": "replayed"}), \
            spelling
    looked_up = call(port, "GET", "/api/energy/consumptions/abc/", headers=[bearer(shop)])
    assert looked_up[2]["consumption_id"] == first[2]["consumption_id"]
    cli = energyctl("consume", "--account", "1", "--amount", "30", "--key", "abc", "--client", "shop", "--json",
                    url=test_database_url())
    assert (cli.returncode, cli.json["status"], cli.json["consumption_id"]) == (0, "replayed",
                                                                               first[2]["consumption_id"]), cli
    shown = energyctl("show", "--key", "abc", "--client", "shop", "--json", url=test_database_url())
    assert (shown.returncode, shown.json["consumption_id"]) == (0, first[2]["consumption_id"]), shown
    replay_file = tmp_path / "requests.jsonl"
    replay_file.write_text(json.dumps({**body, "idempotency_key": "abc"}) + "\n")
    replayed = energyctl("replay", str(replay_file), "--client", "shop", "--json", url=test_database_url())
    assert (replayed.returncode, replayed.json["replayed"], replayed.json["applied"]) == (0, 1, 0), replayed
    assert Entry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_quoted_header_unescapes_to_the_key_the_body_and_the_command_line_spell(edge, shop):
    from energy.models import Entry

    port, _ = edge
    key = 'say "hi" \\ bye'
    body = {"account_id": 1, "amount": 5}
    quoted = r'"say \"hi\" \\ bye"'
    first = call(port, "POST", "/api/energy/consume/", body, [bearer(shop), ("Idempotency-Key", quoted)])
    again = call(port, "POST", "/api/energy/consume/", {**body, "idempotency_key": key}, [bearer(shop)])
    cli = energyctl("consume", "--account", "1", "--amount", "5", "--key", key, "--client", "shop", "--json",
                    url=test_database_url())
    assert (first[0], first[2]["idempotency_key"]) == (201, key), first
    assert (again[0], again[2]["consumption_id"]) == (200, first[2]["consumption_id"]), again
    assert (cli.json["status"], cli.json["consumption_id"]) == ("replayed", first[2]["consumption_id"]), cli
    assert list(Entry.objects.values_list("idempotency_key", flat=True)) == [key]


@pytest.mark.django_db(transaction=True)
def test_a_key_header_beyond_ascii_is_refused_and_stored_in_no_spelling(edge, shop):
    from energy.models import Entry

    port, _ = edge
    body = {"account_id": 1, "amount": 5}
    status, headers, refused = call(port, "POST", "/api/energy/consume/", body,
                                    [bearer(shop), ("Idempotency-Key", "café".encode())])
    assert (status, headers["Content-Type"], refused["error"]) == (400, "application/json", "invalid_request")
    assert "JSON body" in refused["fields"]["Idempotency-Key"], refused
    assert not Entry.objects.exists()
    applied = call(port, "POST", "/api/energy/consume/", {**body, "idempotency_key": "café"}, [bearer(shop)])
    assert applied[0] == 201, applied
    shown = energyctl("show", "--key", "café", "--client", "shop", "--json", url=test_database_url())
    assert shown.json["consumption_id"] == applied[2]["consumption_id"], shown
    assert list(Entry.objects.values_list("idempotency_key", flat=True)) == ["café"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /no/such/path HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 404),
    (b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", 400),
    (b"DELETE /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 405),
    (b"GET /api/schema/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nConnection: close\r\n\r\n", 406),
    (b"POST /api/energy/consume/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: 2000000\r\nConnection: close\r\n\r\n", 413),
    (b"POST /api/energy/consume/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: 70000\r\nConnection: close\r\n\r\n" + b" " * 70000, 413),
    (b"POST /api/energy/consume/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
     b"Content-Length: 3\r\nConnection: close\r\n\r\nx=1", 415),
    (b"GET /api/energy/consumptions/a%0Ab/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 400),
], ids=["404", "bad-host", "405", "406", "413-server", "413-django", "415", "newline-key"])
def test_every_refusal_over_http_is_the_contracts_json_error(edge, shop, request_bytes, status):
    port, _ = edge
    request_bytes = request_bytes.replace(b"Connection: close", f"Authorization: Bearer {shop}\r\nConnection: close"
                                          .encode(), 1)
    got, content_type, body = raw_request(port, request_bytes)
    assert (got, content_type) == (status, "application/json"), body
    document = json.loads(body)
    assert document["status"] == "error" and {"error", "detail"} <= set(document), document


def test_access_log_lines_escape_what_the_caller_sent(edge):
    port, server = edge
    # The path arrives percent-decoded; a header value may carry bytes beyond ASCII (NEL, 0x85, among them).
    raw_request(port, b"GET /healthz%0d%0aFORGED-LINE%20INFO%1b[2J HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"User-Agent: agent\x85FORGED-AGENT \"quoted\"\r\nConnection: close\r\n\r\n")
    raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    log = server.stderr.read()
    lines = log.splitlines()
    assert not [line for line in lines if line.startswith("FORGED")], log[-3000:]
    [forged] = [line for line in lines if "FORGED-LINE" in line] or [log[-3000:]]
    assert '"GET /healthz\\x0d\\x0aFORGED-LINE INFO\\x1b[2J HTTP/1.1" 404' in forged, forged
    assert '"agent\\x85FORGED-AGENT \\x22quoted\\x22"' in forged, forged
    # A bad Host is logged with why it was refused.
    assert re.search(r'"GET /healthz HTTP/1\.1" 400 .*refused: Host .evil\.example. is not in ENERGYCTL_ALLOWED_HOSTS',
                     log), log[-3000:]


@pytest.mark.django_db(transaction=True)
def test_the_next_link_keeps_https_behind_a_trusted_proxy(edge, shop):
    from energy.application.consume import consume
    from energy.models import Client

    port, _ = edge
    for n in range(3):
        consume(account_id=1, amount=1, idempotency_key=f"page-{n}", client_id=Client.objects.get(name="shop").id)
    path = "/api/energy/accounts/1/consumptions/?limit=1"
    behind = call(port, "GET", path, headers=[bearer(shop), ("X-Forwarded-Proto", "https")])
    direct = call(port, "GET", path, headers=[bearer(shop)])
    assert behind[2]["next"].startswith(f"https://127.0.0.1:{port}/api/energy/accounts/1/consumptions/?"), behind
    assert direct[2]["next"].startswith(f"http://127.0.0.1:{port}/"), direct
    # By default no one is trusted: the same header from the same peer changes nothing.
    with served(test_database_url(), "--workers", "1") as (untrusting, _):
        claimed = call(untrusting, "GET", path, headers=[bearer(shop), ("X-Forwarded-Proto", "https")])
    assert claimed[2]["next"].startswith(f"http://127.0.0.1:{untrusting}/"), claimed


def test_a_trusted_proxy_that_is_not_an_address_is_refused_naming_the_setting():
    done = energyctl("serve", "--port", str(free_port()), url="postgresql://x@127.0.0.1:1/x",
                     env={"ENERGYCTL_TRUSTED_PROXY": "proxy.internal"})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "ENERGYCTL_TRUSTED_PROXY" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])  # noqa: S104 - refused
def test_debug_mode_is_refused_off_loopback(host):
    done = energyctl("serve", "--debug", "--host", host, "--port", str(free_port()), url="postgresql://x@127.0.0.1:1/x")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "loopback" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.django_db(transaction=True)
def test_workers_stop_when_the_supervisor_is_killed(shop):
    with served(test_database_url(), "--workers", "2") as (port, server):
        # The port is bound before the workers are forked: wait until both are there.
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(workers := [int(pid) for pid in _children(server.pid)]) < 2:
            assert server.poll() is None and time.monotonic() < deadline, (workers, server.stderr.read())
            time.sleep(0.05)
        assert call(port, "GET", "/healthz")[0] == 200
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        deadline = time.monotonic() + START_TIMEOUT_S
        while alive := [pid for pid in workers if _running(pid)]:
            assert time.monotonic() < deadline, f"workers {alive} outlived their supervisor"
            time.sleep(0.05)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
