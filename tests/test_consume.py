"""The consume use case on real PostgreSQL, outside any wrapping test transaction."""

import pytest
from django.db import connection

from energy.application.consume import consume
from energy.domain.exceptions import (
    AccountNotFound,
    IdempotencyKeyMismatch,
    InsufficientEnergy,
    Unavailable,
)
from energy.models import Account, Entry
from tests.support import balance

pytestmark = pytest.mark.django_db(transaction=True)


def test_success_deducts_and_records(account):
    result = consume(account_id=1, amount=30, idempotency_key="abc")
    assert result.status == "applied"
    assert (result.account_id, result.amount, result.balance_after) == (1, 30, 70)
    assert balance() == 70
    record = Entry.objects.get()
    assert (record.id, record.idempotency_key, record.balance_after) == (result.consumption_id, "abc", 70)
    assert result.created_at == record.created_at


def test_replay_returns_original_result_and_changes_nothing(account):
    first = consume(account_id=1, amount=30, idempotency_key="abc")
    consume(account_id=1, amount=10, idempotency_key="other")
    again = consume(account_id=1, amount=30, idempotency_key="abc")
    assert again.status == "replayed"
    assert {**again.to_dict(), "status": "applied"} == first.to_dict()
    assert balance() == 60
    assert Entry.objects.count() == 2


def test_replay_wins_even_when_balance_is_now_too_low(account):
    first = consume(account_id=1, amount=60, idempotency_key="big")
    consume(account_id=1, amount=40, idempotency_key="drain")
    again = consume(account_id=1, amount=60, idempotency_key="big")
    assert again.status == "replayed"
    assert again.balance_after == first.balance_after == 40
    assert balance() == 0


def test_key_reused_with_other_amount_is_a_mismatch(account):
    consume(account_id=1, amount=30, idempotency_key="abc")
    with pytest.raises(IdempotencyKeyMismatch):
        consume(account_id=1, amount=31, idempotency_key="abc")
    assert balance() == 70


def test_key_reused_with_other_account_is_a_mismatch(account):
    Account.objects.create(id=2, energy=100, opening_energy=100)
    consume(account_id=1, amount=30, idempotency_key="abc")
    with pytest.raises(IdempotencyKeyMismatch):
        consume(account_id=2, amount=30, idempotency_key="abc")
    assert (balance(1), balance(2)) == (70, 100)


def test_key_reused_on_missing_account_is_a_mismatch(account):
    consume(account_id=1, amount=30, idempotency_key="abc")
    with pytest.raises(IdempotencyKeyMismatch):
        consume(account_id=999, amount=30, idempotency_key="abc")


def test_insufficient_energy_records_nothing(account):
    with pytest.raises(InsufficientEnergy) as caught:
        consume(account_id=1, amount=101, idempotency_key="too-much")
    assert (caught.value.balance, caught.value.amount) == (100, 101)
    assert balance() == 100
    assert not Entry.objects.exists()


def test_rejected_key_is_evaluated_afresh_later(account):
    with pytest.raises(InsufficientEnergy):
        consume(account_id=1, amount=150, idempotency_key="later")
    Account.objects.filter(pk=1).update(energy=200)
    assert consume(account_id=1, amount=150, idempotency_key="later").status == "applied"
    assert balance() == 50


def test_exact_balance_can_be_spent_to_zero(account):
    assert consume(account_id=1, amount=100, idempotency_key="all").balance_after == 0
    assert balance() == 0


def test_missing_account_changes_nothing(account):
    with pytest.raises(AccountNotFound):
        consume(account_id=2, amount=1, idempotency_key="k")
    assert not Entry.objects.exists()


def test_distinct_keys_accumulate(account):
    for i in range(5):
        assert consume(account_id=1, amount=7, idempotency_key=f"k{i}").balance_after == 100 - 7 * (i + 1)
    assert balance() == 65
    assert Entry.objects.count() == 5


