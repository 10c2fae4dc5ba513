"""The energyctl command line as its users meet it: every command, exit code, JSON and human output.

Commands run through the console script's own ``main``, in this process
(``support.energyctl_here``); what needs a process of its own (a database named by URL, a
server, a newcomer's first run) runs the installed script and is marked slow. Exit codes are
the contract's, written out below, never read from the code under test.
"""

import json
import re

import pytest

from tests.support import closed_port, energyctl, energyctl_here, test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

# The contract (CONTRACT.md): each outcome's exit code, and how whole commands end.
CONTRACT_EXIT = {
    "applied": 0, "replayed": 0, "ok": 0,
    "invalid_request": 2, "insufficient_energy": 3,
    "account_not_found": 4, "client_not_found": 4, "key_not_found": 4,  # exit 4: not found, whatever it names
    "idempotency_key_mismatch": 5, "incomplete": 6, "invalid_state": 7, "unavailable": 75,
    "violations": 1, "not_as_expected": 1, "unsupported": 1,  # audit, race-demo: 1 when not as they must be
    "configuration": 78,  # EX_CONFIG (sysexits.h): serve --production in an unfit environment
    "interrupted": 130,  # 128 + SIGINT, what shells report for Ctrl-C
}


@pytest.fixture
def cli():
    return energyctl_here


@pytest.fixture
def accounts():
    from energy.application.accounts import seed_accounts

    seed_accounts(count=2, energy=100)


def one_json_document(result) -> dict:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result
    return json.loads(lines[0])


def test_consume_applies_and_prints_the_contract_result(cli, accounts):
    result = cli("consume", "--account", "1", "--amount", "30", "--key", "k1", "--json")

    assert result.returncode == 0, result
    body = one_json_document(result)
    assert body["status"] == "applied"
    assert (body["account_id"], body["amount"], body["idempotency_key"], body["balance_after"]) == (1, 30, "k1", 70)
    assert {"status", "consumption_id", "account_id", "amount", "idempotency_key", "balance_after",
            "created_at"} <= set(body)


def test_consume_retry_is_replayed_with_the_original_result(cli, accounts):
    first = one_json_document(cli("consume", "--account", "1", "--amount", "30", "--key", "k1", "--json"))
    cli("consume", "--account", "1", "--amount", "50", "--key", "k2")
    retry = cli("consume", "--account", "1", "--amount", "30", "--key", "k1", "--json")

    assert retry.returncode == 0, retry
    assert one_json_document(retry) == {**first, "status": "replayed"}


def test_consume_prints_a_table_for_people(cli, accounts):
    result = cli("consume", "--account", "1", "--amount", "30", "--key", "k1")

    assert result.returncode == 0, result
    assert "applied" in result.stdout and "70" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args, outcome",
    [
        (("--account", "1", "--amount", "101", "--key", "big"), "insufficient_energy"),
        (("--account", "9", "--amount", "1", "--key", "nobody"), "account_not_found"),
        (("--account", "1", "--amount", "1", "--key", "k", "--client", "nobody"), "client_not_found"),
        (("--account", "1", "--amount", "0", "--key", "zero"), "invalid_request"),
        (("--account", "1", "--amount", "1.5", "--key", "float"), "invalid_request"),
        (("--account", "1", "--amount", "99999999999999999999", "--key", "huge"), "invalid_request"),
        (("--account", "1", "--amount", "1", "--key", ""), "invalid_request"),
        (("--account", "1", "--amount", "1", "--key", "nul\x00"), "invalid_request"),
    ],
)
def test_each_failed_outcome_has_its_exit_code_and_one_json_error(cli, accounts, args, outcome):
    result = cli("consume", *args, "--json")

    assert result.returncode == CONTRACT_EXIT[outcome], result
    body = one_json_document(result)
    assert body["status"] == "error" and body["error"] == outcome, body
    assert body["detail"]


def test_key_reused_for_another_amount_exits_5(cli, accounts):
    cli("consume", "--account", "1", "--amount", "30", "--key", "k1")
    result = cli("consume", "--account", "1", "--amount", "31", "--key", "k1")

    assert result.returncode == 5, result
    assert "idempotency_key_mismatch" in result.stderr
    assert result.stdout == ""


def test_invalid_request_names_each_field(cli, accounts):
    body = one_json_document(cli("consume", "--account", "x", "--amount", "-3", "--key", "k", "--json"))

    assert set(body["fields"]) == {"account_id", "amount"}


def test_errors_go_to_stderr_for_people(cli, accounts):
    result = cli("consume", "--account", "1", "--amount", "500", "--key", "k1")

    assert result.returncode == 3
    assert result.stdout == ""
    assert "insufficient_energy" in result.stderr and "100" in result.stderr


