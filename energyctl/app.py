"""The ``energyctl`` Typer app, built from command modules, with one place that maps failures.

Each module named in COMMANDS exposes ``register(app)``. Importing this module imports no
Django and touches no database, so ``--help`` and input errors never wait for a server.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
from typer.core import TyperGroup

from energy.domain.exceptions import error_document
from energyctl import failures
from energyctl.output import EXIT_CODES, Output, escape

# Command name -> module whose register(app) adds it. Only the module of the command being
# run is imported, so one command does not pay for the imports of all the others.
COMMANDS = {
    "consume": "energyctl.commands.consume",
    "balance": "energyctl.commands.consume",
    "seed": "energyctl.commands.seed",
    "replay": "energyctl.commands.replay",
    "race-demo": "energyctl.commands.race",
    "migrate": "energyctl.commands.server",
    "serve": "energyctl.commands.server",
    "db": "energyctl.commands.db",
    "clients": "energyctl.commands.clients",
    "show": "energyctl.commands.ledger",
    "history": "energyctl.commands.ledger",
    "audit": "energyctl.commands.ledger",
}
# Commands that live in other parts of the project; a missing module just means no command.
OPTIONAL_COMMANDS = {
    "bench": "energyctl.commands.bench",
    "torture": "energyctl.commands.torture",
}


class EnergyctlGroup(TyperGroup):
    """Turns every way a run can end into an exit code and at most one line on stderr.

    Typer has no documented hook for how usage errors are shown (it prints a rich panel, and
    never a JSON document for ``--json``), so ``main`` runs the group with Click's documented
    ``standalone_mode=False`` and maps what comes out. It stays on the group, not in ``run``,
    so that every way of calling the app, ``typer.testing.CliRunner`` included, gets it.
    """

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
        except typer.TyperException as exc:
            # Typer's public base of its usage and parameter errors; usage errors are the
            # ones that exit 2 (tests/test_dependencies.py fails if that ever changes).
            if exc.exit_code == EXIT_CODES["invalid_request"]:
                return _usage_error(exc, args)
            Output().note(f"[bold red]error[/]: {_one_line(exc.format_message())}")
            return exc.exit_code
        except typer.Abort:
            return failures.interrupted()
        except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
            if failures.wants_traceback():
                raise
            return failures.unexpected(exc, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise typer.Exit(failures.interrupted()) from None


def _usage_error(exc, args: list[str]) -> int:
    message = " ".join(exc.format_message().split())
    out = Output(as_json="--json" in args)
    if out.as_json:
        out.document(error_document("invalid_request", message or "usage error"))
    if message:  # empty when help was shown instead, as for a bare `energyctl`
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "energyctl"
        out.note(f"[bold red]error[/]: {escape(message)} (see '{command} --help')")
    return EXIT_CODES["invalid_request"]


def _one_line(text: str) -> str:
    return escape(" ".join(text.split()))


def build_app(command: str | None = None, *, completion: bool = True) -> typer.Typer:
    """The app with every command, or with only ``command`` when it names a known one.

    ``completion`` adds Typer's --install-completion/--show-completion; benchmarks/completion_cost.py
    measures what they cost a one-shot command's start-up.
    """
    app = typer.Typer(
        cls=EnergyctlGroup,
        name="energyctl",
        epilog="Example: energyctl seed --accounts 3 --energy 100 "
               "&& energyctl consume --account 1 --amount 30 --key k1",
        no_args_is_help=True,
        add_completion=completion,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_configure)
    wanted = {**COMMANDS, **OPTIONAL_COMMANDS}
    if command in wanted:
        wanted = {command: wanted[command]}
    for module_name in dict.fromkeys(wanted.values()):
        module = _import(module_name, optional=module_name in OPTIONAL_COMMANDS.values())
        if module is not None:
            module.register(app)
    return app


def _import(name: str, *, optional: bool):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if optional and exc.name == name:
            return None
        raise


def _print_version(asked: bool) -> None:
    if not asked:
        return
    # Imported only when asked: the other commands do not pay for reading package metadata.
    from importlib.metadata import version

    typer.echo(f"energyctl {version('energyctl')}")
    raise typer.Exit(0)


def _configure(
    database_url: str = typer.Option(
        None,
        "--database-url",
        envvar="DATABASE_URL",
        show_default=False,
        help="postgresql://… or sqlite:///path. Unset: an embedded PostgreSQL in a per-user data directory.",
    ),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the installed version and exit."
    ),
) -> None:
    """Spend energy from account balances exactly once, under retries and concurrency."""
    if database_url:
        os.environ["DATABASE_URL"] = database_url


def __getattr__(name: str):
    # `from energyctl.app import app` builds the whole app on demand, never at import time.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def run() -> None:
    build_app(_requested_command(sys.argv[1:]))(prog_name="energyctl")


def _requested_command(args: list[str]) -> str | None:
    """The first word of the command line that is not an option (nor the value of one)."""
    takes_value = False
    for arg in args:
        if takes_value:
            takes_value = False
        elif arg == "--database-url":
            takes_value = True
        elif not arg.startswith("-"):
            return arg
    return None