def test_unicode_key_round_trips(account):
    key = "ключ-⚡-" + "é" * 200
    consume(account_id=1, amount=1, idempotency_key=key)
    assert consume(account_id=1, amount=1, idempotency_key=key).status == "replayed"


def test_other_integrity_errors_are_not_replays(account):
    """Only the key's own UNIQUE constraint means replay: a failing CHECK must not pass as one."""
    from django.db import IntegrityError

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE energy_account DROP CONSTRAINT energy_account_energy_not_negative")
        cursor.execute("ALTER TABLE energy_account ADD CONSTRAINT energy_account_tiny CHECK (energy > 90)")
    try:
        with pytest.raises(IntegrityError):
            consume(account_id=1, amount=20, idempotency_key="boom")
        assert balance() == 100
        assert not Entry.objects.exists()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE energy_account DROP CONSTRAINT energy_account_tiny")
            cursor.execute(
                "ALTER TABLE energy_account ADD CONSTRAINT energy_account_energy_not_negative CHECK (energy >= 0)"
            )


@pytest.mark.slow
def test_lock_timeout_is_unavailable_and_retry_applies_once(account):
    """A consume stuck behind a held row lock gives up with Unavailable; the retry applies once."""
    from tests.workers import row_lock_held

    with row_lock_held(account_id=1), pytest.raises(Unavailable) as caught:
        consume(account_id=1, amount=10, idempotency_key="stuck")
    assert "lock" in caught.value.detail
    assert balance() == 100
    assert consume(account_id=1, amount=10, idempotency_key="stuck").status == "applied"
    assert consume(account_id=1, amount=10, idempotency_key="stuck").status == "replayed"
    assert balance() == 90


def test_each_consume_logs_one_structured_record(account):
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("energy.consume")
    logger.addHandler(handler)
    try:
        consume(account_id=1, amount=30, idempotency_key="logged")
        with pytest.raises(InsufficientEnergy):
            consume(account_id=1, amount=500, idempotency_key="refused")
    finally:
        logger.removeHandler(handler)
    assert [(r.idempotency_key, r.account_id, r.amount, r.outcome) for r in records] == [
        ("logged", 1, 30, "applied"),
        ("refused", 1, 500, "insufficient_energy"),
    ]
    assert all(r.duration_ms >= 0 for r in records)


def test_json_log_format_renders_the_fields():
    import json
    import logging

    from pythonjsonlogger.json import JsonFormatter

    record = logging.LogRecord("energy.consume", logging.INFO, __file__, 1, "consume %s", ("applied",), None)
    record.outcome, record.idempotency_key = "applied", "k"
    line = json.loads(JsonFormatter("%(levelname)s %(name)s %(message)s").format(record))
    assert (line["message"], line["outcome"], line["idempotency_key"]) == ("consume applied", "applied", "k")


def test_models_and_migrations_agree():
    from django.core.management import call_command

    call_command("makemigrations", "energy", "--check", "--dry-run", verbosity=0)


def test_consume_inside_a_callers_transaction_is_undone_with_it(account):
    """The one-statement consume joins an open transaction instead of committing on its own."""
    from django.db import transaction

    with transaction.atomic():
        assert consume(account_id=1, amount=30, idempotency_key="inner").status == "applied"
        transaction.set_rollback(True)
    assert balance() == 100
    assert not Entry.objects.exists()
    assert consume(account_id=1, amount=30, idempotency_key="inner").status == "applied"


def test_query_wrappers_see_the_statement_a_consume_sends(account):
    """Query wrappers (tracing, debug toolbars) see what a consume sends, its key among the parameters."""
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        consume(account_id=1, amount=30, idempotency_key="traced")
    def carries_the_key(params):
        return "traced" in (params.values() if isinstance(params, dict) else params or ())

    assert any("energy_consumption" in sql and carries_the_key(params) for sql, params in seen), seen


