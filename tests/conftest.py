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
    from energy.db.embedded import server as embedded_pg

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

    return Account.objects.create(id=1, energy=100, opening_energy=100)


@pytest.fixture(autouse=True)
def operator_client(request):
    """The built-in ``operator`` client, which the migrations create and a test's flush empties away."""
    if request.node.get_closest_marker("django_db") is None:
        for name in ("transactional_db", "db"):
            if name in request.fixturenames:
                request.getfixturevalue(name)
                break
        else:
            return
    from energy.models import OPERATOR, OPERATOR_CLIENT_ID, Client

    Client.objects.get_or_create(id=OPERATOR_CLIENT_ID, defaults={"name": OPERATOR, "scopes": ["consume", "read"]})
