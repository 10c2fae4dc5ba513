"""Planner statistics for tables that grow fast, so batch lookups use their indexes.

A new database has no statistics until autovacuum gets round to it (a minute or more).
Meanwhile PostgreSQL plans the batch's key lookup as a sequential scan, and a statement
prepared on a connection keeps that plan while the table grows, so a first big replay
slowed down chunk after chunk (a 20,000-line replay on fresh tables: 44 sequential scans
of the consumption table). ANALYZE gives the planner the facts and makes every cached
plan on those tables be planned again.
"""

from __future__ import annotations

from django.db import connection

from energy.db.guard import database_guard
from energy.domain.exceptions import Unavailable
from energy.models import Account, Entry


def analyze(*models) -> None:
    """ANALYZE the models' tables (PostgreSQL and SQLite; a no-op elsewhere)."""
    if connection.vendor not in ("postgresql", "sqlite"):
        return
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def rows_known(model) -> float:
    """Rows the planner believes the table has; 0 when it was never analyzed (or not PostgreSQL)."""
    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    return max(float(row[0]), 0.0) if row else 0.0


class GrowthWatch:
    """ANALYZE the consumption table whenever a run has more than doubled it since its statistics.

    On a table that is large already this never fires; on a fresh one it fires a few times
    (after 1×, 2×, 4×… the first batch), each ANALYZE costing milliseconds.
    """

    def __init__(self, minimum: int):
        self.minimum = minimum
        self.known = None
        self.added = 0

    def recorded(self, count: int) -> None:
        if connection.vendor != "postgresql" or count == 0:
            return
        if self.known is None:
            self.known = rows_known(Entry)
        self.added += count
        if self.added >= self.minimum and self.added > self.known:
            self.known += self.added
            self.added = 0
            try:
                with database_guard():
                    analyze(Entry)
            except Unavailable:
                pass  # statistics only speed things up; the next batch reports the outage itself


def after_seed() -> None:
    analyze(Account, Entry)
