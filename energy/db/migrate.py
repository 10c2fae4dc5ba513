"""The embedded PostgreSQL's schema, migrated on first use.

Whether a migration is needed is decided by a marker file in the embedded data directory
naming the newest migration on disk, so later runs pay one small file read, not a round of
queries to the migration table. Django must be set up before any of this is called.
"""

from __future__ import annotations

from pathlib import Path

EMBEDDED_ENGINE = "energy.db.embedded"


def ensure_schema() -> None:
    """On the embedded PostgreSQL, make sure every migration is applied; elsewhere do nothing."""
    from django.db import connection

    if connection.settings_dict["ENGINE"] == EMBEDDED_ENGINE:
        _ensure_embedded_schema()


def _ensure_embedded_schema() -> None:
    from django.db import connection

    wanted = newest_migration()
    marker = _schema_marker()
    data_dir = marker.parent
    if _read(marker) == wanted:
        return
    # Imported only here: every later run finds the marker current and never takes the lock.
    from filelock import FileLock

    from energy.db.guard import database_guard

    # First runs started together would race to initdb, create the database and migrate;
    # the lock lines them up, and the later ones find the work done.
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(data_dir.parent / f".{data_dir.name}-setup.lock"):
        if _read(marker) == wanted:
            return
        with database_guard():
            connection.ensure_connection()
            migrate(verbosity=0)
        marker.write_text(wanted)


def migrate(*, verbosity: int = 1, stdout=None) -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=verbosity, stdout=stdout)


def mark_embedded_schema_current() -> None:
    """Record that the embedded database has every migration, after an explicit migrate."""
    from django.db import connection

    if connection.settings_dict["ENGINE"] == EMBEDDED_ENGINE:
        _schema_marker().write_text(newest_migration())


def _schema_marker() -> Path:
    """The file in the embedded data directory that names the newest migration applied there."""
    from django.db import connection

    from energy.db.embedded import server as embedded_pg

    return embedded_pg.default_data_dir() / f".energyctl-schema-{connection.settings_dict['NAME']}"


def newest_migration() -> str:
    """Name of the newest migration file of the energy app (the only app with migrations)."""
    folder = Path(__file__).parent.parent / "migrations"
    names = sorted(path.stem for path in folder.glob("[0-9][0-9][0-9][0-9]_*.py"))
    return names[-1] if names else ""


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
