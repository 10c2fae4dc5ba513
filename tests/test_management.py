"""manage.py commands: the command line's operations with the command line's options, through Django."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command, load_command_class

from tests.support import PROCESS_TIMEOUT_S, test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

# Management command -> the energyctl command it is.
SAME_AS = {"seed_accounts": "seed", "replay_keys": "replay", "race_demo": "race-demo"}
MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"


def run(*args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def requests_file(path: Path, *requests: tuple[int, int, str]) -> Path:
    path.write_text("".join(json.dumps({"account_id": a, "amount": n, "idempotency_key": k}) + "\n"
                            for a, n, k in requests))
    return path


@pytest.mark.parametrize("name", SAME_AS)
def test_every_option_of_the_command_line_is_an_option_of_the_management_command(name):
    import typer

    from energyctl.app import build_app

    cli = typer.main.get_command(build_app(SAME_AS[name])).commands[SAME_AS[name]]
    parser = load_command_class("energyctl", name).create_parser("manage.py", name)
    arguments = [param for param in cli.params if param.param_type_name == "argument"]
    # What every command line of it needs: its arguments and required options.
    needed = ["x"] * len(arguments) + [f"{p.opts[0]}=1" for p in cli.params if p.required and p not in arguments]

    assert {param.name for param in arguments} <= set(vars(parser.parse_args(needed)))
    for param in cli.params:
        for option in [*param.opts, *param.secondary_opts] if param not in arguments else ():
            words = [option] if param.is_flag else [f"{option}=1"]
            assert param.name in vars(parser.parse_args([*words, *needed])), (name, option)


def test_seed_accounts_makes_accounts_exist():
    out, _ = run("seed_accounts", "--accounts", "3", "--energy", "40", "--json")

    assert json.loads(out) == {"accounts": 3, "created": 3, "existing": 0, "energy": 40}
    from energy.models import Account

    assert sorted(Account.objects.values_list("id", "energy")) == [(1, 40), (2, 40), (3, 40)]


def test_seed_accounts_prints_a_sentence_for_people():
    out, _ = run("seed_accounts", "--accounts", "2", "--energy", "5")

    assert "2 created" in out


def test_seed_accounts_takes_options_as_keywords_too():
    out, _ = run("seed_accounts", accounts=2, energy=7, json=True)

    assert json.loads(out)["created"] == 2


def test_seed_accounts_refuses_nonsense_with_exit_code_2():
    with pytest.raises(CommandError) as failed:
        run("seed_accounts", "--accounts", "0", "--energy", "5")

    assert failed.value.returncode == 2


def test_replay_keys_applies_a_file_once_and_replays_it_after(tmp_path):
    run("seed_accounts", "--accounts", "1", "--energy", "100")
    path = requests_file(tmp_path / "requests.jsonl", *((1, 10, f"m{i}") for i in range(3)))

    first, _ = run("replay_keys", str(path), "--json")
    again, _ = run("replay_keys", str(path), "--json")

    assert json.loads(first)["applied"] == 3
    assert json.loads(again)["replayed"] == 3
    from energy.models import Account

    assert Account.objects.get(pk=1).energy == 70


def test_replay_keys_exits_6_and_names_the_bad_line(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"account_id": 1}\n')
    err = io.StringIO()

    with pytest.raises(CommandError) as failed:
        call_command("replay_keys", str(path), stdout=io.StringIO(), stderr=err)

    assert failed.value.returncode == 6
    assert "line 1: invalid_request" in err.getvalue()


def test_replay_keys_checks_its_options_as_the_command_line_does(tmp_path):
    path = requests_file(tmp_path / "requests.jsonl", (1, 1, "k"))

    with pytest.raises(CommandError) as failed:
        run("replay_keys", str(path), "--chunk-size", "0")

    assert failed.value.returncode == 2


def test_replay_keys_with_an_unknown_client_exits_4(tmp_path):
    path = requests_file(tmp_path / "requests.jsonl", (1, 1, "k"))

    with pytest.raises(CommandError) as failed:
        run("replay_keys", str(path), "--client", "nobody")

    assert failed.value.returncode == 4


def test_race_demo_refuses_an_unknown_scenario_before_racing():
    out = io.StringIO()

    with pytest.raises(CommandError) as failed:
        call_command("race_demo", "--scenario", "no_such_thing", "--json", stdout=out, stderr=io.StringIO())

    assert failed.value.returncode == 2
    assert json.loads(out.getvalue())["fields"]["scenario"].startswith("unknown: no_such_thing")


@pytest.mark.slow
def test_manage_py_replay_keys_with_client_acts_in_that_clients_key_space(tmp_path):
    from energy.application.accounts import seed_accounts
    from energy.application.clients import add_client
    from energy.application.consume import consume
    from energy.models import Account, Client, Entry

    seed_accounts(count=1, energy=100)
    add_client(name="shop", accounts=None)
    shop = Client.objects.get(name="shop")
    consume(account_id=1, amount=10, idempotency_key="order-1", client_id=shop.id)
    path = requests_file(tmp_path / "requests.jsonl", (1, 10, "order-1"))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    done = subprocess.run([sys.executable, str(MANAGE_PY), "replay_keys", str(path), "--client", "shop", "--json"],
                          capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, cwd=MANAGE_PY.parent,
                          env={**env, "DATABASE_URL": test_database_url()})

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["replayed"], summary["applied"]) == (1, 0), summary
    assert Account.objects.get(pk=1).energy == 90
    assert list(Entry.objects.values_list("client__name", "idempotency_key")) == [("shop", "order-1")]
