"""Faults and outages: nothing lost, nothing applied twice, and `unavailable` fast and retryable.

Every test that stops or crashes a server does it to a cluster of its own, never to the
suite's. Children are real OS processes connected by DATABASE_URL; this module imports no
Django model at top level, because spawned children import it before setting Django up.
"""

from __future__ import annotations

import socket
import time

import pytest

from energyctl.torture import TortureConfig, run_torture
from energyctl.torture.cluster import OwnCluster
from energyctl.torture.config import FAULT_KINDS
from tests import support

# A hang guard for a busy two-core machine, not a performance claim: far below the statement
# and lock timeouts that a hung connection would otherwise wait out.
UNAVAILABLE_WITHIN_S = 10.0


def start_session(url: str) -> support.Session:
    """A spawned process with its own Django connection, running this module's COMMANDS."""
    return support.Session(url, __name__)


def _prepare(accounts, energy):
    from django.core.management import call_command

    from energy.application.accounts import seed_accounts
    from energy.application.clients import add_client, client_id_for

    global _TOKEN, _CLIENT_ID
    call_command("migrate", verbosity=0)
    seed_accounts(count=accounts, energy=energy)
    _TOKEN = add_client(name="session", accounts=None).token
    # Use case and HTTP act in one key space, so a key applied by one is replayed by the other.
    _CLIENT_ID = client_id_for("session")
    return {}


def _consume(account, amount, key):
    from energy.application.consume import consume
    from energy.domain.exceptions import EnergyError

    started = time.monotonic()
    try:
        answer = {"outcome": consume(account_id=account, amount=amount, idempotency_key=key,
                                     client_id=_CLIENT_ID).status}
    except EnergyError as exc:
        answer = {"outcome": exc.outcome, "detail": exc.detail}
    return {**answer, "seconds": time.monotonic() - started}


