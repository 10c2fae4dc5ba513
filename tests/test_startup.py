"""What a one-shot command pays to start: only what it uses.

The figures are measured, not asserted (``python -m benchmarks.cli_startup``, see
docs/performance.md); these tests hold the behaviour the figures rest on: a help page or a
usage error never imports Django nor reaches a database, a command builds only its own
module, a ``--json`` answer never imports rich, and the garbage collector paused for
start-up is running again once Django is set up and when ``main`` returns.
"""

from __future__ import annotations

import ast
import gc
import os
import subprocess
import sys

import pytest

from tests.support import PROCESS_TIMEOUT_S, closed_port, energyctl_here, test_database_url

HEAVY = ("django", "psycopg", "rich", "rest_framework", "energyctl.commands.clients", "energyctl.commands.race",
         "energyctl.commands.replay", "energyctl.commands.server", "energyctl.commands.ledger")


def run_script(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``energyctl ARGS`` through the console script's ``main`` in a new process; and which of HEAVY it imported."""
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: print('loaded', sorted(m for m in {HEAVY!r} if m in sys.modules), "
            "file=sys.stderr))\n"
            "from energyctl.__main__ import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    base = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, env={**base, **(env or {})})
    lines = [line for line in done.stderr.splitlines() if line.startswith("loaded ")]
    assert lines, done.stderr
    return done, set(ast.literal_eval(lines[-1].removeprefix("loaded ")))


@pytest.mark.slow
def test_the_help_page_imports_no_database_code():
    done, loaded = run_script("--help", env={"DATABASE_URL": f"postgresql://nobody@127.0.0.1:{closed_port()}/x"})

    assert done.returncode == 0 and "race-demo" in done.stdout and "torture" in done.stdout, done.stderr
    assert not loaded & {"django", "psycopg", "rest_framework", "rich"}, loaded


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["consume", "--help"],
    ["consume", "--account", "1", "--amount", "1", "--key", "k", "--nope"],
    ["seed", "--accounts", "many", "--energy", "1", "--json"],
])
def test_help_and_usage_errors_need_no_database_and_no_django(args):
    done, loaded = run_script(*args, env={"DATABASE_URL": f"postgresql://nobody@127.0.0.1:{closed_port()}/x"})

    assert done.returncode in (0, 2), done.stderr
    assert not loaded & {"django", "psycopg"}, loaded


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_json_consume_imports_only_its_own_command_and_no_rich():
    from energy.application.accounts import seed_accounts

    seed_accounts(count=1, energy=100)
    done, loaded = run_script("consume", "--account", "1", "--amount", "5", "--key", "lean", "--json",
                              env={"DATABASE_URL": test_database_url()})

    assert done.returncode == 0, done.stderr
    assert '"balance_after": 95' in done.stdout
    assert "rich" not in loaded
    assert not {name for name in loaded if name.startswith("energyctl.commands.")}, loaded


@pytest.fixture
def collector_on():
    """The collector enabled, as in a fresh process, and left as it was found."""
    was = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


def test_main_leaves_the_collector_running_after_a_usage_error(collector_on):
    result = energyctl_here("consume", "--nope")

    assert result.returncode == 2
    assert gc.isenabled()


@pytest.mark.django_db(transaction=True)
def test_main_leaves_the_collector_running_after_a_command(collector_on):
    result = energyctl_here("balance", "--account", "1")

    assert result.returncode == 4
    assert gc.isenabled()


def test_a_collector_switched_off_before_main_stays_off(collector_on):
    gc.disable()
    energyctl_here("consume", "--nope")

    assert not gc.isenabled()


@pytest.mark.django_db(transaction=True)
def test_preparing_django_resumes_the_collection_paused_for_start_up(collector_on):
    from energyctl.prepare import pause_collection, prepare, resume_collection

    pause_collection()
    paused = gc.isenabled()
    prepare()
    resumed = gc.isenabled()
    resume_collection()

    assert (paused, resumed) == (False, True)
