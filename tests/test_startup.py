"""What a one-shot command pays to start, and that what it skips is still there for those that need it.

The figures are in the README ("One-shot start-up", ``python -m benchmarks.cli_startup``);
these tests pin what the cuts rely on, so that undoing one fails here instead of silently
costing every command again.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from energyctl import startup


@pytest.fixture
def collector_restored():
    enabled = gc.isenabled()
    yield
    startup._paused = False
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_collection_paused_for_start_up_resumes_with_start_up_objects_frozen(collector_restored):
    gc.enable()
    startup.pause_collection()
    assert not gc.isenabled()

    startup.resume_collection()

    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


def test_resume_leaves_a_collector_that_was_off_before_the_pause_off(collector_restored):
    gc.disable()
    startup.pause_collection()
    startup.resume_collection()

    assert not gc.isenabled()


def _run_main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``energyctl ARGS`` through the console script's ``main``, reporting the collector's state at exit."""
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('collector', gc.isenabled(), file=sys.stderr))\n"
            f"sys.argv = ['energyctl', *{list(args)!r}]\n"
            "from energyctl.__main__ import main\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_a_command_that_sets_django_up_collects_garbage_again(tmp_path):
    done = _run_main("migrate", env={"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"})

    assert done.returncode == 0, done.stderr
    assert "collector True" in done.stderr


def test_a_command_that_ends_before_django_never_pays_for_collection():
    done = _run_main("consume", "--account", "x", "--amount", "1", "--key", "k")

    assert done.returncode == 2, done.stderr
    assert "collector False" in done.stderr