def test_balance_shows_energy_and_exits_4_when_missing(cli, accounts):
    cli("consume", "--account", "1", "--amount", "30", "--key", "k1")

    assert one_json_document(cli("balance", "--account", "1", "--json"))["energy"] == 70
    assert "70" in cli("balance", "--account", "1").stdout
    missing = cli("balance", "--account", "3", "--json")
    assert missing.returncode == 4, missing
    assert one_json_document(missing)["error"] == "account_not_found"
    assert cli("balance", "--account", "-1").returncode == 2


def test_seed_creates_missing_accounts_and_leaves_existing_ones(cli, accounts):
    cli("consume", "--account", "1", "--amount", "30", "--key", "k1")
    result = cli("seed", "--accounts", "4", "--energy", "50", "--json")

    assert result.returncode == 0, result
    assert one_json_document(result) == {"accounts": 4, "created": 2, "existing": 2, "energy": 50}
    assert one_json_document(cli("balance", "--account", "1", "--json"))["energy"] == 70
    assert one_json_document(cli("balance", "--account", "4", "--json"))["energy"] == 50


def test_seed_refuses_nonsense_with_exit_2(cli):
    result = cli("seed", "--accounts", "0", "--energy", "-5", "--json")

    assert result.returncode == 2, result
    assert set(one_json_document(result)["fields"]) == {"accounts", "energy"}


def test_usage_error_is_one_line_on_stderr_without_traceback(cli):
    result = cli("consume", "--acount", "1")

    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--acount" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_with_json_still_prints_one_json_document(cli):
    result = cli("seed", "--accounts", "many", "--energy", "1", "--json")

    assert result.returncode == 2
    assert one_json_document(result)["error"] == "invalid_request"


@pytest.mark.parametrize("group", [[], ["clients"], ["db"]])
def test_a_group_without_a_command_shows_its_help_on_stderr_and_exits_2(cli, group):
    result = cli(*group)

    assert result.returncode == 2
    assert result.stdout == "" and "Commands:" in result.stderr and "Traceback" not in result.stderr


def test_unexpected_failure_is_one_redacted_line_and_exit_1(cli, accounts, monkeypatch):
    from energy.application import accounts as use_cases

    def broken(**kwargs):
        raise RuntimeError("server said: password=hunter2 is wrong")

    monkeypatch.setattr(use_cases, "get_account", broken)
    result = cli("balance", "--account", "1")
    as_json = cli("balance", "--account", "1", "--json")

    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "RuntimeError" in result.stderr and "hunter2" not in result.stderr
    assert as_json.returncode == 1
    assert one_json_document(as_json)["error"] == "internal_error" and "hunter2" not in as_json.stdout


def test_ctrl_c_outside_a_replay_exits_130_without_a_traceback(cli, accounts, monkeypatch):
    from energy.application import accounts as use_cases

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(use_cases, "get_account", interrupted)
    result = cli("balance", "--account", "1")

    assert result.returncode == CONTRACT_EXIT["interrupted"]
    assert "Traceback" not in result.stderr


# --help: one walk over every command, as sqlite-utils' tests/test_docs.py does.

def _command_paths() -> list[list[str]]:
    import typer

    from energyctl.app import build_app

    def walk(command, path):
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(build_app()), []))


def exit_codes_listed(help_text: str) -> dict[str, int]:
    """The "Exit status: 0 applied, replayed; 2 invalid_request; …." line of a help page, as {name: code}."""
    flat = " ".join(help_text.split())
    match = re.search(r"Exit status: (.*?)\.(?: |$)", flat)
    if match is None:
        return {}
    listed = {}
    for entry in match.group(1).split("; "):
        code, names = entry.split(" ", 1)
        listed.update({name: int(code) for name in names.split(", ")})
    return listed


@pytest.mark.parametrize("path", _command_paths(), ids=lambda path: " ".join(path) or "energyctl")
def test_every_help_page_tells_the_truth(cli, path):
    result = cli(*path, "--help")
    page = result.stdout

    assert result.returncode == 0, result
    assert page.startswith("Usage: energyctl"), page
    description = page.split("\n\n")[1].strip()
    assert description, f"{path} has no help text"
    if path and "Commands:" not in page:
        assert "Example" in page, path
    assert "<bool>" not in page, "a flag takes no value"
    assert not re.search(r"--(account|amount|accounts|energy|limit|workers|chunk-size)\s+<str>", page), page
    listed = exit_codes_listed(page)
    assert {name: CONTRACT_EXIT.get(name) for name in listed} == listed, f"{path}: {listed}"
    # Every exit code the page names is in that one checked line.
    assert not re.search(r"\bexits? \d", " ".join(page.split()).replace("Exit status:", ""), re.IGNORECASE), page


