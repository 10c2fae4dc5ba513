"""Fresh tables get planner statistics from seed and from a replay that outgrows them."""

import json

import pytest
from django.db import connection

from energy.application.accounts import seed_accounts
from energy.application.replay import replay_lines
from energy.db.analyze import GrowthWatch, rows_known
from energy.models import Account, Entry

pytestmark = pytest.mark.django_db(transaction=True)


def analyzed_times(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s", [table])
        return cursor.fetchone()[0]


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("planner statistics are PostgreSQL's")


def test_seed_gives_the_accounts_table_statistics():
    seed_accounts(count=300, energy=10)
    assert rows_known(Account) == 300


def test_a_replay_on_a_fresh_table_analyzes_it_as_it_grows():
    seed_accounts(count=50, energy=10**6)
    before = analyzed_times(Entry._meta.db_table)
    lines = [json.dumps({"account_id": i % 50 + 1, "amount": 1, "idempotency_key": f"k{i}"}) for i in range(700)]
    summary = replay_lines(lines, chunk_size=100)
    assert summary.counts["applied"] == 700
    # Each time the run added more than the statistics knew: at 100, 300 and 700 rows.
    assert analyzed_times(Entry._meta.db_table) - before == 3
    assert rows_known(Entry) == 700


def test_a_table_with_statistics_is_not_analyzed_for_a_small_run():
    seed_accounts(count=50, energy=10**6)
    watch = GrowthWatch(minimum=10)
    watch.known = 10_000  # as if the table were large and analyzed
    before = analyzed_times(Entry._meta.db_table)
    for _ in range(5):
        watch.recorded(100)
    assert analyzed_times(Entry._meta.db_table) == before
