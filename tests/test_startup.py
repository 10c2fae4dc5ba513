"""What a one-shot command pays to start, and that what it skips is still there for those that need it.

The figures are in the README ("One-shot start-up", ``python -m benchmarks.cli_startup``);
these tests pin what the cuts rely on, so that undoing one fails here instead of silently
costing every command again.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# consume, balance and replay on a plain command line skip Typer (energyctl/fast_path.py).

def _typer_reading(args: list[str], monkeypatch) -> tuple[int, tuple | None]:
    """Exit code of Typer's app for ``args`` and the values it handed to what runs the command."""
    import typer.main

    from energyctl.app import build_app
    from energyctl.commands import consume as consume_cmd
    from energyctl.commands import replay as replay_cmd
    from energyctl.commands import replay_run as replay

    seen = []

    def run_replay(out, file, *, chunk_size, show_failures, client, retry_for):
        # The options a plain line leaves out must reach the replay as its own defaults.
        assert (chunk_size, show_failures, retry_for) == (
            replay.DEFAULT_CHUNK, replay.DEFAULT_SHOWN_FAILURES, replay.DEFAULT_RETRY_FOR_S)
        seen.append(("replay", {"client": client, "as_json": out.as_json, "file": file}))
        return 0

    monkeypatch.setattr(consume_cmd, "run_consume", lambda out, account, amount, key, client=None: seen.append(
        ("consume", {"account": account, "amount": amount, "key": key, "client": client, "as_json": out.as_json})) or 0)
    monkeypatch.setattr(consume_cmd, "run_balance", lambda out, account: seen.append(
        ("balance", {"account": account, "as_json": out.as_json})) or 0)
    monkeypatch.setattr(replay_cmd, "run_replay", run_replay)
    monkeypatch.setattr(replay_cmd, "setup_django", lambda: None)
    code = typer.main.get_command(build_app(args[0] if args else None)).main(
        list(args), prog_name="energyctl", standalone_mode=False)
    return code, (seen[0] if seen else None)


def test_the_fast_path_knows_the_same_options_as_the_typer_commands():
    import typer.main

    from energyctl import fast_path
    from energyctl.app import build_app

    group = typer.main.get_command(build_app())
    for name, options in fast_path.OPTIONS.items():
        params = [param for param in group.commands[name].params if param.name != "help"]
        typer_options = [param for param in params if param.param_type_name == "option"]
        read = [param for param in typer_options if param.name in options.values()]
        assert {opt: param.name for param in read for opt in param.opts} == options
        assert {param.name for param in read if param.is_flag} == fast_path.FLAGS & set(options.values())
        assert [param.name for param in params if param.param_type_name == "argument"] == (
            [fast_path.ARGUMENTS[name]] if name in fast_path.ARGUMENTS else [])
        # What the fast path does not read must be optional: the command's defaults apply.
        assert {param.name for param in params if param.required} == fast_path.REQUIRED[name]


@pytest.mark.parametrize("args", [
    ["consume", "--account", "1", "--amount", "30", "--key", "k"],
    ["consume", "--json", "--key", "k k", "--client", "shop", "--amount", "x", "--account", "0"],
    ["consume", "--account", "1", "--amount", "1", "--key", ""],
    ["consume", "--account", "1", "--amount", "1", "--key", "é\x00[red]"],
    ["balance", "--account", "1"],
    ["balance", "--json", "--account", "+7"],
    ["replay", "requests.jsonl"],
    ["replay", "--json", "-"],
    ["replay", "--client", "shop", "my file.jsonl", "--json"],
])
def test_a_line_the_fast_path_reads_is_read_the_same_by_typer(args, monkeypatch):
    from energyctl import fast_path

    parsed = fast_path.parse(args)

    assert parsed is not None
    assert _typer_reading(args, monkeypatch) == (0, parsed)


