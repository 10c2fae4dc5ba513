"""``energyctl credit`` and ``energyctl reverse``, their replay-file lines, the ``credit`` scope and the
torture run's check of them: through the console script's ``main`` in process, ``manage.py replay_keys``
and the installed script. Exit codes are the contract's."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from energy.domain.requests import MAX_INT64
from tests.support import energyctl, energyctl_here, table_rows, test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

# The contract's exit codes (CONTRACT.md).
EXIT = {"applied": 0, "replayed": 0, "invalid_request": 2, "account_not_found": 4, "key_not_found": 4,
        "client_not_found": 4, "idempotency_key_mismatch": 5, "incomplete": 6, "invalid_state": 7}
BODY = {"status", "kind", "entry_id", "account_id", "amount", "idempotency_key", "balance_after", "created_at"}


@pytest.fixture
def ledger():
    """Accounts 1 and 2 with 100 energy; the operator consumed 30 from account 1 under order-1."""
    from energy.application.accounts import seed_accounts
    from energy.application.consume import consume

    seed_accounts(count=2, energy=100)
    return consume(account_id=1, amount=30, idempotency_key="order-1")


def energy(account_id: int) -> int:
    from energy.models import Account

    return Account.objects.get(pk=account_id).energy


def audit_is_clean() -> bool:
    run = energyctl_here("audit", "--json")
    return run.returncode == 0 and run.json["violations"] == []


# credit

def test_a_credit_adds_once_and_its_retry_answers_the_original_body(ledger):
    first = energyctl_here("credit", "--account", "1", "--amount", "50", "--key", "topup-1", "--json")
    again = energyctl_here("credit", "--account", "1", "--amount", "50", "--key", "topup-1", "--json")

    assert first.returncode == 0, first
    assert set(first.json) == BODY
    assert first.json | {"entry_id": 0, "created_at": ""} == {
        "status": "applied", "kind": "credit", "entry_id": 0, "account_id": 1, "amount": 50,
        "idempotency_key": "topup-1", "balance_after": 120, "created_at": ""}
    assert again.returncode == 0, again
    assert again.json == {**first.json, "status": "replayed"}
    assert energy(1) == 120
    assert audit_is_clean()


def test_a_credit_for_people_says_what_was_applied(ledger):
    run = energyctl_here("credit", "--account", "2", "--amount", "5", "--key", "[red]k")

    assert run.returncode == 0, run
    assert "credit applied" in run.stdout and "[red]k" in run.stdout and "105" in run.stdout
    assert run.stderr == ""


@pytest.mark.parametrize("args, error", [
    (("--account", "1", "--amount", "30", "--key", "order-1"), "idempotency_key_mismatch"),  # a consume's key
    (("--account", "9", "--amount", "5", "--key", "k9"), "account_not_found"),
    (("--account", "1", "--amount", str(MAX_INT64), "--key", "huge"), "invalid_request"),  # past 2**63 - 1
    (("--account", "1", "--amount", "0", "--key", "k"), "invalid_request"),
    (("--account", "1", "--amount", "-5", "--key", "k"), "invalid_request"),
    (("--account", "1", "--amount", "1.5", "--key", "k"), "invalid_request"),
    (("--account", "1", "--amount", str(MAX_INT64 + 1), "--key", "k"), "invalid_request"),
    (("--account", "x", "--amount", "5", "--key", "k"), "invalid_request"),
    (("--account", "1", "--amount", "5", "--key", ""), "invalid_request"),
    (("--account", "1", "--amount", "5", "--key", "a\x00b"), "invalid_request"),
    (("--account", "1", "--amount", "5", "--key", "k", "--client", "nobody"), "client_not_found"),
])
def test_a_refused_credit_exits_with_its_code_and_changes_nothing(ledger, args, error):
    before = table_rows()

    run = energyctl_here("credit", *args, "--json")

    assert run.returncode == EXIT[error], run
    assert run.json["status"] == "error" and run.json["error"] == error, run
    assert table_rows() == before


def test_a_credit_past_the_largest_balance_says_so(ledger):
    run = energyctl_here("credit", "--account", "1", "--amount", str(MAX_INT64 - 69), "--key", "huge")

    assert run.returncode == 2, run
    assert "2**63 - 1" in run.stderr and "amount" in run.stderr
    assert run.stdout == ""


def test_a_credit_up_to_the_largest_balance_is_applied(ledger):
    run = energyctl_here("credit", "--account", "1", "--amount", str(MAX_INT64 - 70), "--key", "to-the-top", "--json")

    assert run.returncode == 0, run
    assert energy(1) == MAX_INT64


def test_a_consume_with_a_credits_key_is_a_mismatch(ledger):
    energyctl_here("credit", "--account", "1", "--amount", "5", "--key", "topup-1")

    run = energyctl_here("consume", "--account", "1", "--amount", "5", "--key", "topup-1", "--json")

    assert run.returncode == 5, run
    assert energy(1) == 75


def test_keys_are_per_client_across_kinds(ledger):
    from energy.application.clients import add_client

    add_client(name="shop", accounts=None, scopes=["consume", "read", "credit"])

    run = energyctl_here("credit", "--account", "1", "--amount", "5", "--key", "order-1", "--client", "shop",
                         "--json")

    assert run.returncode == 0, run
    assert run.json["status"] == "applied"
    shown = energyctl_here("show", "--key", "order-1", "--client", "shop", "--json")
    assert shown.json["entry_id"] == run.json["entry_id"], shown


# reverse

def test_a_reverse_gives_the_consumption_back_once(ledger):
    first = energyctl_here("reverse", "--key", "order-1", "--json")
    again = energyctl_here("reverse", "--key", "order-1", "--json")

    assert first.returncode == 0, first
    assert set(first.json) == BODY | {"reverses"}
    assert first.json | {"entry_id": 0, "created_at": ""} == {
        "status": "applied", "kind": "reversal", "entry_id": 0, "account_id": 1, "amount": 30,
        "idempotency_key": "order-1", "reverses": "order-1", "balance_after": 100, "created_at": ""}
    assert again.returncode == 0, again
    assert again.json == {**first.json, "status": "replayed"}
    assert energy(1) == 100
    assert audit_is_clean()


def test_a_consume_replayed_after_its_reversal_still_answers_the_original(ledger):
    energyctl_here("reverse", "--key", "order-1")

    run = energyctl_here("consume", "--account", "1", "--amount", "30", "--key", "order-1", "--json")

    assert run.returncode == 0, run
    assert run.json == {**ledger.to_dict(), "status": "replayed"}
    assert energy(1) == 100


def test_a_reverse_for_people_names_the_key_it_reverses(ledger):
    run = energyctl_here("reverse", "--key", "order-1")

    assert run.returncode == 0, run
    assert "reversal applied" in run.stdout and "reverses key" in run.stdout and "order-1" in run.stdout


@pytest.mark.parametrize("key, error", [
    ("nobody-sent-this", "key_not_found"),
    ("topup-1", "invalid_state"),  # a credit cannot be reversed
    ("", "invalid_request"),
    ("x" * 256, "invalid_request"),
])
def test_a_refused_reverse_exits_with_its_code_and_changes_nothing(ledger, key, error):
    energyctl_here("credit", "--account", "1", "--amount", "5", "--key", "topup-1")
    before = table_rows()

    run = energyctl_here("reverse", "--key", key, "--json")

    assert run.returncode == EXIT[error], run
    assert run.json["error"] == error, run
    assert table_rows() == before


def test_another_clients_key_is_not_found_for_a_reverse(ledger):
    from energy.application.clients import add_client

    add_client(name="shop", accounts=None)
    before = table_rows()

    run = energyctl_here("reverse", "--key", "order-1", "--client", "shop", "--json")

    assert run.returncode == 4, run
    assert run.json["error"] == "key_not_found"
    assert table_rows() == before


def test_a_reverse_past_the_largest_balance_is_invalid_and_changes_nothing(ledger):
    energyctl_here("credit", "--account", "1", "--amount", str(MAX_INT64 - 80), "--key", "to-near-the-top")
    before = table_rows()

    run = energyctl_here("reverse", "--key", "order-1", "--json")

    assert run.returncode == 2, run
    assert "2**63 - 1" in run.json["detail"]
    assert table_rows() == before


# help

@pytest.mark.parametrize("command, statuses", [
    ("credit", ["0 applied, replayed", "2 invalid_request", "4 account_not_found", "5 idempotency_key_mismatch",
                "75 unavailable"]),
    ("reverse", ["0 applied, replayed", "4 key_not_found", "7 invalid_state", "75 unavailable"]),
])
def test_help_gives_an_example_and_the_exit_statuses(command, statuses):
    run = energyctl_here(command, "--help")

    assert run.returncode == 0, run
    text = " ".join(run.stdout.split())
    assert f"Example: energyctl {command}" in text
    for status in statuses:
        assert status in text, text


# clients add --scopes

@pytest.mark.parametrize("args, scopes", [
    ((), ["consume", "read"]),
    (("--scopes", "credit,consume,read"), ["consume", "read", "credit"]),
    (("--scopes", "read,credit"), ["read", "credit"]),
    (("--read-only",), ["read"]),
])
def test_clients_add_grants_the_scopes_named(args, scopes):
    run = energyctl_here("clients", "add", "shop", "--all-accounts", *args, "--json")

    assert run.returncode == 0, run
    assert run.json["scopes"] == scopes
    listed = energyctl_here("clients", "list", "--json")
    assert listed.json["clients"][0]["scopes"] == scopes


@pytest.mark.parametrize("args", [
    ("--scopes", "consume,admin"), ("--scopes", ","), ("--scopes", "read", "--read-only"),
])
def test_clients_add_refuses_unknown_or_conflicting_scopes(args):
    run = energyctl_here("clients", "add", "shop", "--all-accounts", *args, "--json")

    assert run.returncode == 2, run
    assert "scopes" in run.json["fields"], run
    assert energyctl_here("clients", "list", "--json").json["clients"] == []


# replay files with kinds

def lines(path, *requests: dict):
    path.write_text("".join(json.dumps(request) + "\n" for request in requests))
    return path


def replay_keys(path, *options):
    """``manage.py replay_keys PATH --json``: (exit code, summary, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("replay_keys", str(path), "--json", *options, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue()), err.getvalue()


def test_replay_lines_of_every_kind_apply_in_file_order_then_replay(ledger, tmp_path):
    path = lines(tmp_path / "ledger.jsonl",
                 {"account_id": 2, "amount": 60, "idempotency_key": "c1"},
                 {"kind": "reverse", "idempotency_key": "c1"},  # the consume of the line before
                 {"kind": "consume", "account_id": 2, "amount": 90, "idempotency_key": "c2"},  # needs c1 back
                 {"kind": "credit", "account_id": 2, "amount": 5, "idempotency_key": "t1"},
                 {"kind": "reverse", "idempotency_key": "order-1"})

    code, first, _ = replay_keys(path)
    again_code, again, _ = replay_keys(path)

    assert code == 0 and first["applied"] == 5 and first["total"] == 5, first
    assert again_code == 0 and again["replayed"] == 5, again
    assert (energy(1), energy(2)) == (100, 100 - 60 + 60 - 90 + 5)
    assert audit_is_clean()


def test_replay_counts_each_refused_line_under_its_outcome_and_number(ledger, tmp_path):
    path = lines(tmp_path / "ledger.jsonl",
                 {"kind": "credit", "account_id": 1, "amount": 5, "idempotency_key": "order-1"},
                 {"kind": "reverse", "idempotency_key": "nobody"},
                 {"kind": "credit", "account_id": 1, "amount": 5, "idempotency_key": "t1"},
                 {"kind": "reverse", "idempotency_key": "t1"},
                 {"kind": "refund", "idempotency_key": "order-1"},
                 {"kind": "reverse"})
    before = energy(1)

    code, summary, err = replay_keys(path)

    assert code == EXIT["incomplete"], (summary, err)
    assert summary | {"seconds": 0} == {
        "total": 6, "applied": 1, "replayed": 0, "insufficient_energy": 0, "account_not_found": 0,
        "idempotency_key_mismatch": 1, "invalid_request": 2, "unavailable": 0, "key_not_found": 1,
        "invalid_state": 1, "seconds": 0}
    for number, outcome in [(1, "idempotency_key_mismatch"), (2, "key_not_found"), (4, "invalid_state"),
                            (5, "invalid_request"), (6, "invalid_request")]:
        assert f"line {number}: {outcome}" in err, err
    assert "kind" in err
    assert energy(1) == before + 5


def test_a_replay_of_consumes_keeps_the_summary_of_the_contract(ledger, tmp_path):
    path = lines(tmp_path / "consumes.jsonl", {"account_id": 1, "amount": 5, "idempotency_key": "c1"})

    run = energyctl_here("replay", str(path), "--json")

    assert run.returncode == 0, run
    assert set(run.json) == {"total", "applied", "replayed", "insufficient_energy", "account_not_found",
                             "idempotency_key_mismatch", "invalid_request", "unavailable", "seconds"}


def test_replay_with_a_client_credits_and_reverses_in_its_key_space(ledger, tmp_path):
    from energy.application.clients import add_client

    add_client(name="shop", accounts=None)
    path = lines(tmp_path / "shop.jsonl",
                 {"account_id": 2, "amount": 10, "idempotency_key": "order-1"},
                 {"kind": "reverse", "idempotency_key": "order-1"})

    run = energyctl_here("replay", str(path), "--client", "shop", "--json")

    assert run.returncode == 0 and run.json["applied"] == 2, run
    # The operator's order-1 (account 1) is untouched: the shop reversed its own.
    assert (energy(1), energy(2)) == (70, 100)


# the installed script

@pytest.mark.slow
def test_credit_and_reverse_through_the_installed_script(ledger):
    url = test_database_url()

    credited = energyctl("credit", "--account", "2", "--amount", "7", "--key", "t1", "--json", url=url)
    reversed_ = energyctl("reverse", "--key", "order-1", "--json", url=url)
    invalid = energyctl("reverse", "--key", "t1", "--json", url=url)
    missing = energyctl("reverse", "--key", "nope", url=url)

    assert (credited.returncode, credited.json["balance_after"]) == (0, 107), credited
    assert (reversed_.returncode, reversed_.json["reverses"]) == (0, "order-1"), reversed_
    assert (invalid.returncode, invalid.json["error"]) == (7, "invalid_state"), invalid
    assert missing.returncode == 4 and missing.stdout == "" and "key_not_found" in missing.stderr, missing
    assert "Traceback" not in missing.stderr


# the torture run's check of credits and reversals

def _history(keys=(), reversals=()):
    from energyctl.torture.history import History

    return History(keys={k.key: k for k in keys}, requests=0, crashes=[], conflicting_sends=[], kills_in_flight=0,
                   reversals={r.key: r for r in reversals})


def _sent(key, kind, *answers, account=1, amount=10):
    from energyctl.torture.history import KeyHistory

    return KeyHistory(key, account, amount, sends=len(answers), answers=list(answers), kind=kind)


CONSUMED = (7, 1, 10, "k1", 90, "consume", None)
REVERSED = (8, 1, 10, None, 100, "reversal", "k1")
CREDITED = (9, 1, 10, "t1", 110, "credit", None)


def _applied(record, outcome="applied"):
    return {"outcome": outcome, "entry_id": record[0], "amount": record[2], "balance_after": record[4]}


def test_the_torture_check_passes_consumes_credits_and_reversals_answered_as_recorded():
    from energyctl.torture.check import violations

    history = _history(
        keys=[_sent("k1", "consume", _applied(CONSUMED)), _sent("t1", "credit", {"outcome": "unavailable"},
                                                                _applied(CREDITED, "replayed"))],
        reversals=[_sent("k1", "reverse", _applied(REVERSED, "answer_dropped"), _applied(REVERSED, "replayed"),
                         account=None, amount=None)])

    assert violations(history, [CONSUMED, REVERSED, CREDITED]) == []


@pytest.mark.parametrize("keys, reversals, records, expected", [
    ([_sent("k1", "consume", _applied(CONSUMED))], [], [CONSUMED, REVERSED], "no client ever asked to reverse"),
    ([_sent("k1", "consume", _applied(CONSUMED))],
     [_sent("k1", "reverse", {"outcome": "key_not_found"}, account=None, amount=None)], [CONSUMED],
     "was answered key_not_found"),
    ([_sent("k1", "consume", _applied(CONSUMED))],
     [_sent("k1", "reverse", _applied(REVERSED), account=None, amount=None)], [CONSUMED],
     "answered applied but is not recorded"),
    ([_sent("k1", "consume", _applied(CONSUMED))],
     [_sent("k1", "reverse", _applied(REVERSED), _applied(REVERSED), account=None, amount=None)],
     [CONSUMED, REVERSED], "answered applied 2 times"),
    ([], [_sent("k9", "reverse", {"outcome": "unavailable"}, account=None, amount=None)], [],
     "reverse of key k9 was sent, but no"),
    ([_sent("t1", "credit", _applied(CREDITED))], [], [(9, 1, 10, "t1", 110, "consume", None)],
     "recorded as consume"),
    ([_sent("t1", "credit", {"outcome": "account_not_found"})], [], [CREDITED], "refused"),
], ids=["phantom-reversal", "reverse-refused", "reversal-not-recorded", "reversed-twice", "reverse-of-nothing",
        "credit-recorded-as-consume", "credit-refused-but-recorded"])
def test_the_torture_check_catches_each_violation_of_credits_and_reversals(keys, reversals, records, expected):
    from energyctl.torture.check import violations

    found = violations(_history(keys, reversals), records)

    assert any(expected in violation for violation in found), found


@pytest.mark.slow
def test_a_torture_run_sends_credits_and_reversals_and_every_guarantee_holds():
    from energyctl.torture import TortureConfig, run_torture

    report = run_torture(TortureConfig(seconds=4, clients=3, accounts=20, fault_interval=0.5, drain_seconds=10))

    figures = report.to_dict()
    assert report.violations == [], figures
    assert report.requests_by_kind.get("credit", 0) >= 1 and report.requests_by_kind.get("reverse", 0) >= 1, figures
    assert report.unanswered_keys == 0, figures
