"""manage.py commands: the same operations as the CLI, through Django's call_command."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_seed_accounts_makes_accounts_exist():
    out, _ = run("seed_accounts", "--accounts", "3", "--energy", "40", "--json")

    assert json.loads(out) == {"accounts": 3, "created": 3, "existing": 0, "energy": 40}
    from energy.models import Account

    assert sorted(Account.objects.values_list("id", "energy")) == [(1, 40), (2, 40), (3, 40)]


def test_seed_accounts_prints_a_sentence_for_people():
    out, _ = run("seed_accounts", "--accounts", "2", "--energy", "5")

    assert "2 created" in out


def test_seed_accounts_refuses_nonsense_with_exit_code_2():
    with pytest.raises(CommandError) as failed:
        run("seed_accounts", "--accounts", "0", "--energy", "5")

    assert failed.value.returncode == 2


def test_replay_keys_applies_a_file_once_and_replays_it_after(tmp_path):
    run("seed_accounts", "--accounts", "1", "--energy", "100")
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps({"account_id": 1, "amount": 10, "idempotency_key": f"m{i}"}) + "\n"
                            for i in range(3)))

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


def test_race_demo_refuses_an_unknown_scenario_before_racing():
    out = io.StringIO()

    with pytest.raises(CommandError) as failed:
        call_command("race_demo", "--scenario", "no_such_thing", "--json", stdout=out, stderr=io.StringIO())

    assert failed.value.returncode == 2
    assert json.loads(out.getvalue())["fields"]["scenario"].startswith("unknown: no_such_thing")
