"""``run_demo``: set up the throwaway schema and the demo processes, run the scenarios, clean up."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from django.db import DatabaseError, connection, connections

from energy.race import hold_race
from energy.race.context import Demo
from energy.race.errors import DemoFailed, DemoUnsupported
from energy.race.pool import Pool
from energy.race.report import DemoReport
from energy.race.sandbox import DemoSchema
from energy.race.scenarios import PROTECTED, UNSAFE, run_scenario, unsafe_tables

SCENARIOS = (PROTECTED, *UNSAFE, hold_race.NO_HOLD_LOCK)
# Each demo process holds one connection; PostgreSQL's default allows 100 in all.
MAX_WORKERS = 64
# Keeps 2 x amount far inside a signed 64-bit column.
MAX_BALANCE = 10**15


def run_demo(
    *,
    workers: int = 8,
    balance: int = 100,
    amount: int = 60,
    scenarios: Sequence[str] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run ``scenarios`` (all by default) with ``workers`` processes on the current database."""
    names = _checked(workers, balance, amount, scenarios)
    check_backend(connection)
    progress = on_progress or (lambda message: None)
    started = time.monotonic()
    backend = _backend_label()
    try:
        schema = DemoSchema.create()
    except DatabaseError as exc:
        raise DemoFailed("the demo could not create its own schema "
                         f"(it needs the CREATE privilege on the database): {exc}") from exc
    failed = True
    try:
        _make_tables(schema, names)
        # Children connect on their own; no connection of this process should cross into them.
        connections.close_all()
        progress(f"Starting {workers} demo processes")
        pool = Pool(workers, _child_settings(schema.name))
        try:
            demo = Demo(pool, schema, balance, amount, progress)
            results = [run_scenario(name, demo) for name in names]
        finally:
            pool.close()
        failed = False
    finally:
        _drop(schema, quietly=failed)
    progress("Dropped the demo tables")
    return DemoReport(backend=backend, workers=workers, scenarios=results, seconds=time.monotonic() - started)


def check_backend(conn) -> None:
    """Raise DemoUnsupported unless ``conn`` is a PostgreSQL connection."""
    if conn.vendor != "postgresql":
        raise DemoUnsupported(
            f"The race demo needs PostgreSQL; the configured database is {conn.vendor}. "
            "SQLite lets one writer in at a time and has no row locks, so the races cannot happen there "
            "and the demo would prove nothing. Unset DATABASE_URL to use the embedded PostgreSQL, "
            "or point it at a PostgreSQL server."
        )


def _checked(workers, balance, amount, scenarios) -> list[str]:
    for name, value in (("workers", workers), ("balance", balance), ("amount", amount)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, not {value!r}")
    if not 2 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be between 2 and {MAX_WORKERS}: a race needs at least two processes")
    if not 1 <= balance <= MAX_BALANCE:
        raise ValueError(f"balance must be between 1 and {MAX_BALANCE}")
    if not 1 <= amount <= balance:
        raise ValueError(f"amount must be between 1 and the balance ({balance}), so the first consume succeeds")
    if 2 * amount <= balance:
        raise ValueError(
            f"amount must be more than half the balance (more than {balance // 2} for a balance of {balance}), "
            "so that a second consume must be refused and an overdraw is visible"
        )
    if scenarios is None:
        return list(SCENARIOS)
    names = list(dict.fromkeys(scenarios))
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise ValueError(f"unknown scenario {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"choose from {', '.join(SCENARIOS)}")
    return names


def _make_tables(schema: DemoSchema, names: list[str]) -> None:
    for name in names:
        if name == PROTECTED:
            schema.create_real_tables()
            continue
        if name == hold_race.NO_HOLD_LOCK:
            schema.create_hold_tables(name)
            continue
        for prefix, unique_key, balance_check in unsafe_tables(name):
            schema.create_unsafe_tables(prefix, unique_key=unique_key, balance_check=balance_check)


def _child_settings(schema_name: str) -> dict:
    """The parent's connection settings, with the demo schema as the only schema in the search path."""
    settings = connection.settings_dict
    options = dict(settings["OPTIONS"])
    options["options"] = f"{options.get('options', '')} -c search_path={schema_name}".strip()
    return {key: settings[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")} | {"OPTIONS": options}


def _backend_label() -> str:
    major, minor = divmod(connection.pg_version, 10000)
    embedded = " (embedded)" if connection.settings_dict["ENGINE"] == "energy.db.embedded" else ""
    return f"postgresql {major}.{minor}{embedded}"


def _drop(schema: DemoSchema, *, quietly: bool) -> None:
    try:
        schema.drop()
    except DatabaseError as exc:
        if not quietly:  # else the error that stopped the demo is the one worth showing
            raise DemoFailed(f"could not drop the demo schema {schema.name}: {exc}") from exc
