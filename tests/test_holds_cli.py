"""``energyctl hold``, ``capture``, ``void``, ``holds expire``, and holds as ``balance``, ``history``,
``consume``, ``reverse`` and ``audit`` see them: through the console script's ``main`` in process, and a
few through the installed script. Exit codes are the contract's."""

import pytest

from energy.domain.requests import MAX_INT64
from tests.support import energyctl, energyctl_here, table_rows, test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

# The contract's exit codes (CONTRACT.md).
EXIT = {"applied": 0, "replayed": 0, "invalid_request": 2, "insufficient_energy": 3, "account_not_found": 4,
        "key_not_found": 4, "client_not_found": 4, "idempotency_key_mismatch": 5, "invalid_state": 7}
BODY = {"status", "kind", "entry_id", "account_id", "amount", "idempotency_key", "balance_after", "created_at"}


@pytest.fixture
def ledger():
    """Accounts 1 and 2 with 100 energy; the operator consumed 30 from account 1 under order-1."""
    from energy.application.accounts import seed_accounts
    from energy.application.consume import consume

    seed_accounts(count=2, energy=100)
    consume(account_id=1, amount=30, idempotency_key="order-1")


def run(*args: str):
    return energyctl_here(*args, "--json")


def hold(account: int, amount: int, key: str, *more: str):
    return run("hold", "--account", str(account), "--amount", str(amount), "--key", key, *more)


def balance(account_id: int) -> dict:
    shown = run("balance", "--account", str(account_id))
    assert shown.returncode == 0, shown
    return shown.json