def test_the_help_of_the_commands_people_script_lists_their_exit_codes(cli):
    for path, ends in [(["consume"], {"applied", "insufficient_energy", "account_not_found", "client_not_found",
                                      "idempotency_key_mismatch", "invalid_request", "unavailable"}),
                       (["replay"], {"incomplete", "unavailable", "client_not_found"}),
                       (["show"], {"key_not_found", "client_not_found"}),
                       (["audit"], {"violations"})]:
        assert ends <= set(exit_codes_listed(cli(*path, "--help").stdout)), path


@pytest.mark.parametrize("args, outcome", [
    (("consume", "--account", "1", "--amount", "1", "--key", "k", "--client", "nobody"), "client_not_found"),
    (("consume", "--account", "9", "--amount", "1", "--key", "k"), "account_not_found"),
    (("consume", "--account", "1", "--amount", "500", "--key", "k"), "insufficient_energy"),
    (("balance", "--account", "9"), "account_not_found"),
    (("show", "--key", "never-used"), "key_not_found"),
    (("show", "--key", "k", "--client", "nobody"), "client_not_found"),
    (("history", "--account", "9"), "account_not_found"),
    (("replay", "/nonexistent/requests.jsonl"), "invalid_request"),
])
def test_a_command_exits_with_the_code_its_help_lists_for_the_outcome(cli, accounts, args, outcome):
    listed = exit_codes_listed(cli(args[0], "--help").stdout)

    assert cli(*args).returncode == listed[outcome] == CONTRACT_EXIT[outcome]


def test_only_the_requested_commands_module_is_built():
    import typer

    from energyctl.app import build_app

    assert set(typer.main.get_command(build_app("balance")).commands) == {"consume", "balance"}


def test_a_command_module_that_does_not_exist_yet_is_skipped(monkeypatch):
    import typer

    from energyctl import app as module

    monkeypatch.setitem(module.OPTIONAL_COMMANDS, "ghost", "energyctl.ghost_cmd")

    assert "ghost" not in typer.main.get_command(module.build_app()).commands
    assert "consume" in typer.main.get_command(module.build_app()).commands