def _http(account, amount, key):
    from rest_framework.test import APIClient

    started = time.monotonic()
    response = APIClient().post("/api/energy/consume/", {"account_id": account, "amount": amount,
                                                         "idempotency_key": key}, format="json",
                                HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {_TOKEN}")
    return {"status": response.status_code, "retry_after": response.headers.get("Retry-After"),
            "body": response.json(), "seconds": time.monotonic() - started}


# The session's client token once "prepare" made one; before that a well-formed token that
# checking needs the database for, so an unreachable database still answers 503.
_TOKEN = "ect_" + "A" * 43
_CLIENT_ID = 1  # the operator's, until "prepare" adds the session's client


def _ledger(account):
    from energy.models import Account, Entry

    return {"energy": Account.objects.get(pk=account).energy,
            "records": list(Entry.objects.filter(account_id=account).order_by("id")
                            .values_list("idempotency_key", "amount"))}


COMMANDS = {"prepare": _prepare, "consume": _consume, "http": _http, "ledger": _ledger}


@pytest.fixture
def cluster():
    own = OwnCluster()
    yield own
    own.close()


@pytest.mark.slow
def test_fault_run_loses_nothing_and_applies_nothing_twice():
    # Faults come in a fixed rotation and count only once they reached a client (a backend
    # ended, a client seen waiting for the held lock); answers are dropped by count. Nothing
    # below depends on a random draw or on how fast the machine is.
    report = run_torture(TortureConfig(seconds=8, clients=4, accounts=60, fault_interval=0.5, drain_seconds=10))
    figures = report.to_dict()
    assert report.violations == [], figures
    assert report.faults_not_injected == [], figures
    assert all(report.faults[kind] >= 1 for kind in FAULT_KINDS), figures
    # The faults reached the clients, and the clients came through them.
    assert report.unavailable_reasons.get("lock_timeout", 0) >= 1, figures
    assert report.unavailable_reasons.get("connection_lost_or_refused", 0) >= 1, figures
    assert report.outcomes["applied"] >= 1 and report.outcomes.get("replayed", 0) >= 1, figures
    assert report.unanswered_keys == 0, figures
    # Every answer a client threw away after the commit came back, on retry, as a replay.
    assert report.lost_answers_replayed >= report.answers_dropped >= 1, figures
    assert report.client_exit_codes == [0] * 4, figures


@pytest.mark.slow
def test_a_process_keeps_working_after_the_server_crashes_and_restarts(cluster):
    session = start_session(cluster.url)
    session.ask("prepare", 1, 100)
    assert session.ask("consume", 1, 10, "before-crash")["outcome"] == "applied"
    cluster.crash_and_restart(downtime=0.2)
    outcomes = [session.ask("consume", 1, 10, "after-crash")["outcome"] for _ in range(3)]
    # The dead connection may cost one `unavailable`; the same process then reconnects by itself.
    assert outcomes in (["applied", "replayed", "replayed"], ["unavailable", "applied", "replayed"]), outcomes
    assert session.ask("ledger", 1) == {"energy": 80, "records": [("before-crash", 10), ("after-crash", 10)]}
    assert session.close() == 0


@pytest.mark.slow
def test_stopped_server_is_unavailable_fast_and_the_same_key_applies_once_after_recovery(cluster):
    session = start_session(cluster.url)
    session.ask("prepare", 1, 100)
    cluster.stop()
    down = session.ask("consume", 1, 30, "during-outage")
    assert down["outcome"] == "unavailable" and down["seconds"] < UNAVAILABLE_WITHIN_S, down
    assert "retry with the same idempotency key" in down["detail"]
    http = session.ask("http", 1, 30, "during-outage")
    assert (http["status"], http["retry_after"], http["body"]["error"]) == (503, "1", "unavailable"), http
    assert http["seconds"] < UNAVAILABLE_WITHIN_S, http
    cluster.ensure_up()
    # The outage already cost this process its dead connection, so the retry reconnects at once.
    assert session.ask("consume", 1, 30, "during-outage")["outcome"] == "applied"
    replay = session.ask("http", 1, 30, "during-outage")
    assert (replay["status"], replay["body"]["status"]) == (200, "replayed"), replay
    assert session.ask("ledger", 1) == {"energy": 70, "records": [("during-outage", 30)]}
    assert session.close() == 0


@pytest.mark.slow
def test_unreachable_address_is_unavailable_fast_over_http_and_use_case():
    port = support.closed_port()
    session = start_session(f"postgresql://energy@127.0.0.1:{port}/energyctl")
    down = session.ask("consume", 1, 30, "no-server")
    assert down["outcome"] == "unavailable" and down["seconds"] < UNAVAILABLE_WITHIN_S, down
    http = session.ask("http", 1, 30, "no-server")
    assert (http["status"], http["retry_after"], http["body"]["error"]) == (503, "1", "unavailable"), http
    assert http["seconds"] < UNAVAILABLE_WITHIN_S, http
    # The use case's reason names the address; no HTTP body does (it goes to the server's log).
    assert str(port) in down["detail"] and str(port) not in str(http["body"]), http
    assert session.close() == 0


@pytest.mark.slow
def test_a_server_that_accepts_but_never_answers_is_unavailable_within_the_connect_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        session = start_session(f"postgresql://energy@127.0.0.1:{silent.getsockname()[1]}/energyctl")
        hung = session.ask("consume", 1, 30, "silent-server")
        assert session.close() == 0
    assert hung["outcome"] == "unavailable" and hung["seconds"] < UNAVAILABLE_WITHIN_S, hung
    assert "timeout" in hung["detail"]


@pytest.mark.slow
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_cli_consume_with_the_database_unreachable_exits_75_without_a_traceback(as_json):
    url = f"postgresql://energy:pw-not-shown@127.0.0.1:{support.closed_port()}/energyctl"
    started = time.monotonic()
    done = support.energyctl("consume", "--account", "1", "--amount", "5", "--key", "k",
                             *(["--json"] if as_json else []), url=url)
    assert done.returncode == 75, done
    assert time.monotonic() - started < UNAVAILABLE_WITHIN_S
    assert "Traceback" not in done.stderr and "pw-not-shown" not in done.stdout + done.stderr
    if as_json:
        assert done.json["error"] == "unavailable"
    else:
        assert done.stdout == "" and "retry with the same idempotency key" in done.stderr


@pytest.mark.slow
def test_cli_retry_with_the_same_key_after_an_outage_applies_once(cluster):
    assert support.energyctl("migrate", url=cluster.url).returncode == 0
    assert support.energyctl("seed", "--accounts", "1", "--energy", "100", url=cluster.url).returncode == 0
    cluster.stop()
    consume = ("consume", "--account", "1", "--amount", "30", "--key", "outage-1", "--json")
    assert support.energyctl(*consume, url=cluster.url).returncode == 75
    cluster.ensure_up()
    answers = [support.energyctl(*consume, url=cluster.url) for _ in range(2)]
    assert [a.returncode for a in answers] == [0, 0], answers
    assert [a.json["status"] for a in answers] == ["applied", "replayed"]
    balance = support.energyctl("balance", "--account", "1", "--json", url=cluster.url)
    assert balance.json == {"account_id": 1, "energy": 70, "held": 0}


@pytest.mark.slow
def test_cli_torture_prints_one_json_report_and_exits_0_when_every_guarantee_held():
    done = support.energyctl("torture", "--seconds", "1", "--clients", "2", "--accounts", "10", "--json", timeout=300)
    assert done.returncode == 0, done
    report = done.json
    assert report["violation_count"] == 0 and report["requests"] > 0, report
    assert set(report["faults"]) == set(FAULT_KINDS)


def _history(*answers):
    from energyctl.torture.history import History, KeyHistory

    entry = KeyHistory("k1", account=1, amount=10, sends=len(answers), answers=list(answers))
    return History(keys={"k1": entry}, requests=len(answers), crashes=[], conflicting_sends=[], kills_in_flight=0)


APPLIED = {"outcome": "applied", "entry_id": 7, "amount": 10, "balance_after": 90}
RECORD = (7, 1, 10, "k1", 90, "consume", None)


@pytest.mark.parametrize("history, records, expected", [
    (_history(APPLIED), [], "answered applied but is not recorded"),
    (_history({**APPLIED, "entry_id": 6}), [RECORD], "was answered"),
    (_history(APPLIED, {**APPLIED, "outcome": "applied"}), [RECORD], "answered applied 2 times"),
    (_history({"outcome": "unavailable"}, {"outcome": "insufficient_energy"}), [RECORD], "refused"),
    (_history({"outcome": "idempotency_key_mismatch"}), [], "was answered idempotency_key_mismatch"),
    (_history(), [(7, 1, 10, "ghost", 90, "consume", None)], "no client ever sent it"),
], ids=["answered-not-recorded", "wrong-id", "applied-twice", "refused-but-recorded", "mismatch-on-own-key",
        "phantom-record"])
def test_the_audit_catches_each_kind_of_violation(history, records, expected):
    # Balances, chains and keys recorded twice are the ledger audit's (tests/test_audit.py).
    from energyctl.torture.check import violations

    found = violations(history, records)
    assert any(expected in violation for violation in found), found


def test_the_audit_passes_a_clean_history_with_a_lost_answer_and_its_replay():
    from energyctl.torture.check import violations

    history = _history({"outcome": "unavailable"}, {**APPLIED, "outcome": "replayed"})
    assert violations(history, [RECORD]) == []
