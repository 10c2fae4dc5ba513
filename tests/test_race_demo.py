"""The race demo breaks each unsafe variant on every run, never the real path, and leaves no trace.

What each scenario must show is the contract's table, written out below, not the demo's own list.
"""

import json
import multiprocessing
from dataclasses import dataclass

import pytest
from django.db import connection
from django.db.utils import ConnectionHandler
from rich.console import Console

from energy.models import OPERATOR, OPERATOR_CLIENT_ID, Account, Client, Entry
from energy.race import DemoReport, DemoUnsupported, ScenarioResult, Step, run_demo
from energy.race.demo import check_backend
from energyctl.race_view import render

# The demo runs real processes: every test that runs it is slow. Those may share the runs of
# one module fixture; the mark makes sure the test database exists for it even when only some
# tests are selected.
pytestmark = pytest.mark.django_db(transaction=True)
RUNS = 3
BALANCE, AMOUNT = 100, 60

# /work/shared/CONTRACT.md, "Race demo": scenario, protection removed, what it must show.
CONTRACT_TABLE = [
    ("protected", "none", "no anomaly"),
    ("no_select_for_update", "row lock (balance read without `FOR UPDATE`, deducted with `F()`)",
     "overdraw: balance below zero, or more consumed than there was"),
    ("no_unique_key", "UNIQUE on the key", "one key deducted more than once"),
    ("no_atomic", "transaction", "partial write (record without deduction, or deduction without record)"),
    ("no_f_expression", "`F()` update (new balance computed in Python from a value read before the write, then saved)",
     "lost update: a stale balance overwrites a concurrent deduction"),
    ("no_hold_lock", "the hold's row lock (capture and void each check the hold's state without locking it)",
     "a hold resolved twice: captured and voided, energy both spent and given back"),
]
CONTRACT_NAMES = [name for name, _, _ in CONTRACT_TABLE]
# The fields the contract's --json fixes for each scenario.
CONTRACT_FIELDS = {"name", "protection_removed", "expected_balance", "final_balance", "consumptions_recorded",
                   "anomalies", "holds"}


def _money(entry: dict) -> tuple[int, int, int]:
    """(start, deducted, recorded) of a two-request scenario in which each request asks AMOUNT."""
    start = entry["expected_balance"] + AMOUNT
    return start, start - entry["final_balance"], entry["consumptions_recorded"] * AMOUNT


def _shows(must_show: str, entry: dict) -> bool:
    """Whether a scenario's --json entry shows what the contract's "must show" column names."""
    start, deducted, recorded = _money(entry)
    if must_show == "no anomaly":
        return entry["holds"] is True and entry["anomalies"] == [] and entry["final_balance"] == entry[
            "expected_balance"]
    broke = entry["holds"] is False and entry["anomalies"] != []
    if must_show.startswith("overdraw"):
        return broke and (entry["final_balance"] < 0 or recorded > start)
    if must_show.startswith("one key deducted more than once"):
        return broke and entry["consumptions_recorded"] >= 2 and deducted >= 2 * AMOUNT
    if must_show.startswith("partial write"):
        return broke and deducted != recorded
    if must_show.startswith("lost update"):
        return broke and entry["consumptions_recorded"] == 2 and deducted == AMOUNT
    if must_show.startswith("a hold resolved twice"):
        # A hold of AMOUNT captured (one capture recorded: spent), yet the energy ends where it
        # started, as if it had been voided (given back); the anomaly names both resolutions.
        return (broke and entry["consumptions_recorded"] == 1 and entry["final_balance"] == start
                and any("captured and voided" in anomaly for anomaly in entry["anomalies"]))
    raise AssertionError(f"no check written for {must_show!r}")


def contract_rows() -> list:
    return [pytest.param(name, removed, must_show, id=name) for name, removed, must_show in CONTRACT_TABLE]


@dataclass
class Runs:
    reports: list[DemoReport]
    real_before: tuple
    real_after: tuple
    schemas_left: list[str]


def real_state() -> tuple:
    return (
        list(Account.objects.order_by("pk").values_list("pk", "energy")),
        list(Entry.objects.order_by("pk").values_list("pk", "idempotency_key", "amount", "balance_after")),
    )


