"""``energyctl --version``, ``show``, ``history`` and ``audit``: through the console script's ``main`` in process,
and through the installed script. Exit codes are the contract's."""

import json

import pytest

from tests.support import closed_port, energyctl, energyctl_here, test_database_url
from tests.support import table_rows as snapshot

pytestmark = pytest.mark.django_db(transaction=True)

# The contract's exit codes (CONTRACT.md).
EXIT = {"invalid_request": 2, "account_not_found": 4, "client_not_found": 4, "key_not_found": 4}


@pytest.fixture
def cli():
    return energyctl_here


def one_json_document(output: str) -> dict:
    lines = output.splitlines()
    assert len(lines) == 1, output
    return json.loads(lines[0])


@pytest.fixture
def ledger():
    """Account 1 with 100 energy spent by the operator (30, then 20) and by the client shop (5)."""
    from energy.application.accounts import seed_accounts
    from energy.application.consume import consume
    from energy.models import Client

    seed_accounts(count=2, energy=100)
    shop = Client.objects.create(name="shop", scopes=["consume", "read"], accounts=None)
    first = consume(account_id=1, amount=30, idempotency_key="order-17")
    consume(account_id=1, amount=20, idempotency_key="order-18")
    consume(account_id=1, amount=5, idempotency_key="order-17", client_id=shop.id)
    return first


def script(*args):
    return energyctl(*args, url=test_database_url())


# --version

def test_version_prints_the_installed_distribution_version(cli):
    from importlib.metadata import version

    result = cli("--version")

    assert result.returncode == 0, result
    assert result.stdout == f"energyctl {version('energyctl')}\n"


@pytest.mark.slow
def test_version_through_the_installed_script_needs_no_database():
    done = energyctl("--version", url=f"postgresql://nobody@127.0.0.1:{closed_port()}/none")

    assert done.returncode == 0 and done.stdout.startswith("energyctl ") and done.stderr == "", done


# show

def test_show_prints_the_original_result_as_applied(cli, ledger):
    consume_again = cli("consume", "--account", "1", "--amount", "30", "--key", "order-17", "--json")
    replayed = one_json_document(consume_again.stdout)

    result = cli("show", "--key", "order-17", "--json")

    assert result.returncode == 0, result
    assert one_json_document(result.stdout) == {**replayed, "status": "applied"} == ledger.to_dict()


def test_show_reads_the_named_clients_key_space(cli, ledger):
    result = cli("show", "--key", "order-17", "--client", "shop", "--json")

    assert result.returncode == 0, result
    assert one_json_document(result.stdout)["amount"] == 5


@pytest.mark.parametrize("args, outcome", [
    (("--key", "order-99"), "key_not_found"),
    (("--key", "order-17", "--client", "nobody"), "client_not_found"),
    (("--key", ""), "invalid_request"),
    (("--key", "nul\x00"), "invalid_request"),
    (("--key", "x" * 256), "invalid_request"),
])
def test_show_failures_have_their_exit_code_and_one_json_error(cli, ledger, args, outcome):
    result = cli("show", *args, "--json")

    assert result.returncode == EXIT[outcome], result
    body = one_json_document(result.stdout)
    assert (body["status"], body["error"]) == ("error", outcome) and body["detail"]


def test_show_for_people_prints_a_table_and_errors_on_stderr(cli, ledger):
    found = cli("show", "--key", "order-17")
    missing = cli("show", "--key", "order-99")

    assert found.returncode == 0 and "applied" in found.stdout and "70" in found.stdout, found
    assert missing.returncode == 4 and missing.stdout == "" and "key_not_found" in missing.stderr


# history

def test_history_lists_newest_first_with_the_client_of_each(cli, ledger):
    result = cli("history", "--account", "1", "--json")

    assert result.returncode == 0, result
    body = one_json_document(result.stdout)
    assert (body["account_id"], body["energy"]) == (1, 45)
    assert [(c["idempotency_key"], c["client"], c["balance_after"]) for c in body["consumptions"]] == [
        ("order-17", "shop", 45), ("order-18", "operator", 50), ("order-17", "operator", 70)]
    assert all(c["status"] == "applied" for c in body["consumptions"])
    assert body["consumptions"][-1] == {**ledger.to_dict(), "kind": "consume", "client": "operator"}
    assert body["entries"] == body["consumptions"]


def test_history_limit_keeps_the_newest(cli, ledger):
    body = one_json_document(cli("history", "--account", "1", "--limit", "1", "--json").stdout)

    assert [c["balance_after"] for c in body["consumptions"]] == [45]


def test_history_of_an_account_without_consumptions_is_empty(cli, ledger):
    result = cli("history", "--account", "2", "--json")

    assert result.returncode == 0
    assert one_json_document(result.stdout) == {"account_id": 2, "energy": 100, "held": 0, "entries": [],
                                                   "consumptions": []}


@pytest.mark.parametrize("args, outcome", [
    (("--account", "9"), "account_not_found"),
    (("--account", "0"), "invalid_request"),
    (("--account", "1", "--limit", "0"), "invalid_request"),
    (("--account", "1", "--limit", "1001"), "invalid_request"),
    (("--account", "1", "--limit", "ten"), "invalid_request"),
    (("--account", "1", "--limit", "99999999999999999999999"), "invalid_request"),
])
def test_history_failures_have_their_exit_code_and_one_json_error(cli, ledger, args, outcome):
    result = cli("history", *args, "--json")

    assert result.returncode == EXIT[outcome], result
    assert one_json_document(result.stdout)["error"] == outcome


