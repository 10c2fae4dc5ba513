"""The ``energyctl`` command line: the Typer app built from command modules, and ``main``, where every run ends.

Each module named in COMMANDS declares its commands with Typer and exposes ``register(app)``.
Importing this module imports no Django and touches no database, so ``--help`` and usage
errors never wait for a server.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from energy.domain.exceptions import EnergyError
from energyctl.output import EXIT_CODES, Output, escape

# Command name -> module whose register(app) adds it. Only the module of the command being
# run is imported, so one command does not pay for the imports of all the others.
COMMANDS = {
    "consume": "energyctl.commands.consume",
    "balance": "energyctl.commands.consume",
    "credit": "energyctl.commands.entries",
    "reverse": "energyctl.commands.entries",
    "hold": "energyctl.commands.holds",
    "capture": "energyctl.commands.holds",
    "void": "energyctl.commands.holds",
    "holds": "energyctl.commands.holds",
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


def main(args: list[str] | None = None) -> int:
    """Run one command line and return its exit code: every way a run can end is mapped here, once.

    Click's documented ``standalone_mode=False`` makes the command hand back what happened
    (an exit code, or the usage error) instead of printing Typer's own error panel and exiting,
    so a usage error is one line on stderr, and one JSON document on stdout with ``--json``.
    """
    args = sys.argv[1:] if args is None else list(args)
    try:
        command = typer.main.get_command(build_app(_requested_command(args)))
        returned = command.main(args, prog_name="energyctl", standalone_mode=False)
    except typer.TyperException as exc:
        # Typer's public base of its usage and parameter errors; usage errors are the ones
        # that exit 2 (tests/test_dependencies.py fails if that ever changes).
        if exc.exit_code == EXIT_CODES["invalid_request"]:
            return _usage_error(exc, args)
        Output().note(f"[bold red]error[/]: {escape(' '.join(exc.format_message().split()))}")
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return EXIT_CODES["interrupted"]
    except EnergyError as exc:  # an outcome no command caught itself, e.g. a bad ENERGYCTL_* setting
        return Output(as_json="--json" in args).fail(exc)
    except SystemExit as exc:  # Typer's shell completion ends the process itself
        return exc.code if isinstance(exc.code, int) else EXIT_CODES["ok" if exc.code is None else "internal_error"]
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        if os.environ.get("ENERGYCTL_TRACEBACK") == "1":
            raise
        return _unexpected(exc, args)
    return returned if isinstance(returned, int) else EXIT_CODES["ok"]


def _usage_error(exc, args: list[str]) -> int:
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and exc.format_message() == ctx.get_help():
        # A group named without a command (a bare `energyctl`): its help, on stderr as Click shows it.
        sys.stderr.write(ctx.get_help() + "\n")
        return EXIT_CODES["invalid_request"]
    message = " ".join(exc.format_message().split()) or "usage error"
    out = Output(as_json="--json" in args)
    if out.as_json:
        from energy.domain.exceptions import error_document

        out.document(error_document("invalid_request", message))
    command = ctx.command_path if ctx is not None else "energyctl"
    out.note(f"[bold red]error[/]: {escape(message)} (see '{command} --help')")
    return EXIT_CODES["invalid_request"]


def _unexpected(exc: Exception, args: list[str]) -> int:
    """One redacted line (and the JSON error document for --json); ENERGYCTL_TRACEBACK=1 shows where instead."""
    from energy.db.redact import redact_text

    message = f"unexpected {type(exc).__name__}: {' '.join(redact_text(str(exc)).split())}"
    out = Output(as_json="--json" in args)
    return out.problem("internal_error", f"{message} (set ENERGYCTL_TRACEBACK=1 to see where)")


def build_app(command: str | None = None, *, completion: bool = True) -> typer.Typer:
    """The app with every command, or with only ``command`` when it names a known one.

    ``completion`` adds Typer's --install-completion/--show-completion; benchmarks/completion_cost.py
    measures what they cost a one-shot command's start-up.
    """
    app = typer.Typer(
        name="energyctl",
        epilog="Example: energyctl seed --accounts 3 --energy 100 "
               "&& energyctl consume --account 1 --amount 30 --key k1",
        no_args_is_help=True,
        add_completion=completion,
        pretty_exceptions_enable=False,
        # Plain help pages: each option with its real type, none after a flag, and no
        # import of rich just to print them.
        rich_markup_mode=None,
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
    raise typer.Exit(EXIT_CODES["ok"])


def _configure(
    database_url: str = typer.Option(
        None,
        "--database-url",
        envvar="DATABASE_URL",
        metavar="URL",
        show_default=False,
        help="postgresql://… or sqlite:///path. Unset: an embedded PostgreSQL in a per-user data directory. "
             "Prefer the DATABASE_URL environment variable: a URL given here, password included, is visible "
             "to other users of the machine in the process list (ps).",
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