def demo_schemas() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'energy_race_%'")
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture(scope="module")
def runs(django_db_setup, django_db_blocker):
    """The whole demo, run several times next to real data that must come out untouched."""
    with django_db_blocker.unblock():
        Account.objects.create(id=1, energy=500, opening_energy=500)
        operator, _ = Client.objects.get_or_create(id=OPERATOR_CLIENT_ID, defaults={"name": OPERATOR})
        Entry.objects.create(account=Account(pk=1), client=operator, amount=5, idempotency_key="real-1",
                                   balance_after=495)
        Account.objects.filter(pk=1).update(energy=495)
        before = real_state()
        try:
            # The default size once, then smaller pools: the races need two processes.
            reports = [run_demo(workers=workers, balance=BALANCE, amount=AMOUNT)
                       for workers in (8,) + (3,) * (RUNS - 1)]
            return Runs(reports, before, real_state(), demo_schemas())
        finally:
            Entry.objects.all().delete()
            Account.objects.all().delete()


def scenario(report: DemoReport, name: str) -> ScenarioResult:
    return next(result for result in report.scenarios if result.name == name)


@pytest.mark.slow
@pytest.mark.parametrize("name, removed, must_show", contract_rows())
def test_every_run_shows_what_the_contract_says_each_scenario_must(runs, name, removed, must_show):
    for report in runs.reports:
        entries = {entry["name"]: entry for entry in json.loads(json.dumps(report.to_dict()))["scenarios"]}
        assert name in entries, f"the demo has no scenario {name!r}"
        entry = entries[name]
        # The report names the protection in the contract's words (details in brackets aside).
        words = removed.split(" (")[0].replace("`", "").split()
        assert all(word in entry["protection_removed"].split() for word in words), (removed, entry)
        assert _shows(must_show, entry), (must_show, entry)


@pytest.mark.slow
def test_every_run_is_ok_and_reports_only_contract_scenarios_in_the_contracts_order(runs):
    for report in runs.reports:
        assert report.ok, report.to_dict()
        names = [result.name for result in report.scenarios]
        assert names == CONTRACT_NAMES, names


@pytest.mark.slow
def test_protected_path_never_shows_an_anomaly(runs):
    for report in runs.reports:
        result = scenario(report, "protected")
        assert result.holds and result.anomalies == [], result.anomalies
        assert (result.final_balance, result.expected_balance, result.consumptions_recorded) == (40, 40, 1)


@pytest.mark.slow
def test_protected_t2_waits_for_t1s_lock_then_reads_the_committed_balance(runs):
    for report in runs.reports:
        timeline = scenario(report, "protected").timeline
        waited = timeline.index(Step("T2", "waits for the lock T1 holds"))
        committed = timeline.index(Step("T1", "commits"))
        refused = next(i for i, step in enumerate(timeline) if step.session == "T2" and "reads 40" in step.text)
        assert waited < committed < refused, timeline


@pytest.mark.slow
def test_protected_burst_ran_every_process_through_the_real_use_case(runs):
    for report in runs.reports:
        burst = scenario(report, "protected").timeline[-1].text
        assert burst.startswith(f"burst: {report.workers} processes x 50 requests"), burst
        assert "replayed" in burst, burst


@pytest.mark.slow
def test_without_row_lock_both_processes_deduct_and_the_balance_goes_below_zero(runs):
    for report in runs.reports:
        result = scenario(report, "no_select_for_update")
        assert (result.final_balance, result.consumptions_recorded) == (-20, 2)
        assert "overdraw: 120 consumed from a balance of 100, leaving -20" in result.anomalies
        assert not result.holds


@pytest.mark.slow
def test_without_row_lock_the_overdraw_also_needs_the_missing_check_and_says_so(runs):
    for report in runs.reports:
        result = scenario(report, "no_select_for_update")
        assert result.balance_check is False
        notes = [step.text for step in result.timeline if not step.session]
        assert any("lack CHECK (energy >= 0) too" in note for note in notes), notes


@pytest.mark.slow
def test_with_the_check_kept_the_same_race_ends_in_an_integrity_error_not_insufficient_energy(runs):
    for report in runs.reports:
        result = scenario(report, "no_select_for_update")
        assert result.with_balance_check == {
            "final_balance": 40, "consumptions_recorded": 1, "outcomes": {"T1": "applied", "T2": "integrity_error"},
        }
        assert any(anomaly.startswith("with CHECK (energy >= 0) kept: no overdraw (balance 40), but T2 gets an "
                                      "integrity error") for anomaly in result.anomalies), result.anomalies
        refused = [step for step in result.timeline
                   if step.session == "T2" and "CHECK (energy >= 0) refuses" in step.text]
        assert len(refused) == 1, result.timeline