def test_history_for_people_prints_a_table(cli, ledger):
    result = cli("history", "--account", "1")

    assert result.returncode == 0, result
    assert "45 energy" in result.stdout and "shop" in result.stdout and "order-18" in result.stdout


def test_show_and_history_never_change_the_database(cli, ledger):
    before = snapshot()
    for args in (("show", "--key", "order-17"), ("show", "--key", "order-17", "--json"),
                 ("show", "--key", "missing", "--json"), ("history", "--account", "1"),
                 ("history", "--account", "1", "--json", "--limit", "1000"), ("history", "--account", "9")):
        cli(*args)

    assert snapshot() == before


def test_show_and_history_run_in_a_read_only_transaction(ledger, monkeypatch):
    # Proof by attempt: a write slipped into the read path is refused by PostgreSQL itself.
    from django.db import connection
    from django.db.utils import InternalError

    from energy.application import ledger as use_cases

    def write_then_read(client_id, key):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE energy_account SET energy = 0")
    monkeypatch.setattr(use_cases, "earlier_record", write_then_read)

    with pytest.raises(InternalError, match="read-only transaction"):
        use_cases.get_record(client_id=1, idempotency_key="order-17")


# audit

def test_audit_of_a_clean_ledger_exits_0_with_the_contract_shape(cli, ledger):
    result = cli("audit", "--json")

    assert result.returncode == 0, result
    body = one_json_document(result.stdout)
    assert set(body) == {"accounts", "consumptions", "violations", "seconds"}
    assert (body["accounts"], body["consumptions"], body["violations"]) == (2, 3, [])


def test_audit_with_violations_exits_1_and_names_the_account(cli, ledger):
    from energy.models import Account

    Account.objects.filter(pk=2).update(energy=99)
    as_json = cli("audit", "--json")
    for_people = cli("audit")

    assert as_json.returncode == 1, as_json
    violations = one_json_document(as_json.stdout)["violations"]
    assert violations and {v["account_id"] for v in violations} == {2}
    assert "problem" in violations[0]
    assert for_people.returncode == 1 and "violations" in for_people.stdout and "energy is 99" in for_people.stdout


def test_audit_for_people_says_consistent(cli, ledger):
    result = cli("audit")

    assert result.returncode == 0 and "consistent" in result.stdout and "3 consumptions" in result.stdout


# Through the installed script: what a runbook runs.

@pytest.mark.slow
def test_each_command_through_the_installed_script(ledger):
    from energy.models import Account

    shown = script("show", "--key", "order-17", "--json")
    missing = script("show", "--key", "nope", "--json")
    history = script("history", "--account", "1", "--limit", "2", "--json")
    no_account = script("history", "--account", "9", "--json")
    bad_limit = script("history", "--account", "1", "--limit", "-1", "--json")
    clean = script("audit", "--json")
    Account.objects.filter(pk=1).update(energy=1)
    damaged = script("audit", "--json")

    assert (shown.returncode, json.loads(shown.stdout)["balance_after"]) == (0, 70), shown
    assert (missing.returncode, json.loads(missing.stdout)["error"]) == (4, "key_not_found"), missing
    assert history.returncode == 0 and len(json.loads(history.stdout)["consumptions"]) == 2, history
    assert (no_account.returncode, json.loads(no_account.stdout)["error"]) == (4, "account_not_found")
    assert (bad_limit.returncode, json.loads(bad_limit.stdout)["error"]) == (2, "invalid_request")
    assert clean.returncode == 0 and json.loads(clean.stdout)["violations"] == [], clean
    assert damaged.returncode == 1 and json.loads(damaged.stdout)["violations"][0]["account_id"] == 1, damaged
    for done in (shown, missing, history, no_account, bad_limit, clean, damaged):
        assert len(done.stdout.splitlines()) == 1 and "Traceback" not in done.stderr, done


@pytest.mark.slow
def test_an_unreachable_database_exits_75_for_each_command():
    url = f"postgresql://energy@127.0.0.1:{closed_port()}/energyctl"
    for args in (("show", "--key", "k"), ("history", "--account", "1"), ("audit",)):
        done = energyctl(*args, "--json", url=url)
        assert done.returncode == 75, done
        assert json.loads(done.stdout)["error"] == "unavailable" and "Traceback" not in done.stderr


# Shell completion, the Typer way.

@pytest.mark.slow
def test_shell_completion_offers_commands_and_their_options():
    def complete(words: str, cword: int) -> list[str]:
        done = energyctl(env={"_ENERGYCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
        assert done.returncode == 0, done
        return done.stdout.split()

    assert complete("energyctl hi", 1) == ["history"]
    assert {"--account", "--limit", "--json"} <= set(complete("energyctl history --", 2))


@pytest.mark.slow
def test_show_completion_prints_a_script_for_the_shell_it_runs_in():
    # Typer finds the shell from the process that started energyctl: here, a bash. The second
    # command keeps bash from replacing itself with energyctl, as it does for a lone command.
    import subprocess

    from tests.support import ENERGYCTL

    done = subprocess.run(["bash", "-c", f"'{ENERGYCTL}' --show-completion; exit $?"], capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0 and "_energyctl_completion" in done.stdout, done
