"""The energyctl command line, in process: every command, every exit code, JSON and human output."""

import json

import pytest
from typer.testing import CliRunner

from energyctl.app import app
from energyctl.output import EXIT_CODES

pytestmark = pytest.mark.django_db(transaction=True)

runner = CliRunner()


def invoke(*args, **kwargs):
    return runner.invoke(app, list(args), **kwargs)


def one_json_document(result) -> dict:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.output
    return json.loads(lines[0])


@pytest.fixture
def accounts():
    from energy.application.accounts import seed_accounts

    seed_accounts(count=2, energy=100)


def test_consume_applies_and_prints_the_contract_result(accounts):
    result = invoke("consume", "--account", "1", "--amount", "30", "--key", "k1", "--json")

    assert result.exit_code == 0, result.output
    body = one_json_document(result)
    assert body["status"] == "applied"
    assert (body["account_id"], body["amount"], body["idempotency_key"], body["balance_after"]) == (1, 30, "k1", 70)
    assert set(body) == {"status", "consumption_id", "account_id", "amount", "idempotency_key", "balance_after",
                         "created_at"}


def test_consume_retry_is_replayed_with_the_original_result(accounts):
    first = one_json_document(invoke("consume", "--account", "1", "--amount", "30", "--key", "k1", "--json"))
    invoke("consume", "--account", "1", "--amount", "50", "--key", "k2")
    retry = invoke("consume", "--account", "1", "--amount", "30", "--key", "k1", "--json")

    assert retry.exit_code == 0, retry.output
    assert one_json_document(retry) == {**first, "status": "replayed"}


def test_consume_prints_a_table_for_people(accounts):
    result = invoke("consume", "--account", "1", "--amount", "30", "--key", "k1")

    assert result.exit_code == 0, result.output
    assert "applied" in result.stdout and "70" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args, outcome",
    [
        (("--account", "1", "--amount", "101", "--key", "big"), "insufficient_energy"),
        (("--account", "9", "--amount", "1", "--key", "nobody"), "account_not_found"),
        (("--account", "1", "--amount", "0", "--key", "zero"), "invalid_request"),
        (("--account", "1", "--amount", "1.5", "--key", "float"), "invalid_request"),
        (("--account", "1", "--amount", "99999999999999999999", "--key", "huge"), "invalid_request"),
        (("--account", "1", "--amount", "1", "--key", ""), "invalid_request"),
        (("--account", "1", "--amount", "1", "--key", "nul\x00"), "invalid_request"),
    ],
)
def test_each_failed_outcome_has_its_exit_code_and_one_json_error(accounts, args, outcome):
    result = invoke("consume", *args, "--json")

    assert result.exit_code == EXIT_CODES[outcome], result.output
    body = one_json_document(result)
    assert body["status"] == "error" and body["error"] == outcome, body
    assert body["detail"]


def test_key_reused_for_another_amount_exits_5(accounts):
    invoke("consume", "--account", "1", "--amount", "30", "--key", "k1")
    result = invoke("consume", "--account", "1", "--amount", "31", "--key", "k1")

    assert result.exit_code == 5, result.output
    assert "idempotency_key_mismatch" in result.stderr
    assert result.stdout == ""


def test_invalid_request_names_each_field(accounts):
    body = one_json_document(invoke("consume", "--account", "x", "--amount", "-3", "--key", "k", "--json"))

    assert set(body["fields"]) == {"account_id", "amount"}


def test_errors_go_to_stderr_for_people(accounts):
    result = invoke("consume", "--account", "1", "--amount", "500", "--key", "k1")

    assert result.exit_code == 3
    assert result.stdout == ""
    assert "insufficient_energy" in result.stderr and "100" in result.stderr


def test_balance_shows_energy_and_exits_4_when_missing(accounts):
    invoke("consume", "--account", "1", "--amount", "30", "--key", "k1")

    assert one_json_document(invoke("balance", "--account", "1", "--json")) == {"account_id": 1, "energy": 70}
    assert "70" in invoke("balance", "--account", "1").stdout
    missing = invoke("balance", "--account", "3", "--json")
    assert missing.exit_code == 4, missing.output
    assert one_json_document(missing)["error"] == "account_not_found"
    assert invoke("balance", "--account", "-1").exit_code == 2


def test_seed_creates_missing_accounts_and_leaves_existing_ones(accounts):
    invoke("consume", "--account", "1", "--amount", "30", "--key", "k1")
    result = invoke("seed", "--accounts", "4", "--energy", "50", "--json")

    assert result.exit_code == 0, result.output
    assert one_json_document(result) == {"accounts": 4, "created": 2, "existing": 2, "energy": 50}
    assert one_json_document(invoke("balance", "--account", "1", "--json"))["energy"] == 70
    assert one_json_document(invoke("balance", "--account", "4", "--json"))["energy"] == 50


def test_seed_refuses_nonsense_with_exit_2():
    result = invoke("seed", "--accounts", "0", "--energy", "-5", "--json")

    assert result.exit_code == 2, result.output
    assert set(one_json_document(result)["fields"]) == {"accounts", "energy"}


