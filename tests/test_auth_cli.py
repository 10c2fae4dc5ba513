"""``energyctl clients``: the contract's commands, JSON shapes and exit codes; a token shown once."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.support import energyctl_here

pytestmark = pytest.mark.django_db(transaction=True)


def invoke(*args):
    """``energyctl ARGS`` through the console script's own ``main``, in this process."""
    run = energyctl_here(*args)
    return SimpleNamespace(exit_code=run.returncode, stdout=run.stdout, stderr=run.stderr,
                           output=run.stdout + run.stderr)


def document(result) -> dict:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.output
    return json.loads(lines[0])


def test_add_prints_the_token_once_in_the_contracts_shape():
    added = invoke("clients", "add", "shop", "--accounts", "2,1,2", "--json")
    assert added.exit_code == 0, added.output
    body = document(added)
    assert set(body) == {"client", "token", "scopes", "accounts"}
    assert (body["client"], body["scopes"], body["accounts"]) == ("shop", ["consume", "read"], [1, 2])
    assert body["token"].startswith("ect_") and len(body["token"]) == 47
    assert "will not be shown again" in added.stderr
    every = document(invoke("clients", "add", "meter", "--all-accounts", "--read-only", "--json"))
    assert (every["scopes"], every["accounts"]) == (["read"], "all")


def test_add_for_people_shows_a_table_and_the_warning_on_stderr():
    added = invoke("clients", "add", "shop", "--all-accounts")
    assert added.exit_code == 0, added.output
    assert "ect_" in added.stdout and "consume, read" in added.stdout
    assert "ect_" not in added.stderr and "Store this token now" in added.stderr


@pytest.mark.parametrize("args, field", [
    (["shop"], "accounts"),
    (["shop", "--accounts", "1", "--all-accounts"], "accounts"),
    (["shop", "--accounts", ""], "accounts"),
    (["shop", "--accounts", "1,x"], "accounts"),
    (["shop", "--accounts", "0"], "accounts"),
    (["shop", "--accounts", str(2**63)], "accounts"),
    (["operator", "--all-accounts"], "name"),
    (["bad name", "--all-accounts"], "name"),
    (["x" * 65, "--all-accounts"], "name"),
])
def test_add_refuses_bad_input_with_exit_2_and_adds_nothing(args, field):
    from energy.models import Client

    result = invoke("clients", "add", *args, "--json")
    assert result.exit_code == 2, result.output
    assert document(result)["error"] == "invalid_request" and field in document(result)["fields"]
    assert Client.objects.count() == 1  # the operator only


def test_a_taken_name_is_exit_2():
    invoke("clients", "add", "shop", "--all-accounts")
    again = invoke("clients", "add", "shop", "--accounts", "1", "--json")
    assert again.exit_code == 2 and "taken" in document(again)["fields"]["name"]


def test_list_shows_every_client_and_never_a_token():
    token = document(invoke("clients", "add", "shop", "--accounts", "1", "--json"))["token"]
    invoke("clients", "add", "meter", "--all-accounts", "--read-only")
    invoke("clients", "revoke", "meter")
    listed = invoke("clients", "list", "--json")
    assert listed.exit_code == 0, listed.output
    clients = document(listed)["clients"]
    assert [c["client"] for c in clients] == ["shop", "meter"]
    assert all(set(c) == {"client", "scopes", "accounts", "active", "created_at", "last_used_at"} for c in clients)
    assert [(c["accounts"], c["active"], c["last_used_at"]) for c in clients] == [([1], True, None),
                                                                                ("all", False, None)]
    table = invoke("clients", "list")
    assert "shop" in table.stdout and "revoked" in table.stdout
    from energy.application.clients import hash_token

    for output in (listed.output, table.output):
        assert token not in output and token[4:20] not in output and hash_token(token) not in output


def test_rotate_prints_a_new_token_once_and_unknown_names_exit_4():
    old = document(invoke("clients", "add", "shop", "--accounts", "1", "--json"))["token"]
    rotated = invoke("clients", "rotate", "shop", "--json")
    assert rotated.exit_code == 0, rotated.output
    body = document(rotated)
    assert set(body) == {"client", "token"} and body["client"] == "shop" and body["token"] != old
    assert "will not be shown again" in rotated.stderr
    from energy.application.clients import authenticate

    assert authenticate(old) is None and authenticate(body["token"]).name == "shop"
    missing = invoke("clients", "rotate", "nope", "--json")
    assert missing.exit_code == 4 and document(missing)["error"] == "client_not_found"


def test_revoke_stops_the_token_and_unknown_names_exit_4():
    token = document(invoke("clients", "add", "shop", "--accounts", "1", "--json"))["token"]
    revoked = invoke("clients", "revoke", "shop", "--json")
    assert revoked.exit_code == 0 and document(revoked) == {"client": "shop", "active": False}
    from energy.application.clients import authenticate

    assert authenticate(token) is None
    missing = invoke("clients", "revoke", "nope", "--json")
    assert missing.exit_code == 4 and document(missing)["error"] == "client_not_found"


@pytest.mark.parametrize("command", ["rotate", "revoke"])
def test_the_operator_has_no_token_to_rotate_or_revoke(command):
    result = invoke("clients", command, "operator", "--json")
    assert result.exit_code == 2 and "name" in document(result)["fields"]


def test_rotate_can_keep_the_old_token_working_for_a_while():
    from energy.application.clients import authenticate

    old = document(invoke("clients", "add", "shop", "--accounts", "1", "--json"))["token"]
    rotated = invoke("clients", "rotate", "shop", "--keep-old-for", "3600", "--json")
    assert rotated.exit_code == 0, rotated.output
    body = document(rotated)
    assert set(body) == {"client", "token"} and body["token"] != old
    assert "3600 s" in rotated.stderr and old not in rotated.output
    assert authenticate(old).name == authenticate(body["token"]).name == "shop"
    # Revoking ends every token of the client at once, the kept one too.
    assert invoke("clients", "revoke", "shop").exit_code == 0
    assert authenticate(old) is None and authenticate(body["token"]) is None


@pytest.mark.parametrize("seconds", ["-1", "604801", "1.5", "abc", "", "1e3", "99999999999999999999"])
def test_rotate_refuses_a_bad_keep_old_for_with_exit_2_and_rotates_nothing(seconds):
    from energy.application.clients import authenticate

    old = document(invoke("clients", "add", "shop", "--accounts", "1", "--json"))["token"]
    result = invoke("clients", "rotate", "shop", "--keep-old-for", seconds, "--json")
    assert result.exit_code == 2, result.output
    assert document(result)["error"] == "invalid_request" and "keep_old_for" in document(result)["fields"]
    assert authenticate(old).name == "shop"


def test_a_consume_from_the_command_line_is_logged_as_such(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="energy")
    invoke("seed", "--accounts", "1", "--energy", "100")
    result = invoke("consume", "--account", "1", "--amount", "5", "--key", "by-hand", "--json")
    assert result.exit_code == 0, result.output
    assert [(r.idempotency_key, r.channel) for r in caplog.records if r.name == "energy.consume"] == [
        ("by-hand", "cli")]