def test_the_consume_statement_is_prepared_on_the_server_after_a_few_runs(account):
    """Server-side binding keeps psycopg's prepared statements on Django's cursor."""
    for i in range(8):
        consume(account_id=1, amount=1, idempotency_key=f"prepared-{i}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("INSERT INTO energy_consumption" in sql for sql in prepared), prepared


def test_the_orm_path_follows_the_same_rule_as_the_statement(account):
    """The path other databases take, run here on PostgreSQL: every outcome, as the statement answers it."""
    from energy.application.consume import _consume_with_orm
    from energy.domain.requests import ConsumeRequest

    def through_orm(account_id, amount, key):
        try:
            return _consume_with_orm(1, ConsumeRequest(account_id, amount, key)).status
        except (AccountNotFound, InsufficientEnergy, IdempotencyKeyMismatch) as exc:
            return exc.outcome

    assert [through_orm(*request) for request in [
        (1, 60, "a"), (1, 60, "a"), (1, 61, "a"), (1, 50, "b"), (2, 1, "c"), (1, 40, "d"), (1, 60, "a"),
    ]] == ["applied", "replayed", "idempotency_key_mismatch", "insufficient_energy", "account_not_found",
           "applied", "replayed"]
    assert balance() == 0 and Entry.objects.count() == 2


def test_an_applied_result_is_the_contract_body_of_the_stored_record(account):
    """Every field of the answer comes from the record it names, under its own name."""
    result = consume(account_id=1, amount=30, idempotency_key="fields").to_dict()
    record = Entry.objects.get()
    assert result == {
        "status": "applied", "consumption_id": record.id, "account_id": 1, "amount": 30,
        "idempotency_key": "fields", "balance_after": 70, "created_at": result["created_at"],
    }
    assert result["created_at"] in (record.created_at, record.created_at.isoformat())


def test_the_orm_path_deducts_amounts_beyond_32_bits_exactly():
    """An amount beside F() must travel as a BIGINT: as a 4-byte integer it would wrap around."""
    from energy.application.consume import _consume_with_orm
    from energy.domain.requests import ConsumeRequest

    Account.objects.create(id=1, energy=2**40, opening_energy=2**40)

    assert _consume_with_orm(1, ConsumeRequest(1, 2**33 + 5, "wide")).balance_after == 2**40 - 2**33 - 5
    assert balance() == 2**40 - 2**33 - 5


@pytest.mark.parametrize("path", ["statement", "orm"])
def test_both_paths_release_an_expired_hold_before_they_decide(account, path):
    """The statement's release (one more CTE) and the ORM's (energy.application.locks) write the same rows."""
    from energy.application.consume import _consume_with_orm
    from energy.application.holds import hold
    from energy.domain.requests import ConsumeRequest

    hold(account_id=1, amount=30, idempotency_key="expired")
    hold(account_id=1, amount=20, idempotency_key="open", expires_in=3600)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE energy_consumption SET expires_at = statement_timestamp()"
                       " WHERE idempotency_key = 'expired'")

    if path == "statement":
        result = consume(account_id=1, amount=80, idempotency_key="spend")
    else:
        result = _consume_with_orm(1, ConsumeRequest(1, 80, "spend"))

    assert result.balance_after == 0
    assert tuple(Account.objects.filter(pk=1).values_list("energy", "held").get()) == (0, 20)
    assert dict(Entry.objects.filter(kind="hold").values_list("idempotency_key", "state")) == {
        "expired": "expired", "open": "open"}
    assert Entry.objects.get(idempotency_key="spend").held_after == 20


def test_a_refused_consume_on_an_account_with_holds_still_writes_the_release_down(account):
    from energy.application.holds import hold

    hold(account_id=1, amount=30, idempotency_key="expired")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE energy_consumption SET expires_at = statement_timestamp()")

    with pytest.raises(InsufficientEnergy) as caught:
        consume(account_id=1, amount=101, idempotency_key="too-much")

    assert caught.value.balance == 100
    assert tuple(Account.objects.filter(pk=1).values_list("energy", "held").get()) == (100, 0)
    assert Entry.objects.get(idempotency_key="expired").state == "expired"