def test_usage_error_is_one_line_on_stderr_without_traceback():
    result = invoke("consume", "--acount", "1")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--acount" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_with_json_still_prints_one_json_document():
    result = invoke("seed", "--accounts", "many", "--energy", "1", "--json")

    assert result.exit_code == 2
    assert one_json_document(result)["error"] == "invalid_request"


def test_unexpected_failure_is_one_redacted_line_and_exit_1(accounts, monkeypatch):
    from energy.application import accounts as use_cases

    def broken(**kwargs):
        raise RuntimeError("server said: password=hunter2 is wrong")

    monkeypatch.setattr(use_cases, "get_balance", broken)
    result = invoke("balance", "--account", "1")
    as_json = invoke("balance", "--account", "1", "--json")

    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "RuntimeError" in result.stderr and "hunter2" not in result.stderr
    assert as_json.exit_code == 1
    assert one_json_document(as_json)["error"] == "internal_error" and "hunter2" not in as_json.stdout


def test_every_command_has_help_with_an_example():
    from typer.main import get_command

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, command in walk(get_command(app), []):
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert command.help or command.short_help, path
        if path and not getattr(command, "commands", None):
            assert "Example" in result.stdout, path


def test_only_the_module_of_the_requested_command_is_loaded():
    from typer.main import get_command

    from energyctl.app import _requested_command, build_app

    assert _requested_command(["--database-url", "sqlite:///x", "balance", "--account", "1"]) == "balance"
    assert _requested_command(["--help"]) is None
    assert set(get_command(build_app("balance")).commands) == {"consume", "balance"}


def test_a_command_module_that_does_not_exist_yet_is_skipped(monkeypatch):
    from typer.main import get_command

    from energyctl import app as module

    monkeypatch.setitem(module.OPTIONAL_COMMANDS, "ghost", "energyctl.ghost_cmd")

    assert "ghost" not in get_command(module.build_app()).commands
    assert "consume" in get_command(module.build_app()).commands


