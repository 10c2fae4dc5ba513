"""The suite runs on real PostgreSQL: ``DATABASE_URL`` when set, else a throwaway embedded cluster."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """Point the embedded backend at a cluster of the suite's own, deleted afterwards."""
    if os.environ.get("DATABASE_URL"):
        yield
        return
    from energy import embedded_pg

    root = Path(tempfile.mkdtemp(prefix="energyctl-tests-"))
    os.environ["ENERGYCTL_PGDATA"] = str(root / "pgdata")
    embedded_pg.ensure_running()
    try:
        yield
    finally:
        embedded_pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def account(db):
    """Account 1 with 100 energy, in a test wrapped in a transaction."""
    from energy.models import Account

    return Account.objects.create(id=1, energy=100)
