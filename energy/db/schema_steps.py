"""Migration operations that can be run again after a failure half-way, on PostgreSQL.

A non-atomic migration (one that builds an index CONCURRENTLY) commits each statement as it
goes, and is recorded as applied only after its last one. A lock wait that times out
(ENERGYCTL_LOCK_TIMEOUT_MS) in the middle leaves the earlier statements applied; run again,
Django starts from the first operation, and a plain CREATE TABLE fails on the table it made
last time. Here every step first asks the catalog whether its work is already there and
skips it if so, without taking any lock, so a rerun carries on where the last one stopped.
"""

from __future__ import annotations

from typing import NamedTuple

from django.db import migrations, transaction


class Step(NamedTuple):
    """Statements that do one piece of work, and a query that returns a row once it is done."""

    done: str
    sql: tuple[str, ...]
    # One transaction, so the step is all there or not at all; a CONCURRENTLY statement cannot
    # run in one.
    atomic: bool = True


def table_exists(table: str) -> str:
    return f"SELECT FROM pg_class WHERE oid = to_regclass('{table}')"


def column_exists(table: str, column: str) -> str:
    return (f"SELECT FROM pg_attribute WHERE attrelid = to_regclass('{table}') AND attname = '{column}'"
            " AND NOT attisdropped")


def constraint_exists(table: str, name: str, *, validated: bool = False) -> str:
    valid = " AND convalidated" if validated else ""
    return f"SELECT FROM pg_constraint WHERE conrelid = to_regclass('{table}') AND conname = '{name}'{valid}"


def constraint_absent(table: str, name: str) -> str:
    return f"SELECT WHERE NOT EXISTS ({constraint_exists(table, name)})"


def valid_index_exists(name: str) -> str:
    return f"SELECT FROM pg_index WHERE indexrelid = to_regclass('{name}') AND indisvalid"


class StepsOnPostgres(migrations.operations.base.Operation):
    """``operation``'s state change; on PostgreSQL its work done as ``steps``, each skipped when done.

    Elsewhere (SQLite) ``operation`` itself runs: there the whole migration is one transaction.
    """

    reversible = False

    def __init__(self, operation, steps):
        self.operation, self.steps = operation, tuple(steps)

    def state_forwards(self, app_label, state):
        self.operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)
            return
        for step in self.steps:
            if _done(connection, step.done):
                continue
            if step.atomic:
                with transaction.atomic(using=connection.alias):
                    for statement in step.sql:
                        schema_editor.execute(statement, params=None)
            else:
                for statement in step.sql:
                    schema_editor.execute(statement, params=None)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        raise NotImplementedError(f"{self.operation.describe()} cannot be undone")

    def describe(self):
        return f"{self.operation.describe()} (rerunnable on PostgreSQL)"


def _done(connection, query: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchone() is not None
