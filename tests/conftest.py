"""The suite runs on real PostgreSQL: ``DATABASE_URL`` when set, else a throwaway embedded cluster.

Two tiers: ``pytest -m "not slow"`` runs in-process only; every test that launches a process is
marked ``slow``, and a test that is not but launches one anyway fails, saying so.
"""

import multiprocessing.process
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# The node id of the fast-tier test now running (its setup or body), which may launch no process.
_fast_test: str | None = None


def _refuse(what: str) -> None:
    if _fast_test is not None:
        raise RuntimeError(
            f"{_fast_test} launched a process ({what}) but is not marked slow: mark it @pytest.mark.slow,"
            " or keep it in-process (the fast tier, pytest -m 'not slow', launches no process)"
        )


def _guarded(original, what):
    def launch(*args, **kwargs):
        _refuse(what(*args))
        return original(*args, **kwargs)

    return launch


subprocess.Popen._execute_child = _guarded(subprocess.Popen._execute_child,
                                           lambda popen, args, *rest: f"subprocess {args!r}")
multiprocessing.process.BaseProcess.start = _guarded(multiprocessing.process.BaseProcess.start,
                                                     lambda process: f"multiprocessing {process.name}")
for _name in ("fork", "system", "posix_spawn", "posix_spawnp"):
    if hasattr(os, _name):
        setattr(os, _name, _guarded(getattr(os, _name), lambda *args, _name=_name: f"os.{_name}"))


@pytest.fixture(autouse=True)
def fast_tests_launch_no_process(request):
    """Outside the slow tier, launching a process fails the test with a message naming the fix."""
    global _fast_test
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    _fast_test = request.node.nodeid
    try:
        yield
    finally:
        _fast_test = None


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """The session's own cluster (started by whichever test needs the database first) is no test's launch."""
    global _fast_test
    if fixturedef.scope != "session":
        yield
        return
    held, _fast_test = _fast_test, None
    try:
        yield
    finally:
        _fast_test = held


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.config.get_terminal_writer().line("error: no test ran (pytest exit code 5)", red=True)


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
def accounts():
    """Accounts 1..3 with 100 energy, for tests on the database."""
    from energy.application.accounts import seed_accounts

    seed_accounts(count=3, energy=100)


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