@pytest.mark.parametrize("args", [
    [], ["--help"], ["consume"], ["consume", "--help"], ["consume", "-h"], ["balance", "--account"],
    ["consume", "--account", "1", "--amount", "1"],
    ["consume", "--account", "1", "--amount", "1", "--key", "k", "--account", "2"],
    ["consume", "--account", "1", "--amount", "1", "--key", "k", "--json", "--json"],
    ["consume", "--account=1", "--amount", "1", "--key", "k"],
    ["consume", "--account", "-1", "--amount", "1", "--key", "k"],
    ["consume", "--account", "1", "--amount", "1", "--key", "k", "extra"],
    ["consume", "--account", "1", "--amount", "1", "--key", "k", "--"],
    ["consume", "--account", "1", "--amount", "1", "--key", "\udcff"],
    ["--database-url", "sqlite:///x", "balance", "--account", "1"],
    ["balance", "--account", "1", "--client", "shop"],
    ["seed", "--accounts", "1", "--energy", "1"],
    ["replay"], ["replay", "--json"], ["replay", "a", "b"], ["replay", "--help"],
    ["replay", "--chunk-size", "5", "f"], ["replay", "f", "--retry-for", "0"], ["replay", "-x"],
])
def test_anything_but_a_plain_line_is_left_to_typer(args):
    from energyctl import fast_path

    assert fast_path.parse(args) is None


def test_shell_completion_is_left_to_typer(monkeypatch):
    from energyctl import fast_path

    monkeypatch.setenv("_ENERGYCTL_COMPLETE", "complete_bash")

    assert fast_path.parse(["balance", "--account", "1"]) is None


_WORDS = st.sampled_from(["--account", "--amount", "--key", "--client", "--json", "--help", "-h", "--", "--acc",
                          "-", "--chunk-size", "f.jsonl",
                          "--account=1", "1", "-1", "0", "x", "", " ", "é", "a\x00b", "\udcff", "[red]"])


@settings(max_examples=300, deadline=None)
@given(command=st.sampled_from(["consume", "balance", "replay"]), words=st.lists(_WORDS, max_size=10),
       values=st.lists(st.text(max_size=5), min_size=3, max_size=3), order=st.randoms(use_true_random=False))
def test_every_line_the_fast_path_accepts_typer_reads_into_the_same_values(command, words, values, order):
    """Random lines, half of them built from the required options, so that many are accepted."""
    from energyctl import fast_path

    pairs = [["--account", values[0]], ["--amount", values[1]], ["--key", values[2]]]
    pairs = {"consume": pairs, "balance": pairs[:1], "replay": [[values[2] or "-"]]}[command]
    order.shuffle(pairs)
    for args in ([command, *words], [command, *(word for pair in pairs for word in pair), *words]):
        parsed = fast_path.parse(args)
        if parsed is not None:
            with pytest.MonkeyPatch.context() as monkeypatch:
                assert _typer_reading(args, monkeypatch) == (0, parsed), args


_LOADED = ("typer", "pydantic", "rich", "rest_framework", "drf_spectacular", "django", "psycopg")


