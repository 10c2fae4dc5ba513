"""The ledger audit: clean on every ledger the product writes, and catching each kind of planted damage."""

import json

import pytest
from django.db import connection

from energy.application.accounts import seed_accounts
from energy.application.audit import audit_ledger, problems
from energy.application.consume import consume


def spend(account_id: int, *amounts: int, prefix: str = "k") -> None:
    for n, amount in enumerate(amounts):
        consume(account_id=account_id, amount=amount, idempotency_key=f"{prefix}{account_id}-{n}")


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def ledger():
    """Accounts 1..3 with 100 each; 1 and 2 have three consumptions, 3 none."""
    seed_accounts(count=3, energy=100)
    spend(1, 10, 20, 30)
    spend(2, 5, 15, 25)


def problems_by_account(report) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for violation in report.violations:
        found.setdefault(violation.account_id, []).append(violation.problem)
    return found


# Damage planted behind the ledger's back, each inside the test's transaction (rolled back
# afterwards, dropped constraints included): (statements, damaged account, a phrase it must report).
DAMAGE = {
    "balance changed": (["UPDATE energy_account SET energy = energy - 7 WHERE id = 2"], 2,
                        "energy is 48, but opening energy 100 - consumed 45 = 55"),
    "middle record deleted": (["DELETE FROM energy_consumption WHERE idempotency_key = 'k1-1'"], 1,
                              "do not continue the one before"),
    "newest record deleted": (["DELETE FROM energy_consumption WHERE idempotency_key = 'k2-2'"], 2,
                              "the chain ends at balance_after 80, but energy is 55"),
    "oldest record deleted": (["DELETE FROM energy_consumption WHERE idempotency_key = 'k1-0'"], 1,
                              "does not start at the opening energy 100"),
    "record duplicated": ([
        "ALTER TABLE energy_consumption DROP CONSTRAINT energy_consumption_client_key_unique",
        "INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after, created_at)"
        " SELECT client_id, account_id, amount, idempotency_key, balance_after, created_at"
        " FROM energy_consumption WHERE idempotency_key = 'k2-1'",
    ], 2, "1 keys are recorded more than once for one client, e.g. 'k2-1'"),
    "chain broken": (["UPDATE energy_consumption SET balance_after = balance_after + 1 WHERE idempotency_key = 'k1-1'"],
                     1, "do not continue the one before"),
    "opening energy rewritten": (["UPDATE energy_account SET opening_energy = 90 WHERE id = 1"], 1,
                                 "does not start at the opening energy 90"),
    "negative balance": ([
        "ALTER TABLE energy_account DROP CONSTRAINT energy_account_energy_not_negative",
        "UPDATE energy_account SET energy = -5 WHERE id = 3",
    ], 3, "energy is negative: -5"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_the_audit_names_the_damaged_account_and_only_it(damage):
    statements, account, phrase = DAMAGE[damage]
    ledger()
    assert audit_ledger().clean
    sql("SET CONSTRAINTS ALL IMMEDIATE")  # run the deferred foreign-key checks, so ALTER TABLE may follow
    for statement in statements:
        sql(statement)

    report = audit_ledger()

    found = problems_by_account(report)
    assert set(found) == {account}, found
    assert any(phrase in problem for problem in found[account]), found


@pytest.mark.django_db
def test_a_key_duplicated_across_two_accounts_names_both():
    ledger()
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    sql("ALTER TABLE energy_consumption DROP CONSTRAINT energy_consumption_client_key_unique")
    sql("INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after, created_at)"
        " VALUES (1, 3, 10, 'k1-0', 90, now())")
    sql("UPDATE energy_account SET energy = 90 WHERE id = 3")

    found = problems_by_account(audit_ledger())

    assert set(found) == {1, 3}, found
    assert all(any("recorded more than once" in p for p in found[a]) for a in (1, 3)), found


@pytest.mark.django_db
def test_records_of_an_account_that_no_longer_exists_are_named():
    ledger()
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.cursor() as cursor:
        cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'energy_consumption'::regclass"
                       " AND confrelid = 'energy_account'::regclass")
        (foreign_key,), = cursor.fetchall()
    sql(f'ALTER TABLE energy_consumption DROP CONSTRAINT "{foreign_key}"')
    sql("DELETE FROM energy_account WHERE id = 2")

    report = audit_ledger()

    assert problems_by_account(report) == {2: ["3 entries are recorded for an account that does not exist"]}
    assert (report.accounts, report.consumptions) == (2, 6)


@pytest.mark.django_db
def test_a_clean_ledger_counts_what_it_checked():
    # That it checks one snapshot, consumes running or not, is the multi-process test's below.
    ledger()
    report = audit_ledger()

    assert report.clean, report.violations
    assert (report.accounts, report.consumptions) == (3, 6)
    assert report.seconds >= 0


@pytest.mark.django_db
def test_an_empty_ledger_is_clean():
    report = audit_ledger()

    assert report.clean and (report.accounts, report.consumptions) == (0, 0)


@pytest.mark.django_db
def test_a_swapped_history_with_a_consistent_looking_chain_is_judged_by_balance_after_order():
    # Records whose ids run against the chain are fine (a batch inserts in key order); what
    # counts is that, from the highest balance_after down, each one continues the one before.
    seed_accounts(count=1, energy=100)
    sql("INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after, created_at)"
        " VALUES (1, 1, 20, 'second', 70, now()), (1, 1, 10, 'first', 90, now())")
    sql("UPDATE energy_account SET energy = 70 WHERE id = 1")

    assert audit_ledger().clean


@pytest.mark.django_db(transaction=True)
def test_clean_after_a_replay_file_whose_batches_insert_out_of_chain_order(tmp_path):
    from typer.testing import CliRunner

    from energy.models import Entry
    from energyctl.app import app

    seed_accounts(count=3, energy=1000)
    # Keys in falling order for one account: the batch applies z, y, x but inserts x, y, z.
    lines = [{"account_id": 1, "amount": n + 1, "idempotency_key": key} for n, key in enumerate("zyxwv")]
    lines += [{"account_id": 2, "amount": 7, "idempotency_key": f"b{n}"} for n in range(50)]
    lines += [{"account_id": 3, "amount": 2000, "idempotency_key": "too-much"}, lines[0]]
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = CliRunner().invoke(app, ["replay", str(path), "--json"])
    assert result.exit_code == 6, result.output  # the one refused line

    chain = Entry.objects.filter(account_id=1).order_by("-balance_after")
    ids_by_chain = list(chain.values_list("id", flat=True))
    assert ids_by_chain != sorted(ids_by_chain), "the batch no longer inserts out of chain order; test needs new data"
    report = audit_ledger()
    assert report.clean, report.violations
    assert report.consumptions == 55


@pytest.mark.django_db(transaction=True)
def test_the_audit_reads_a_race_demo_schema_and_catches_damage_there():
    from energy.race.sandbox import DemoSchema

    schema = DemoSchema.create()
    try:
        schema.create_real_tables()
        account, consumption = schema.table("energy", "account"), schema.table("energy", "consumption")
        sql(f"INSERT INTO {account} (id, energy, opening_energy) VALUES (1, 100, 100)")  # noqa: S608 - quoted table name
        assert audit_ledger(schema=schema.name).clean
        sql(f"INSERT INTO {consumption} (client_id, account_id, amount, idempotency_key, balance_after, created_at)"  # noqa: S608 - quoted table name
            " VALUES (1, 1, 10, 'k', 90, now())")

        found = problems_by_account(audit_ledger(schema=schema.name))
    finally:
        schema.drop()

    assert list(found) == [1] and "energy is 100, but opening energy 100 - consumed 10 = 90" in found[1]
    assert audit_ledger().accounts == 0  # the real tables were never read as the demo's


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_clean_after_the_race_demo_whose_burst_audits_its_own_tables():
    from energy.race import run_demo

    seed_accounts(count=2, energy=100)
    spend(1, 30)
    before = audit_ledger()

    report = run_demo(workers=3, scenarios=["protected"])

    protected = report.scenarios[0]
    # The burst's anomalies include the ledger audit of the demo's own copy of the tables.
    assert protected.holds and protected.anomalies == [], protected
    after = audit_ledger()
    assert after.clean and (after.accounts, after.consumptions) == (before.accounts, before.consumptions) == (2, 1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_torture_run_audits_its_database_with_the_same_ledger_audit():
    from energyctl.torture.check import ledger_violations
    from tests.support import test_database_url

    ledger()
    assert ledger_violations(test_database_url()) == []
    sql("UPDATE energy_account SET energy = energy + 1 WHERE id = 2")

    found = ledger_violations(test_database_url())

    assert found and all(v.startswith("ledger audit, account 2: ") for v in found), found


@pytest.mark.slow
def test_the_audit_runs_on_sqlite_through_the_installed_script(tmp_path):
    import sqlite3

    from tests.support import energyctl

    def run(*args):
        return energyctl(*args, url=f"sqlite:///{tmp_path / 'ledger.db'}")

    for setup in (["migrate"], ["seed", "--accounts", "2", "--energy", "100"],
                  ["consume", "--account", "1", "--amount", "30", "--key", "a"],
                  ["consume", "--account", "1", "--amount", "20", "--key", "b"]):
        assert run(*setup).returncode == 0
    clean = run("audit", "--json")
    assert clean.returncode == 0, clean
    assert clean.json["violations"] == []
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        db.execute("UPDATE energy_consumption SET balance_after = 71 WHERE idempotency_key = 'a'")

    damaged = run("audit", "--json")

    assert damaged.returncode == 1, damaged
    assert {v["account_id"] for v in damaged.json["violations"]} == {1}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_audit_is_clean_while_processes_consume_because_one_statement_sees_one_snapshot():
    from tests.audit_workers import audit_worker
    from tests.workers import consume_worker, run_workers

    seed_accounts(count=2, energy=10**9)
    plans = [[(1 + n % 2, 1 + n % 5, f"p{p}-{n}") for n in range(300)] for p in range(3)]
    outcomes = run_workers([(consume_worker, (plan,)) for plan in plans] + [(audit_worker, (900,))])

    audits = [o for o in outcomes if o.get("audit")]
    assert all(a["clean"] for a in audits), [a["violations"] for a in audits if not a["clean"]]
    # The audits ran while the consumes did: some saw part of them, and the last saw them all.
    assert any(0 < a["consumptions"] < 900 for a in audits), [a["consumptions"] for a in audits]
    assert audits[-1]["consumptions"] == 900 == audit_ledger().consumptions


def ledger_of_every_kind():
    """Accounts 1..3 with 100 each: 1 consumes, is credited and has a consumption reversed; 2 only consumes."""
    from energy.application.entries import credit, reverse

    seed_accounts(count=3, energy=100)
    spend(1, 10, 20)
    credit(account_id=1, amount=50, idempotency_key="gift-1")
    reverse(idempotency_key="k1-0")
    spend(1, 5, prefix="late")
    spend(2, 5, 15)


# Damage to a ledger of every kind: (statements, damaged account, a phrase it must report).
KIND_DAMAGE = {
    "credit's amount rewritten": (["UPDATE energy_consumption SET amount = 49 WHERE idempotency_key = 'gift-1'"], 1,
                                  "energy is 125, but opening energy 100 + credited 49 + reversed 10 - consumed 35"),
    "reversal gives back more than its consumption": ([
        "UPDATE energy_consumption SET amount = 11, balance_after = balance_after + 1 WHERE kind = 'reversal'",
        "UPDATE energy_consumption SET balance_after = balance_after + 1 WHERE idempotency_key = 'late1-0'",
        "UPDATE energy_account SET energy = energy + 1 WHERE id = 1",
    ], 1, "1 reversals do not give back exactly a consumption or a capture of this account"),
    "reversal of a credit": ([
        "UPDATE energy_consumption SET target_id = (SELECT id FROM energy_consumption WHERE idempotency_key = 'gift-1')"
        " WHERE kind = 'reversal'",
    ], 1, "1 reversals do not give back exactly a consumption or a capture of this account"),
    "consumption reversed twice": ([
        "DROP INDEX energy_entry_one_reversal_per_target",
        "INSERT INTO energy_consumption (client_id, account_id, kind, amount, target_id, balance_after, seq,"
        " created_at) SELECT client_id, account_id, kind, amount, target_id, balance_after + 5, 6, now()"
        " FROM energy_consumption WHERE kind = 'reversal'",
        "UPDATE energy_account SET energy = energy + 10, last_seq = 6 WHERE id = 1",
    ], 1, "2 reversals reverse an entry reversed more than once"),
    "position skipped": (["UPDATE energy_account SET last_seq = 7 WHERE id = 2"], 2,
                         "the chain's positions are not 1 to 7 (last_seq)"),
    "entries swapped in the chain": ([
        "UPDATE energy_consumption SET seq = 99 WHERE idempotency_key = 'gift-1'",
        "UPDATE energy_consumption SET seq = 3 WHERE idempotency_key = 'late1-0'",
        "UPDATE energy_consumption SET seq = 5 WHERE idempotency_key = 'gift-1'",
    ], 1, "do not continue the one before"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("damage", KIND_DAMAGE, ids=list(KIND_DAMAGE))
def test_the_audit_checks_credits_reversals_and_positions_and_names_the_damaged_account(damage):
    statements, account, phrase = KIND_DAMAGE[damage]
    ledger_of_every_kind()
    clean = audit_ledger()
    assert clean.clean, clean.violations
    assert (clean.consumptions, clean.entries) == (5, 7)
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    for statement in statements:
        sql(statement)

    found = problems_by_account(audit_ledger())

    assert set(found) == {account}, found
    assert any(phrase in problem for problem in found[account]), found


@pytest.mark.django_db
def test_entries_from_before_positions_come_first_in_the_chain():
    """Rows recorded before the chain was numbered (seq NULL) lead it, in balance_after order; numbered ones follow."""
    from energy.application.entries import credit

    seed_accounts(count=1, energy=100)
    sql("INSERT INTO energy_consumption (client_id, account_id, amount, idempotency_key, balance_after, created_at)"
        " VALUES (1, 1, 20, 'second', 70, now()), (1, 1, 10, 'first', 90, now())")
    sql("UPDATE energy_account SET energy = 70 WHERE id = 1")
    credit(account_id=1, amount=100, idempotency_key="later")
    spend(1, 150)

    report = audit_ledger()

    assert report.clean, report.violations
    assert (report.consumptions, report.entries) == (3, 4)


def ledger_with_holds():
    """Account 1 (100): a hold captured in part (30, 20 spent), a hold voided (10), a hold left open (15), a
    capture reversed (hold 5, all spent); account 2 (100): one open hold of 40 and a consume of 10."""
    from energy.application.entries import reverse
    from energy.application.holds import capture, hold, void

    seed_accounts(count=2, energy=100)
    hold(account_id=1, amount=30, idempotency_key="captured")
    capture(idempotency_key="captured", amount=20)
    hold(account_id=1, amount=10, idempotency_key="voided")
    void(idempotency_key="voided")
    hold(account_id=1, amount=15, idempotency_key="open")
    hold(account_id=1, amount=5, idempotency_key="reversed")
    capture(idempotency_key="reversed")
    reverse(idempotency_key="reversed")
    hold(account_id=2, amount=40, idempotency_key="other")
    spend(2, 10)


# Damage to a ledger with holds: (statements, damaged account, a phrase it must report).
HOLD_DAMAGE = {
    "held changed behind the ledger's back": (["UPDATE energy_account SET held = held + 5 WHERE id = 2"], 2,
                                              "held is 45, but the account's open holds add up to 40"),
    "energy moved to held without a hold": (["UPDATE energy_account SET energy = energy - 5, held = held + 5"
                                             " WHERE id = 2"], 2, "held is 45, but the account's open holds add up"),
    "captured amount rewritten": ([
        "UPDATE energy_consumption SET amount = 25 WHERE"
        " kind = 'capture' AND target_id = (SELECT id FROM energy_consumption WHERE idempotency_key = 'captured')",
    ], 1, "energy + held is 65 + 15 = 80, but opening energy 100 + reversed 5 - consumed 0 - captured 30 = 75"),
    "capture above its hold": ([
        "UPDATE energy_consumption SET amount = 31, balance_after = balance_after - 11 WHERE"
        " kind = 'capture' AND target_id = (SELECT id FROM energy_consumption WHERE idempotency_key = 'captured')",
        "UPDATE energy_consumption SET balance_after = balance_after - 11 WHERE seq > 2 AND account_id = 1",
        "UPDATE energy_account SET energy = energy - 11 WHERE id = 1",
    ], 1, "1 captures or voids do not resolve a hold of this account as recorded"),
    "void of less than its hold": ([
        "UPDATE energy_consumption SET amount = 9 WHERE kind = 'void'",
    ], 1, "1 captures or voids do not resolve a hold of this account as recorded"),
    "open hold marked captured": ([
        "UPDATE energy_consumption SET state = 'captured' WHERE idempotency_key = 'open'",
    ], 1, "1 holds are marked captured or voided with no capture or void recorded"),
    "voided hold reopened": ([
        "UPDATE energy_consumption SET state = 'open' WHERE idempotency_key = 'voided'",
    ], 1, "do not resolve a hold of this account as recorded"),
    "hold resolved twice": ([
        "DROP INDEX energy_entry_one_resolution_per_hold",
        "INSERT INTO energy_consumption (client_id, account_id, kind, amount, target_id, balance_after, held_after,"
        " seq, created_at) SELECT client_id, account_id, 'void', 10, target_id, balance_after + 10, held_after, 9,"
        " now() FROM energy_consumption WHERE kind = 'void'",
        "UPDATE energy_account SET last_seq = 9 WHERE id = 1",
    ], 1, "2 captures or voids resolve a hold resolved more than once"),
    "capture of a consume": ([
        "UPDATE energy_consumption SET target_id = (SELECT id FROM energy_consumption WHERE account_id = 2"
        " AND kind = 'consume') WHERE kind = 'capture'"
        " AND target_id = (SELECT id FROM energy_consumption WHERE idempotency_key = 'captured')",
    ], 1, "do not resolve a hold of this account as recorded"),
    "reversal of a capture that gives back more": ([
        "UPDATE energy_consumption SET amount = 6, balance_after = balance_after + 1 WHERE kind = 'reversal'",
        "UPDATE energy_account SET energy = energy + 1 WHERE id = 1",
    ], 1, "1 reversals do not give back exactly a consumption or a capture of this account"),
    "hold's held_after rewritten": ([
        "UPDATE energy_consumption SET held_after = held_after + 3 WHERE idempotency_key = 'open'",
    ], 1, "do not continue the one before"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("damage", HOLD_DAMAGE, ids=list(HOLD_DAMAGE))
def test_the_audit_checks_holds_and_their_resolutions_and_names_the_damaged_account(damage):
    statements, account, phrase = HOLD_DAMAGE[damage]
    ledger_with_holds()
    clean = audit_ledger()
    assert clean.clean, clean.violations
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    for statement in statements:
        sql(statement)

    found = problems_by_account(audit_ledger())

    assert set(found) == {account}, found
    assert any(phrase in problem for problem in found[account]), found


@pytest.mark.django_db
def test_an_expired_hold_not_yet_released_is_still_held_in_the_stored_rows_and_clean():
    from energy.application.holds import expire_holds, hold

    seed_accounts(count=1, energy=100)
    hold(account_id=1, amount=30, idempotency_key="h")
    sql("UPDATE energy_consumption SET expires_at = statement_timestamp() WHERE idempotency_key = 'h'")
    assert audit_ledger().clean

    expire_holds()

    report = audit_ledger()
    assert report.clean, report.violations


def audit_row(**changes) -> dict:
    """One account's audit row that breaks nothing: 100 opening, a consume of 10, a hold of 20 open."""
    row = {"missing": False, "records": 2, "energy": 70, "held": 20, "opening_energy": 100, "net": -10,
           "consumed": 10, "credited": 0, "reversed": 0, "captured": 0, "open_holds": 20, "unknown_kinds": 0,
           "chain_start": 100, "chain_end": 90, "first_id": 1, "broken_links": 0, "first_broken": None,
           "numbered": 2, "highest_seq": 2, "last_seq": 2, "bad_reversals": 0, "first_bad_reversal": None,
           "repeated_reversals": 0, "bad_resolutions": 0, "first_bad_resolution": None, "repeated_resolutions": 0,
           "unresolved_holds": 0, "first_unresolved": None, "duplicate_keys": 0, "example_key": None}
    return {**row, **changes}


@pytest.mark.parametrize("changes, phrase", [
    ({"held": 25, "chain_end": 95, "net": -5}, "held is 25, but the account's open holds add up to 20"),
    ({"held": -1, "open_holds": -1, "energy": 91, "chain_end": 90}, "held is negative: -1"),
    ({"energy": 75}, "energy + held is 75 + 20 = 95, but opening energy 100 - consumed 10 = 90"),
    ({"captured": 5, "net": -15, "energy": 65, "chain_end": 85},
     None),
    ({"chain_end": 70}, "the chain ends at a total of 70, but energy + held is 90"),
    ({"bad_resolutions": 1, "first_bad_resolution": 4}, "do not resolve a hold of this account as recorded"),
    ({"repeated_resolutions": 2}, "2 captures or voids resolve a hold resolved more than once"),
    ({"unresolved_holds": 1, "first_unresolved": 3}, "1 holds are marked captured or voided"),
])
def test_problems_names_each_broken_hold_invariant_of_an_audit_row(changes, phrase):
    assert problems(audit_row()) == []
    found = problems(audit_row(**changes))
    if phrase is None:
        assert found == [], found
    else:
        assert any(phrase in problem for problem in found), found