@pytest.mark.slow
def test_every_other_scenario_keeps_the_check_so_it_shows_only_its_own_removed_protection(runs):
    for report in runs.reports:
        for result in report.scenarios:
            if result.name != "no_select_for_update":
                assert result.balance_check is True and result.with_balance_check is None, result.name


@pytest.mark.slow
def test_without_unique_key_a_retried_key_is_deducted_twice(runs):
    for report in runs.reports:
        result = scenario(report, "no_unique_key")
        assert (result.final_balance, result.expected_balance, result.consumptions_recorded) == (0, 60, 2)
        assert result.anomalies == ["duplicate: key 'order-1' applied 2 times, 120 deducted"]


@pytest.mark.slow
def test_without_transaction_a_crash_between_the_writes_leaves_a_record_without_deduction(runs):
    for report in runs.reports:
        result = scenario(report, "no_atomic")
        assert (result.final_balance, result.expected_balance, result.consumptions_recorded) == (100, 40, 1)
        assert Step("T1", "crashes here (the demo sends it SIGKILL)") in result.timeline
        assert any(anomaly.startswith("partial write: 60 recorded") for anomaly in result.anomalies), result.anomalies


@pytest.mark.slow
def test_without_f_expression_a_stale_balance_overwrites_the_other_deduction(runs):
    for report in runs.reports:
        result = scenario(report, "no_f_expression")
        assert (result.final_balance, result.consumptions_recorded) == (40, 2)
        assert any(anomaly.startswith("lost update: 60 recorded") for anomaly in result.anomalies), result.anomalies


@pytest.mark.slow
def test_without_hold_lock_one_hold_is_captured_and_voided_so_its_energy_is_spent_and_given_back(runs):
    for report in runs.reports:
        result = scenario(report, "no_hold_lock")
        assert (result.final_balance, result.expected_balance, result.consumptions_recorded) == (100, 40, 1)
        assert result.anomalies == [
            "resolved twice: hold 'hold-1' captured and voided (its state says voided): "
            "60 spent and 60 given back from one hold of 60",
            "held is -60, but the open holds reserve 0",
        ]
        t1_wrote = result.timeline.index(Step("T1", "records a capture of hold-1, spends the 60 held, "
                                                    "marks it captured: energy 40, held 0"))
        unlocked = "reads hold hold-1: open (no lock on the hold or its account)"
        reads = [i for i, step in enumerate(result.timeline) if step.text.endswith(unlocked)]
        assert len(reads) == 2 and max(reads) < t1_wrote, result.timeline


@pytest.mark.slow
def test_protected_capture_and_void_of_one_hold_queue_on_the_lock_and_exactly_one_wins(runs):
    for report in runs.reports:
        result = scenario(report, "protected")
        timeline = result.timeline
        captured = timeline.index(Step("T1", "capture() locks the account, finds hold hold-1 open, spends 60 "
                                             "(not committed yet)"))
        waited = timeline.index(Step("T2", "waits for the lock T1 holds"), captured)
        committed = timeline.index(Step("T1", "commits"), waited)
        refused = next(i for i, step in enumerate(timeline) if step.session == "T2" and step.text.startswith(
            "void() gets the lock, answers invalid_state and writes nothing"))
        assert captured < waited < committed < refused, timeline
        assert Step("", "ends with energy 40, held 0, and 1 resolution(s) of the hold: capture") in timeline


@pytest.mark.slow
def test_every_run_interleaves_the_processes_identically(runs):
    def steps(report):
        # The burst's counts depend on timing; every two-process timeline must not.
        return {result.name: [s for s in result.timeline if not s.text.startswith("burst:")]
                for result in report.scenarios}

    first = steps(runs.reports[0])
    for report in runs.reports[1:]:
        assert steps(report) == first


@pytest.mark.slow
def test_real_tables_are_untouched_and_the_demo_schema_is_gone(runs):
    assert runs.real_after == runs.real_before
    assert runs.schemas_left == []