def _script(*args: str, env: dict) -> subprocess.CompletedProcess:
    """The installed ``energyctl`` with ARGS, run by the same ``main``, printing which heavy modules it loaded."""
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: print('loaded', sorted(m for m in {_LOADED!r} if m in sys.modules), "
            "file=sys.stderr))\n"
            f"sys.argv = ['energyctl', *{list(args)!r}]\n"
            "from energyctl.__main__ import main\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def _loaded(done: subprocess.CompletedProcess) -> set[str]:
    import ast

    lines = [line for line in done.stderr.splitlines() if line.startswith("loaded ")]
    assert lines, done.stderr
    return set(ast.literal_eval(lines[-1].removeprefix("loaded ")))


def _without_loaded(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("loaded "))


@pytest.fixture
def seeded(transactional_db):
    from energy.application.accounts import seed_accounts
    from energy.application.clients import add_client
    from energy.application.consume import consume

    seed_accounts(count=2, energy=100)
    add_client(name="shop", accounts=None)
    consume(account_id=1, amount=30, idempotency_key="done")


@pytest.mark.parametrize("args", [
    ["consume", "--account", "1", "--amount", "30", "--key", "done", "--json"],
    ["consume", "--account", "1", "--amount", "30", "--key", "done"],
    ["consume", "--account", "1", "--amount", "31", "--key", "done", "--json"],
    ["consume", "--account", "1", "--amount", "500", "--key", "too-much"],
    ["consume", "--account", "9", "--amount", "1", "--key", "nowhere", "--json"],
    ["consume", "--account", "1", "--amount", "1.5", "--key", "k", "--json"],
    ["consume", "--account", "1", "--amount", "1", "--key", "k", "--client", "nobody"],
    ["balance", "--account", "2", "--json"],
    ["balance", "--account", "2"],
    ["balance", "--account", "9"],
    ["balance", "--account", "x", "--json"],
])
def test_the_script_answers_a_plain_line_as_the_typer_app_does(seeded, args):
    from typer.testing import CliRunner

    from energyctl.app import app
    from tests.test_cli import test_database_url

    script = _script(*args, env={"DATABASE_URL": test_database_url()})
    typer_app = CliRunner().invoke(app, args)

    assert not _loaded(script) & {"typer", "pydantic"}, script.stderr
    assert (script.returncode, script.stdout, _without_loaded(script.stderr)) == (
        typer_app.exit_code, typer_app.stdout, typer_app.stderr.rstrip("\n")), script.stderr


def test_a_json_consume_from_the_script_imports_neither_typer_nor_rich(seeded):
    from tests.test_cli import test_database_url

    done = _script("consume", "--account", "2", "--amount", "5", "--key", "lean", "--json",
                   env={"DATABASE_URL": test_database_url()})

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["balance_after"] == 95
    assert not _loaded(done) & {"typer", "pydantic", "rich"}, done.stderr


def test_help_and_unusual_lines_still_go_through_typer():
    help_page = _script("consume", "--help", env={})
    usage = _script("consume", "--account", "1", "--amount", "1", "--key", "k", "--account", "2", "--nope", env={})

    assert help_page.returncode == 0 and "Idempotency key" in help_page.stdout, help_page.stderr
    assert "typer" in _loaded(help_page)
    assert usage.returncode == 2 and "No such option: --nope" in usage.stderr, usage.stderr


def test_the_help_page_imports_no_database_code():
    done = _script("--help", env={})

    assert done.returncode == 0 and "race-demo" in done.stdout and "torture" in done.stdout, done.stderr
    assert not _loaded(done) & {"django", "psycopg"}, done.stderr


_REPLAY_LINES = "\n".join([
    '{"account_id": 1, "amount": 30, "idempotency_key": "done"}',
    '{"account_id": 1, "amount": 31, "idempotency_key": "done"}',
    '{"account_id": 1, "amount": 500, "idempotency_key": "too-much"}',
    '{"account_id": 9, "amount": 1, "idempotency_key": "nowhere"}',
    '{"account_id": 1, "amount": 1.5, "idempotency_key": "float"}',
    "not json",
]) + "\n"


def _timeless(text: str) -> str:
    """Output without what differs from run to run: the replay's seconds and rate."""
    lines = [line for line in text.splitlines() if not line.startswith("loaded ") and " lines in " not in line]
    if len(lines) == 1 and lines[0].startswith("{"):
        return json.dumps({k: v for k, v in json.loads(lines[0]).items() if k != "seconds"})
    return "\n".join(lines)


@pytest.mark.parametrize("args", [["replay", "FILE", "--json"], ["replay", "FILE"], ["replay", "-", "--json"],
                                  ["replay", "--client", "nobody", "FILE", "--json"]])
def test_the_script_replays_a_plain_line_as_the_typer_app_does(seeded, args, tmp_path):
    from typer.testing import CliRunner

    from energyctl.app import app
    from tests.test_cli import test_database_url

    requests = tmp_path / "requests.jsonl"
    requests.write_text(_REPLAY_LINES)
    args = [str(requests) if arg == "FILE" else arg for arg in args]
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: print('loaded', sorted(m for m in {_LOADED!r} if m in sys.modules), "
            "file=sys.stderr))\n"
            f"sys.argv = ['energyctl', *{args!r}]\n"
            "from energyctl.__main__ import main\n"
            "main()\n")
    script = subprocess.run([sys.executable, "-c", code], input=_REPLAY_LINES, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "DATABASE_URL": test_database_url()})
    typer_app = CliRunner().invoke(app, args, input=_REPLAY_LINES)

    assert not _loaded(script) & {"typer", "pydantic"}, script.stderr
    assert (script.returncode, _timeless(script.stdout), _timeless(script.stderr)) == (
        typer_app.exit_code, _timeless(typer_app.stdout), _timeless(typer_app.stderr)), script.stderr