def test_db_status_names_the_embedded_server(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    facts = one_json_document(invoke("db", "status", "--json"))

    assert facts["database"] == "embedded"
    assert facts["running"] is True and facts["pid"] > 0


def test_db_status_never_prints_a_password():
    # A process of its own, so the URL given here is the one used, whatever the suite runs on.
    port = closed_port()
    env = {"DATABASE_URL": f"postgresql://bob:hunter2@127.0.0.1:{port}/energy", "ENERGYCTL_CONNECT_TIMEOUT": "2"}
    result = energyctl("db", "status", env=env)
    as_json = energyctl("db", "status", "--json", env=env)
    facts = json.loads(as_json.stdout)

    assert result.returncode == 0 and as_json.returncode == 0, result.stderr + as_json.stderr
    assert "hunter2" not in result.stdout + result.stderr + as_json.stdout + as_json.stderr
    assert facts["url"] == f"postgresql://bob:***@127.0.0.1:{port}/energy"
    assert (facts["host"], facts["port"], facts["name"], facts["user"]) == ("127.0.0.1", port, "energy", "bob")
    assert facts["reachable"].startswith("no ("), facts


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_migrate_reports_an_up_to_date_schema():
    result = invoke("migrate")

    assert result.exit_code == 0, result.output
    assert "up to date" in result.stdout


def test_serve_in_production_refuses_to_start_without_a_secret_key(monkeypatch):
    monkeypatch.delenv("ENERGYCTL_SECRET_KEY", raising=False)
    result = invoke("serve", "--production")

    assert result.exit_code == 78, result.output
    assert "ENERGYCTL_SECRET_KEY" in result.stderr


def test_serve_in_production_refuses_debug_mode(monkeypatch):
    monkeypatch.setenv("ENERGYCTL_SECRET_KEY", "x" * 50)
    monkeypatch.setenv("ENERGYCTL_ENV", "production")
    monkeypatch.setenv("ENERGYCTL_DEBUG", "1")
    result = invoke("serve")

    assert result.exit_code == 78, result.output
    assert "debug" in result.stderr


# The installed console script, as a separate process: what a shell or a runbook runs.

def energyctl(*args, env=None, cwd=None, timeout=60):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "energyctl"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def test_database_url(name: str | None = None) -> str:
    """A DATABASE_URL that reaches the suite's test database (or ``name`` on the same server)."""
    from urllib.parse import quote

    from django.db import connection

    from energy.db.embedded import server as embedded_pg

    settings = connection.settings_dict
    if settings["ENGINE"] == "energy.db.embedded":
        server = embedded_pg.running()
        host, port = str(server.socket_dir), server.port
    else:
        host, port = settings["HOST"], settings["PORT"] or 5432
    auth = quote(settings["USER"], safe="")
    if settings.get("PASSWORD"):
        auth += ":" + quote(settings["PASSWORD"], safe="")
    return f"postgresql://{auth}@{quote(host, safe='')}:{port}/{quote(name or settings['NAME'], safe='')}"


test_database_url.__test__ = False


def test_the_installed_script_consumes_from_any_directory(accounts, tmp_path):
    env = {"DATABASE_URL": test_database_url()}
    first = energyctl("consume", "--account", "2", "--amount", "40", "--key", "script", "--json", env=env, cwd=tmp_path)
    again = energyctl("consume", "--account", "2", "--amount", "40", "--key", "script", "--json", env=env, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["balance_after"] == 60
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {**json.loads(first.stdout), "status": "replayed"}
    assert first.stderr == "" and again.stderr == ""


def test_an_unreachable_database_exits_75_and_never_shows_the_password():
    url = "postgresql://bob:hunter2@%2Fnonexistent-energyctl-socket:5432/energy"
    result = energyctl("consume", "--account", "1", "--amount", "1", "--key", "k", "--json", env={"DATABASE_URL": url})

    assert result.returncode == 75, result.stderr
    assert json.loads(result.stdout)["error"] == "unavailable"
    assert "hunter2" not in result.stdout + result.stderr
    status = energyctl("db", "status", env={"DATABASE_URL": url})
    assert "bob:***@" in status.stdout and "hunter2" not in status.stdout + status.stderr
    migrate = energyctl("migrate", env={"DATABASE_URL": url})
    assert migrate.returncode == 75 and "cannot migrate" in migrate.stderr
    assert "hunter2" not in migrate.stdout + migrate.stderr


def test_a_database_without_schema_says_migrate_until_migrate_runs():
    import uuid

    from django.db import connection

    name = f"energyctl_empty_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {"DATABASE_URL": test_database_url(name)}
        before = energyctl("consume", "--account", "1", "--amount", "1", "--key", "k", "--json", env=env)
        migrated = energyctl("migrate", env=env)
        after = energyctl("consume", "--account", "1", "--amount", "1", "--key", "k", "--json", env=env)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert before.returncode == 75, before.stderr
    assert "energyctl migrate" in json.loads(before.stdout)["detail"]
    assert migrated.returncode == 0, migrated.stderr
    assert after.returncode == 4, after.stderr


def test_a_newcomer_needs_no_setup_the_embedded_server_starts_and_migrates_itself():
    import shutil
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    data = tempfile.mkdtemp(prefix="ectl-new-")
    env = {"ENERGYCTL_PGDATA": f"{data}/pgdata", "DATABASE_URL": ""}
    try:
        with ThreadPoolExecutor(3) as pool:  # three first runs at once: one sets up, the others wait for it
            first_runs = list(pool.map(
                lambda key: energyctl("consume", "--account", "1", "--amount", "5", "--key", key, env=env,
                                      timeout=120),
                ["a", "b", "c"]))
        seeded = energyctl("seed", "--accounts", "1", "--energy", "10", env=env)
        applied = energyctl("consume", "--account", "1", "--amount", "5", "--key", "first", "--json", env=env)
        running = json.loads(energyctl("db", "status", "--json", env=env).stdout)
        stopped = energyctl("db", "stop", env=env)
        after = json.loads(energyctl("db", "status", "--json", env=env).stdout)
    finally:
        energyctl("db", "stop", env=env)
        shutil.rmtree(data, ignore_errors=True)

    assert [run.returncode for run in first_runs] == [4, 4, 4], [run.stderr for run in first_runs]
    assert seeded.returncode == 0, seeded.stderr
    assert applied.returncode == 0 and json.loads(applied.stdout)["balance_after"] == 5, applied.stderr
    assert running["running"] is True and running["data_dir"] == f"{data}/pgdata"
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert after["running"] is False


def test_serve_answers_http_requests(accounts):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "energyctl"), "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, "DATABASE_URL": test_database_url()},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    from energy.application.clients import add_client

    token = add_client(name="shop", accounts=None).token
    base = f"http://127.0.0.1:{port}/api/energy"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:  # refused, reset, or a read that timed out while workers start
                assert server.poll() is None and time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.2)
        body = json.dumps({"account_id": 1, "amount": 30, "idempotency_key": "http"}).encode()
        answers = []
        for _ in range(2):
            request = urllib.request.Request(f"{base}/consume/", data=body,
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append((response.status, response.headers.get("Idempotent-Replayed")))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    assert answers == [(201, None), (200, "true")]


def test_race_demo_shows_the_removed_protection_failing_next_to_the_protected_path():
    result = invoke("race-demo", "--workers", "2", "--scenario", "protected", "--scenario", "no_unique_key", "--json")

    assert result.exit_code == 0, result.output
    report = one_json_document(result)
    holds = {scenario["name"]: scenario["holds"] for scenario in report["scenarios"]}
    assert holds == {"protected": True, "no_unique_key": False}


def test_race_demo_on_sqlite_explains_why_it_cannot_run(tmp_path):
    result = energyctl("race-demo", "--json", env={"DATABASE_URL": f"sqlite:///{tmp_path}/demo.db"})

    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["error"] == "unsupported"
