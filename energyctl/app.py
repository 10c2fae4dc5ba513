"""The ``energyctl`` Typer app, built from command modules, with one place that maps failures.

Each module in COMMAND_MODULES exposes ``register(app)``. Importing this module imports no
Django and touches no database, so ``--help`` and input errors answer at once.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from energyctl.redact import redact_text
from energyctl.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_CODES, Output

COMMAND_MODULES = (
    "energyctl.consume_cmd",
    "energyctl.seed_cmd",
    "energyctl.replay_cmd",
    "energyctl.race_cmd",
    "energyctl.server_cmd",
    "energyctl.db_cmd",
)
# Commands that live in other parts of the project; a missing module just means no command.
OPTIONAL_COMMAND_MODULES = (
    "energyctl.bench_cmd",
    "energyctl.torture_cmd",
)


class EnergyctlGroup(TyperGroup):
    """Turns every way a run can end into an exit code and at most one line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        code = self._exit_code(args, prog_name or "energyctl", complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _exit_code(self, args, prog_name, complete_var, **extra) -> int:
        try:
            returned = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            return returned if isinstance(returned, int) else 0
        except click_exceptions.UsageError as exc:
            return _usage_error(exc, args)
        except click_exceptions.ClickException as exc:
            Output().note(f"[bold red]error[/]: {_one_line(exc.format_message())}")
            return exc.exit_code
        except typer.Abort:
            Output().note("Interrupted.")
            return EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
            if os.environ.get("ENERGYCTL_TRACEBACK") == "1":
                raise
            Output().note(
                f"[bold red]error[/]: unexpected {type(exc).__name__}: {_one_line(redact_text(str(exc)))} "
                "(set ENERGYCTL_TRACEBACK=1 to see where)"
            )
            return EXIT_FAILED

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            Output().note("Interrupted.")
            raise typer.Exit(EXIT_INTERRUPTED) from None


def _usage_error(exc, args: list[str]) -> int:
    message = _one_line(exc.format_message())
    command = exc.ctx.command_path if exc.ctx is not None else "energyctl"
    out = Output(as_json="--json" in args)
    if out.as_json:
        out.document({"status": "error", "error": "invalid_request", "detail": message})
    out.note(f"[bold red]error[/]: {message} (see '{command} --help')")
    return EXIT_CODES["invalid_request"]


def _one_line(text: str) -> str:
    from rich.markup import escape

    return escape(" ".join(text.split()))


def build_app() -> typer.Typer:
    app = typer.Typer(
        cls=EnergyctlGroup,
        name="energyctl",
        epilog="Example: energyctl seed --accounts 3 --energy 100 && energyctl consume --account 1 --amount 30 --key k1",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_configure)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    for name in OPTIONAL_COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)
    return app


def _configure(
    database_url: str = typer.Option(
        None,
        "--database-url",
        envvar="DATABASE_URL",
        show_default=False,
        help="postgresql://… or sqlite:///path. Unset: an embedded PostgreSQL in a per-user data directory.",
    ),
) -> None:
    """Spend energy from account balances exactly once, under retries and concurrency."""
    if database_url:
        os.environ["DATABASE_URL"] = database_url


app = build_app()


def run() -> None:
    app(prog_name="energyctl")