@pytest.mark.slow
def test_json_report_has_the_contract_shape(runs):
    document = json.loads(json.dumps(runs.reports[0].to_dict()))
    assert set(document) == {"backend", "workers", "scenarios"}
    assert document["backend"].startswith("postgresql ")
    assert document["workers"] == 8
    for entry in document["scenarios"]:
        extra = {"with_balance_check"} if entry["name"] == "no_select_for_update" else set()
        assert CONTRACT_FIELDS <= set(entry) <= CONTRACT_FIELDS | {"timeline", "balance_check"} | extra
        numbers = ("expected_balance", "final_balance", "consumptions_recorded")
        assert all(isinstance(entry[key], int) for key in numbers)
        assert isinstance(entry["holds"], bool) and entry["holds"] == (entry["anomalies"] == [])
        assert all(set(step) == {"session", "text"} for step in entry["timeline"])


@pytest.mark.slow
def test_view_fits_80_columns_and_shows_each_scenario_with_its_timeline(runs):
    for soft_wrap in (False, True):
        console = Console(width=80, record=True, force_terminal=False, soft_wrap=soft_wrap)
        render(runs.reports[0], console)
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= 80, text
    for result in runs.reports[0].scenarios:
        assert result.name in text
    assert "T2 waits for the lock T1 holds" in text
    assert "OK: 5 unsafe variants broke as expected; the protected path held (" in text


@pytest.mark.slow
def test_options_are_honoured_and_a_killed_process_is_replaced():
    # With two processes the one killed in no_atomic is needed again by protected.
    report = run_demo(workers=2, balance=10, amount=7, scenarios=["no_atomic", "protected"])
    assert report.ok, report.to_dict()
    assert [result.name for result in report.scenarios] == ["no_atomic", "protected"]
    assert scenario(report, "no_atomic").final_balance == 10
    assert scenario(report, "protected").final_balance == 3
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_demo_cleans_up_its_schema_and_processes_when_interrupted():
    def interrupt(message):
        if message.startswith("no_unique_key"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_demo(workers=2, on_progress=interrupt)
    assert demo_schemas() == []
    assert multiprocessing.active_children() == []


def test_demo_refuses_sqlite_with_a_clear_message():
    sqlite = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})["default"]
    with pytest.raises(DemoUnsupported, match="needs PostgreSQL; the configured database is sqlite"):
        check_backend(sqlite)


@pytest.mark.parametrize("options, message", [
    ({"workers": 1}, "workers must be between 2"),
    ({"amount": 50}, "amount must be more than half the balance"),
    ({"amount": 101}, "amount must be between 1 and the balance"),
    ({"balance": 0}, "balance must be between 1"),
    ({"workers": True}, "workers must be an integer"),
    ({"scenarios": ["no_lock"]}, "unknown scenario 'no_lock'"),
    ({"scenarios": []}, "unknown scenario"),
])
def test_options_that_could_not_show_the_races_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        run_demo(**options)


def test_ok_needs_the_protected_path_to_hold_and_every_unsafe_variant_to_break():
    def result(name, anomalies, shown):
        return ScenarioResult(name, "x", 40, 40, 1, anomalies=anomalies, failure_shown=shown)

    held = result("protected", [], False)
    broke = result("no_unique_key", ["duplicate: key 'k' applied 2 times, 120 deducted"], True)
    assert DemoReport("postgresql 18.0", 2, [held, broke]).ok
    assert not DemoReport("postgresql 18.0", 2, [result("protected", ["overdraw"], True), broke]).ok
    assert not DemoReport("postgresql 18.0", 2, [held, result("no_unique_key", [], False)]).ok
    # An anomaly other than the one the scenario exists to show does not count.
    assert not DemoReport("postgresql 18.0", 2, [held, result("no_atomic", ["overdraw"], False)]).ok
    assert not DemoReport("postgresql 18.0", 2, []).ok


@pytest.mark.slow
def test_two_demos_at_once_each_work_in_their_own_tables():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def one_demo(_):
        try:
            return run_demo(workers=2, scenarios=["protected", "no_unique_key"])
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as threads:
        reports = list(threads.map(one_demo, range(2)))
    assert all(report.ok for report in reports), [report.to_dict() for report in reports]
    assert demo_schemas() == []