def expire_now(key: str) -> None:
    """Make the hold under ``key`` expired by the database's clock, as if its time had passed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE energy_consumption SET expires_at = now() - interval '1 second' "
                       "WHERE idempotency_key = %s AND kind = 'hold'", [key])
        assert cursor.rowcount == 1


def audit_is_clean() -> bool:
    done = run("audit")
    return done.returncode == 0 and done.json["violations"] == []


# hold

def test_a_hold_moves_energy_to_held_once_and_its_retry_answers_the_original_body(ledger):
    first = hold(1, 40, "cart-1", "--expires-in", "600")
    again = hold(1, 40, "cart-1", "--expires-in", "600")

    assert first.returncode == 0, first
    assert set(first.json) == BODY | {"state", "expires_at", "held_after"}
    assert first.json | {"entry_id": 0, "created_at": "", "expires_at": ""} == {
        "status": "applied", "kind": "hold", "entry_id": 0, "account_id": 1, "amount": 40,
        "idempotency_key": "cart-1", "balance_after": 30, "held_after": 40, "state": "open",
        "created_at": "", "expires_at": ""}
    assert again.returncode == 0, again
    assert again.json == {**first.json, "status": "replayed"}
    assert balance(1) == {"account_id": 1, "energy": 30, "held": 40}
    assert audit_is_clean()


def test_a_hold_lives_900_seconds_unless_told_otherwise(ledger):
    from datetime import datetime

    default, short = hold(1, 5, "cart-1"), hold(1, 5, "cart-2", "--expires-in", "1")

    for done, seconds in ((default, 900), (short, 1)):
        lifetime = datetime.fromisoformat(done.json["expires_at"]) - datetime.fromisoformat(done.json["created_at"])
        assert lifetime.total_seconds() == pytest.approx(seconds, abs=0.01), done


def test_a_hold_for_people_says_what_was_held(ledger):
    done = energyctl_here("hold", "--account", "2", "--amount", "5", "--key", "[red]k")

    assert done.returncode == 0, done
    assert "hold applied" in done.stdout and "[red]k" in done.stdout and "95" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("args, error", [
    (("--account", "1", "--amount", "71", "--key", "k"), "insufficient_energy"),
    (("--account", "1", "--amount", "30", "--key", "order-1"), "idempotency_key_mismatch"),  # a consume's key
    (("--account", "9", "--amount", "5", "--key", "k"), "account_not_found"),
    (("--account", "1", "--amount", "5", "--key", "k", "--expires-in", "0"), "invalid_request"),
    (("--account", "1", "--amount", "5", "--key", "k", "--expires-in", "604801"), "invalid_request"),
    (("--account", "1", "--amount", "5", "--key", "k", "--expires-in", "1.5"), "invalid_request"),
    (("--account", "1", "--amount", "5", "--key", "k", "--expires-in", "soon"), "invalid_request"),
    (("--account", "1", "--amount", "0", "--key", "k"), "invalid_request"),
    (("--account", "1", "--amount", "-5", "--key", "k"), "invalid_request"),
    (("--account", "1", "--amount", "1.5", "--key", "k"), "invalid_request"),
    (("--account", "1", "--amount", str(MAX_INT64 + 1), "--key", "k"), "invalid_request"),
    (("--account", "x", "--amount", "5", "--key", "k"), "invalid_request"),
    (("--account", "1", "--amount", "5", "--key", ""), "invalid_request"),
    (("--account", "1", "--amount", "5", "--key", "k", "--client", "nobody"), "client_not_found"),
])
def test_a_refused_hold_exits_with_its_code_and_changes_nothing(ledger, args, error):
    before = table_rows()

    done = run("hold", *args)

    assert done.returncode == EXIT[error], done
    assert done.json["status"] == "error" and done.json["error"] == error, done
    assert table_rows() == before


def test_an_invalid_hold_names_every_field_at_fault(ledger):
    done = hold(1, 0, "k", "--expires-in", "604801")

    assert done.returncode == 2, done
    assert {"amount", "expires_in"} <= set(done.json["fields"]), done.json


def test_a_hold_up_to_the_last_unit_and_the_longest_life_is_applied(ledger):
    done = hold(1, 70, "all-of-it", "--expires-in", "604800")

    assert done.returncode == 0, done
    assert balance(1) == {"account_id": 1, "energy": 0, "held": 70}


def test_a_holds_key_with_another_amount_or_kind_is_a_mismatch(ledger):
    hold(1, 20, "cart-1")

    other_amount = hold(1, 21, "cart-1")
    as_consume = run("consume", "--account", "1", "--amount", "20", "--key", "cart-1")

    assert (other_amount.returncode, as_consume.returncode) == (5, 5), (other_amount, as_consume)
    assert balance(1) == {"account_id": 1, "energy": 50, "held": 20}


# capture

def test_capturing_all_of_a_hold_spends_it_and_a_retry_replays(ledger):
    hold(1, 40, "cart-1")

    first = run("capture", "--key", "cart-1")
    again = run("capture", "--key", "cart-1")

    assert first.returncode == 0, first
    assert first.json | {"entry_id": 0, "created_at": ""} == {
        "status": "applied", "kind": "capture", "entry_id": 0, "account_id": 1, "amount": 40,
        "idempotency_key": "cart-1", "balance_after": 30, "held_after": 0, "released": 0, "created_at": ""}
    assert again.returncode == 0, again
    assert again.json == {**first.json, "status": "replayed"}
    assert balance(1) == {"account_id": 1, "energy": 30, "held": 0}
    assert audit_is_clean()


def test_capturing_part_of_a_hold_releases_the_rest(ledger):
    hold(1, 40, "cart-1")

    first = run("capture", "--key", "cart-1", "--amount", "25")
    again = run("capture", "--key", "cart-1", "--amount", "25")

    assert first.returncode == 0, first
    assert (first.json["amount"], first.json["released"], first.json["balance_after"],
            first.json["held_after"]) == (25, 15, 45, 0)
    assert again.json == {**first.json, "status": "replayed"}
    assert balance(1) == {"account_id": 1, "energy": 45, "held": 0}
    assert audit_is_clean()


def test_a_capture_for_people_says_what_was_spent_and_released(ledger):
    hold(1, 40, "cart-1")

    done = energyctl_here("capture", "--key", "cart-1", "--amount", "25")

    assert done.returncode == 0, done
    assert "capture applied" in done.stdout and "released" in done.stdout and "15" in done.stdout


@pytest.mark.parametrize("setup, args, error", [
    ((("capture", "--key", "cart-1", "--amount", "10"),), ("--amount", "20"), "idempotency_key_mismatch"),
    ((), ("--amount", "41"), "invalid_request"),  # above the hold
    ((), ("--amount", "0"), "invalid_request"),
    ((), ("--amount", "many"), "invalid_request"),
    ((("void", "--key", "cart-1"),), (), "invalid_state"),
    ((), ("--client", "nobody"), "client_not_found"),
])
def test_a_refused_capture_exits_with_its_code_and_changes_nothing(ledger, setup, args, error):
    hold(1, 40, "cart-1")
    for earlier in setup:
        assert run(*earlier).returncode == 0
    before = table_rows()

    done = run("capture", "--key", "cart-1", *args)

    assert done.returncode == EXIT[error], done
    assert done.json["error"] == error, done
    assert table_rows() == before


@pytest.mark.parametrize("command", ["capture", "void"])
@pytest.mark.parametrize("key, error", [
    ("nobody-sent-this", "key_not_found"),
    ("order-1", "invalid_state"),  # a consume is no hold
    ("x" * 256, "invalid_request"),
])
def test_capture_and_void_of_what_is_no_hold_are_refused(ledger, command, key, error):
    before = table_rows()

    done = run(command, "--key", key)

    assert done.returncode == EXIT[error], done
    assert done.json["error"] == error, done
    assert table_rows() == before


def test_a_capture_or_void_of_another_clients_hold_is_not_found(ledger):
    from energy.application.clients import add_client

    add_client(name="shop", accounts=None)
    assert hold(1, 10, "cart-1", "--client", "shop").returncode == 0

    captured, voided = run("capture", "--key", "cart-1"), run("void", "--key", "cart-1")
    own = run("capture", "--key", "cart-1", "--client", "shop")

    assert (captured.json["error"], voided.json["error"]) == ("key_not_found", "key_not_found")
    assert own.returncode == 0, own


# void

def test_voiding_a_hold_gives_it_back_and_a_retry_replays(ledger):
    hold(1, 40, "cart-1")

    first = run("void", "--key", "cart-1")
    again = run("void", "--key", "cart-1")

    assert first.returncode == 0, first
    assert first.json | {"entry_id": 0, "created_at": ""} == {
        "status": "applied", "kind": "void", "entry_id": 0, "account_id": 1, "amount": 40,
        "idempotency_key": "cart-1", "balance_after": 70, "held_after": 0, "created_at": ""}
    assert again.json == {**first.json, "status": "replayed"}
    assert balance(1) == {"account_id": 1, "energy": 70, "held": 0}
    assert audit_is_clean()


def test_a_void_after_a_capture_is_an_invalid_state_and_changes_nothing(ledger):
    hold(1, 40, "cart-1")
    run("capture", "--key", "cart-1", "--amount", "5")
    before = table_rows()

    done = run("void", "--key", "cart-1")

    assert done.returncode == 7, done
    assert done.json["error"] == "invalid_state"
    assert table_rows() == before


# expiry

def test_an_expired_hold_is_energy_at_once_and_can_be_neither_captured_nor_voided(ledger):
    hold(1, 40, "cart-1")
    expire_now("cart-1")

    shown = balance(1)
    captured, voided = run("capture", "--key", "cart-1"), run("void", "--key", "cart-1")

    assert shown == {"account_id": 1, "energy": 70, "held": 0}
    assert (captured.returncode, captured.json["error"]) == (7, "invalid_state"), captured
    assert (voided.returncode, voided.json["error"]) == (7, "invalid_state"), voided
    assert audit_is_clean()


def test_an_expired_holds_energy_is_spent_by_the_next_consume_without_holds_expire(ledger):
    hold(1, 70, "cart-1")
    assert run("consume", "--account", "1", "--amount", "1", "--key", "too-early").returncode == 3
    expire_now("cart-1")

    done = run("consume", "--account", "1", "--amount", "70", "--key", "later")

    assert done.returncode == 0, done
    assert done.json["balance_after"] == 0
    assert balance(1) == {"account_id": 1, "energy": 0, "held": 0}
    assert audit_is_clean()


def test_holds_expire_releases_every_expired_hold_and_only_those(ledger):
    hold(1, 10, "cart-1"), hold(1, 20, "cart-2"), hold(2, 5, "cart-3"), hold(2, 7, "stays")
    for key in ("cart-1", "cart-2", "cart-3"):
        expire_now(key)

    first = run("holds", "expire")
    again = run("holds", "expire")

    assert first.returncode == 0, first
    assert first.json == {"released": 3, "energy": 35, "accounts": 2}
    assert again.json == {"released": 0, "energy": 0, "accounts": 0}
    assert (balance(1), balance(2)) == ({"account_id": 1, "energy": 70, "held": 0},
                                        {"account_id": 2, "energy": 93, "held": 7})
    assert run("void", "--key", "stays").returncode == 0
    assert audit_is_clean()


def test_holds_expire_for_people_says_what_it_released(ledger):
    hold(1, 10, "cart-1")
    expire_now("cart-1")

    done = energyctl_here("holds", "expire")

    assert done.returncode == 0, done
    assert "1" in done.stdout and "10" in done.stdout


# balance, history, reverse

def test_balance_for_people_shows_what_is_held(ledger):
    hold(1, 40, "cart-1")

    done = energyctl_here("balance", "--account", "1")

    assert done.returncode == 0, done
    assert "30" in done.stdout and "40" in done.stdout and "held" in done.stdout


def test_history_lists_every_kind_with_the_hold_fields(ledger):
    hold(1, 40, "cart-1"), hold(1, 10, "cart-2"), hold(1, 5, "cart-3")
    run("capture", "--key", "cart-1", "--amount", "25")
    run("void", "--key", "cart-2")

    done = run("history", "--account", "1")
    table = energyctl_here("history", "--account", "1")

    assert done.returncode == 0, done
    kinds = [(e["kind"], e["idempotency_key"]) for e in done.json["entries"]]
    assert kinds == [("void", "cart-2"), ("capture", "cart-1"), ("hold", "cart-3"), ("hold", "cart-2"),
                     ("hold", "cart-1"), ("consume", "order-1")]
    capture, open_hold = done.json["entries"][1], done.json["entries"][2]
    assert (capture["amount"], capture["released"], capture["held_after"]) == (25, 15, 15)
    assert open_hold["held_after"] == 55 and "expires_at" in open_hold
    assert [e["idempotency_key"] for e in done.json["consumptions"]] == ["order-1"]
    assert table.returncode == 0, table
    assert "capture" in table.stdout and "void" in table.stdout and "released 15" in table.stdout


def test_a_capture_is_reversed_once_and_an_open_hold_cannot_be(ledger):
    hold(1, 40, "cart-1"), hold(1, 10, "cart-2")
    run("capture", "--key", "cart-1", "--amount", "25")

    first = run("reverse", "--key", "cart-1")
    again = run("reverse", "--key", "cart-1")
    open_hold = run("reverse", "--key", "cart-2")

    assert first.returncode == 0, first
    assert (first.json["kind"], first.json["amount"], first.json["reverses"]) == ("reversal", 25, "cart-1")
    assert again.json == {**first.json, "status": "replayed"}
    assert (open_hold.returncode, open_hold.json["error"]) == (7, "invalid_state"), open_hold
    assert balance(1) == {"account_id": 1, "energy": 60, "held": 10}
    assert audit_is_clean()


@pytest.mark.parametrize("command", [("hold",), ("capture",), ("void",), ("holds", "expire")])
def test_each_holds_command_explains_itself_with_its_exit_statuses(command):
    done = energyctl_here(*command, "--help")

    assert done.returncode == 0, done
    assert "Exit status: 0" in done.stdout and "Example: energyctl" in done.stdout


# the installed script

@pytest.mark.slow
def test_hold_capture_and_void_through_the_installed_script(ledger):
    url = test_database_url()

    held = energyctl("hold", "--account", "2", "--amount", "30", "--key", "cart-1", "--json", url=url)
    short = energyctl("hold", "--account", "2", "--amount", "30", "--key", "cart-2", "--json", url=url)
    insufficient = energyctl("hold", "--account", "2", "--amount", "41", "--key", "cart-3", "--json", url=url)
    captured = energyctl("capture", "--key", "cart-1", "--amount", "20", "--json", url=url)
    voided = energyctl("void", "--key", "cart-2", "--json", url=url)
    again = energyctl("void", "--key", "cart-2", "--json", url=url)
    late = energyctl("void", "--key", "cart-1", url=url)
    expired = energyctl("holds", "expire", "--json", url=url)

    assert (held.returncode, short.returncode, insufficient.returncode) == (0, 0, 3), (held, short, insufficient)
    assert (captured.returncode, captured.json["released"]) == (0, 10), captured
    assert (voided.returncode, again.returncode, again.json["status"]) == (0, 0, "replayed"), (voided, again)
    assert late.returncode == 7 and "invalid_state" in late.stderr and "Traceback" not in late.stderr, late
    assert expired.json == {"released": 0, "energy": 0, "accounts": 0}, expired
    assert balance(2) == {"account_id": 2, "energy": 80, "held": 0}


# the torture run's check of holds

def _history(keys=(), resolutions=()):
    from energyctl.torture.history import History

    return History(keys={k.key: k for k in keys}, requests=0, crashes=[], conflicting_sends=[], kills_in_flight=0,
                   resolutions={r.key: r for r in resolutions})


def _sent(key, kind, *answers, account=None, amount=None):
    from energyctl.torture.history import KeyHistory

    return KeyHistory(key, account, amount, sends=len(answers), answers=list(answers), kind=kind)


# Entry rows as the torture run reads them: id, account, amount, key, balance_after, kind, target key, state.
HELD = (7, 1, 40, "h1", 60, "hold", None, "captured")
CAPTURED = (8, 1, 25, None, 75, "capture", "h1", None)


def _applied(record, outcome="applied"):
    return {"outcome": outcome, "entry_id": record[0], "amount": record[2], "balance_after": record[4]}


def test_the_torture_check_passes_holds_and_captures_answered_as_recorded():
    from energyctl.torture.check import violations

    expired = (9, 1, 40, "h2", 60, "hold", None, "expired")
    history = _history(keys=[_sent("h1", "hold", _applied(HELD), account=1, amount=40),
                             _sent("h2", "hold", _applied(expired), account=1, amount=40)],
                       resolutions=[_sent("h1", "capture", _applied(CAPTURED, "answer_dropped"),
                                          _applied(CAPTURED, "replayed"), amount=25),
                                    _sent("h2", "void", {"outcome": "invalid_state"})])

    assert violations(history, [HELD, CAPTURED, expired]) == []


@pytest.mark.parametrize("resolutions, records, expected", [
    ([], [HELD, CAPTURED], "no client ever asked to capture or void it"),
    ([_sent("h1", "void", _applied(CAPTURED))], [HELD, CAPTURED], "is recorded as capture"),
    ([_sent("h1", "capture", _applied(CAPTURED), amount=30)], [HELD, CAPTURED], "is recorded as capture of 25"),
    ([_sent("h1", "capture", {"outcome": "invalid_state"}, amount=25)], [HELD[:7] + ("open",)],
     "was answered invalid_state"),
    ([_sent("h1", "capture", _applied(CAPTURED), amount=25)], [HELD[:7] + ("voided",), CAPTURED],
     "is voided, yet its resolution makes it captured"),
    ([_sent("h1", "capture", _applied(CAPTURED), amount=25)], [HELD[:7] + ("open",)],
     "answered applied but is not recorded"),
    ([_sent("h9", "void", {"outcome": "unavailable"})], [], "no hold is recorded under it"),
], ids=["phantom-resolution", "void-recorded-as-capture", "other-amount", "refused-while-open", "wrong-state",
        "capture-not-recorded", "void-of-nothing"])
def test_the_torture_check_catches_each_violation_of_holds(resolutions, records, expected):
    from energyctl.torture.check import violations

    keys = [_sent("h1", "hold", _applied(HELD), account=1, amount=40)] if any(r[3] == "h1" for r in records) else []
    found = violations(_history(keys, resolutions), records)

    assert any(expected in violation for violation in found), found


@pytest.mark.slow
def test_a_torture_run_holds_captures_voids_and_lets_holds_expire_and_every_guarantee_holds():
    from energyctl.torture import TortureConfig, run_torture

    report = run_torture(TortureConfig(seconds=6, clients=3, accounts=20, fault_interval=0.5, drain_seconds=10,
                                       short_hold_share=0.6))

    figures = report.to_dict()
    assert report.violations == [], figures
    assert all(report.requests_by_kind.get(kind, 0) >= 1 for kind in ("hold", "capture", "void")), figures
    assert report.hold_states.get("captured", 0) >= 1 and report.hold_states.get("expired", 0) >= 1, figures
    assert report.unanswered_keys == 0, figures