def test_db_status_names_the_embedded_server(cli, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    facts = one_json_document(cli("db", "status", "--json"))

    assert facts["database"] == "embedded"
    assert facts["running"] is True and facts["pid"] > 0


def test_migrate_reports_an_up_to_date_schema(cli):
    result = cli("migrate")

    assert result.returncode == 0, result
    assert "up to date" in result.stdout


def test_serve_in_production_refuses_to_start_without_a_secret_key(cli, monkeypatch):
    monkeypatch.delenv("ENERGYCTL_SECRET_KEY", raising=False)
    result = cli("serve", "--production")

    assert result.returncode == CONTRACT_EXIT["configuration"], result
    assert "ENERGYCTL_SECRET_KEY" in result.stderr


def test_serve_in_production_refuses_debug_mode(cli, monkeypatch):
    monkeypatch.setenv("ENERGYCTL_SECRET_KEY", "x" * 50)
    monkeypatch.setenv("ENERGYCTL_ENV", "production")
    monkeypatch.setenv("ENERGYCTL_DEBUG", "1")
    result = cli("serve")

    assert result.returncode == CONTRACT_EXIT["configuration"], result
    assert "debug" in result.stderr


# The installed console script, as a separate process: what a shell or a runbook runs.

@pytest.mark.slow
def test_db_status_never_prints_a_password():
    port = closed_port()
    env = {"DATABASE_URL": f"postgresql://bob:hunter2@127.0.0.1:{port}/energy", "ENERGYCTL_CONNECT_TIMEOUT": "2"}
    result = energyctl("db", "status", env=env)
    as_json = energyctl("db", "status", "--json", env=env)
    facts = as_json.json

    assert result.returncode == 0 and as_json.returncode == 0, result.stderr + as_json.stderr
    assert "hunter2" not in result.stdout + result.stderr + as_json.stdout + as_json.stderr
    assert facts["url"] == f"postgresql://bob:***@127.0.0.1:{port}/energy"
    assert (facts["host"], facts["port"], facts["name"], facts["user"]) == ("127.0.0.1", port, "energy", "bob")
    assert facts["reachable"].startswith("no ("), facts


@pytest.mark.slow
def test_the_installed_script_consumes_from_any_directory(accounts, tmp_path):
    url = test_database_url()
    first = energyctl("consume", "--account", "2", "--amount", "40", "--key", "script", "--json", url=url, cwd=tmp_path)
    again = energyctl("consume", "--account", "2", "--amount", "40", "--key", "script", "--json", url=url, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert first.json["balance_after"] == 60
    assert again.returncode == 0, again.stderr
    assert again.json == {**first.json, "status": "replayed"}
    assert first.stderr == "" and again.stderr == ""


@pytest.mark.slow
def test_an_unreachable_database_exits_75_and_never_shows_the_password():
    url = "postgresql://bob:hunter2@%2Fnonexistent-energyctl-socket:5432/energy"
    result = energyctl("consume", "--account", "1", "--amount", "1", "--key", "k", "--json", url=url)

    assert result.returncode == CONTRACT_EXIT["unavailable"], result.stderr
    assert result.json["error"] == "unavailable"
    assert "hunter2" not in result.stdout + result.stderr
    status = energyctl("db", "status", url=url)
    assert "bob:***@" in status.stdout and "hunter2" not in status.stdout + status.stderr
    migrate = energyctl("migrate", url=url)
    assert migrate.returncode == 75 and "cannot migrate" in migrate.stderr
    assert "hunter2" not in migrate.stdout + migrate.stderr


@pytest.mark.slow
def test_a_database_without_schema_says_migrate_until_migrate_runs():
    import uuid

    from django.db import connection

    name = f"energyctl_empty_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        url = test_database_url(name)
        before = energyctl("consume", "--account", "1", "--amount", "1", "--key", "k", "--json", url=url)
        migrated = energyctl("migrate", url=url)
        after = energyctl("consume", "--account", "1", "--amount", "1", "--key", "k", "--json", url=url)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert before.returncode == 75, before.stderr
    assert "energyctl migrate" in before.json["detail"]
    assert migrated.returncode == 0, migrated.stderr
    assert after.returncode == 4, after.stderr


@pytest.mark.slow
def test_a_newcomer_needs_no_setup_the_embedded_server_starts_and_migrates_itself():
    import shutil
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    data = tempfile.mkdtemp(prefix="ectl-new-")
    env = {"ENERGYCTL_PGDATA": f"{data}/pgdata", "DATABASE_URL": ""}
    try:
        with ThreadPoolExecutor(3) as pool:  # three first runs at once: one sets up, the others wait for it
            first_runs = list(pool.map(
                lambda key: energyctl("consume", "--account", "1", "--amount", "5", "--key", key, env=env),
                ["a", "b", "c"]))
        seeded = energyctl("seed", "--accounts", "1", "--energy", "10", env=env)
        applied = energyctl("consume", "--account", "1", "--amount", "5", "--key", "first", "--json", env=env)
        running = energyctl("db", "status", "--json", env=env).json
        stopped = energyctl("db", "stop", env=env)
        after = energyctl("db", "status", "--json", env=env).json
    finally:
        energyctl("db", "stop", env=env)
        shutil.rmtree(data, ignore_errors=True)

    assert [run.returncode for run in first_runs] == [4, 4, 4], [run.stderr for run in first_runs]
    assert seeded.returncode == 0, seeded.stderr
    assert applied.returncode == 0 and applied.json["balance_after"] == 5, applied.stderr
    assert running["running"] is True and running["data_dir"] == f"{data}/pgdata"
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert after["running"] is False


@pytest.mark.slow
def test_serve_answers_http_requests(accounts, tmp_path):
    import urllib.request

    from energy.application.clients import add_client
    from tests.http_server import Server

    token = add_client(name="shop", accounts=None).token
    server = Server(test_database_url(), tmp_path / "serve.log")
    port = server.port
    base = f"http://127.0.0.1:{port}/api/energy"
    try:
        body = json.dumps({"account_id": 1, "amount": 30, "idempotency_key": "http"}).encode()
        answers = []
        for _ in range(2):
            request = urllib.request.Request(f"{base}/consume/", data=body,
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append((response.status, response.headers.get("Idempotent-Replayed")))
    finally:
        server.close()

    assert answers == [(201, None), (200, "true")]


@pytest.mark.slow
def test_race_demo_shows_the_removed_protection_failing_next_to_the_protected_path(cli):
    result = cli("race-demo", "--workers", "2", "--scenario", "protected", "--scenario", "no_unique_key", "--json")

    assert result.returncode == 0, result
    report = one_json_document(result)
    holds = {scenario["name"]: scenario["holds"] for scenario in report["scenarios"]}
    assert holds == {"protected": True, "no_unique_key": False}


@pytest.mark.slow
def test_race_demo_on_sqlite_explains_why_it_cannot_run(tmp_path):
    result = energyctl("race-demo", "--json", url=f"sqlite:///{tmp_path}/demo.db")

    assert result.returncode == 1, result.stderr
    assert result.json["error"] == "unsupported"
