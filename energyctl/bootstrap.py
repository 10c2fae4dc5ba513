"""Django set-up for the command line, done when a command first needs it, never on import.

The embedded PostgreSQL is migrated on first use. Whether that is needed is decided by a
marker file in its data directory naming the newest migration on disk, so later runs pay
one small file read, not a round of queries to the migration table.
"""

from __future__ import annotations

import os
from pathlib import Path

EMBEDDED_ENGINE = "energy.db.embedded"


def setup_django(*, log_level: str = "WARNING") -> None:
    """Configure Django with ``settings`` once; ``log_level`` applies unless the environment sets one."""
    from django.apps import apps

    if apps.ready:
        return
    os.environ["DJANGO_SETTINGS_MODULE"] = "settings"
    os.environ.setdefault("ENERGYCTL_LOG_LEVEL", log_level)
    from energy.standalone import setup_django as setup

    setup()


def prepare_database() -> None:
    """Set Django up and, on the embedded PostgreSQL, make sure the schema is migrated."""
    setup_django()
    from django.db import connection

    if connection.settings_dict["ENGINE"] == EMBEDDED_ENGINE:
        ensure_embedded_schema()


def ensure_embedded_schema() -> None:
    from django.db import connection

    wanted = newest_migration()
    marker = _schema_marker()
    data_dir = marker.parent
    if _read(marker) == wanted:
        return
    from energy.application.guard import database_guard

    # First runs started together would race to initdb, create the database and migrate;
    # the lock lines them up, and the later ones find the work done.
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(data_dir.parent / f".{data_dir.name}-setup.lock"):
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

    from energy import embedded_pg

    return embedded_pg.default_data_dir() / f".energyctl-schema-{connection.settings_dict['NAME']}"


def newest_migration() -> str:
    """Name of the newest migration file of the energy app (the only app with migrations)."""
    import energy

    folder = Path(energy.__file__).parent / "migrations"
    names = sorted(path.stem for path in folder.glob("[0-9][0-9][0-9][0-9]_*.py"))
    return names[-1] if names else ""


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


class _exclusive:
    """An advisory file lock, so two first runs do not migrate at the same time."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.file = open(self.path, "a")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        self.file.close()
