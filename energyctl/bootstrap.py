"""Django set-up for the command line, done when a command first needs it, never on import."""

from __future__ import annotations

import os


def setup_django(*, log_level: str = "WARNING") -> None:
    """Configure Django with ``settings`` once; ``log_level`` applies unless the environment sets one."""
    from django.apps import apps

    if not apps.ready:
        os.environ["DJANGO_SETTINGS_MODULE"] = "settings"
        os.environ.setdefault("ENERGYCTL_LOG_LEVEL", log_level)
        from energy.standalone import setup_django as setup

        setup()
    # Start-up ends here: what follows is the command's own work (energyctl/startup.py).
    from energyctl.startup import resume_collection

    resume_collection()


def prepare_database() -> None:
    """Set Django up and, on the embedded PostgreSQL, make sure the schema is migrated."""
    setup_django()
    from energy.schema import ensure_schema

    ensure_schema()
