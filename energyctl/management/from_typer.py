"""Management commands made from the command line's own Typer declarations: same options, same run.

``manage.py replay_keys FILE --client shop`` is ``energyctl replay FILE --client shop``. The
parser's arguments are built from the click parameters of the Typer command
(``typer.main.get_command``), so an option added to the command line is an option of the
management command too; ``handle`` turns the parsed options back into that command line and
runs it through ``energyctl.app.main``, so input checks, output and exit codes are the
command line's. A non-zero exit status becomes ``CommandError(returncode=status)``.
"""

from __future__ import annotations

import argparse
from contextlib import redirect_stderr, redirect_stdout
from functools import cached_property

from django.core.management.base import BaseCommand, CommandError


class TyperCommand(BaseCommand):
    """Base of a management command that is one ``energyctl`` command; subclasses name it."""

    cli_command: str  # the energyctl command's name, e.g. "replay"

    @cached_property
    def click_command(self):
        import typer

        from energyctl.app import build_app

        return typer.main.get_command(build_app(self.cli_command)).commands[self.cli_command]

    @property
    def help(self) -> str:
        return f"{self.click_command.help.strip()}\n\nThe same as: energyctl {self.cli_command}"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # Nothing defaults here: an option left out is left out of the command line, so the
        # Typer declaration's own default applies.
        for param in self.click_command.params:
            if param.param_type_name == "argument":
                parser.add_argument(param.name, metavar=param.metavar or param.name.upper(), help=param.help,
                                    nargs=None if param.nargs == 1 else "*")
            elif param.is_flag:
                parser.add_argument(*param.opts, dest=param.name, action="store_true", default=argparse.SUPPRESS,
                                    help=param.help)
                if param.secondary_opts:
                    parser.add_argument(*param.secondary_opts, dest=param.name, action="store_false",
                                        default=argparse.SUPPRESS)
            else:
                parser.add_argument(*param.opts, dest=param.name, metavar=param.metavar, required=param.required,
                                    action="append" if param.multiple else "store", default=argparse.SUPPRESS,
                                    help=param.help)

    def handle(self, *args, **options) -> None:
        from energyctl.app import main

        streams = _RawStream(self.stdout), _RawStream(self.stderr)
        with redirect_stdout(streams[0]), redirect_stderr(streams[1]):
            status = main(self.command_line(options))
        if status:
            raise CommandError(f"energyctl {self.cli_command} ended with exit status {status}", returncode=status)

    def command_line(self, options: dict) -> list[str]:
        """The energyctl command line that says what ``options`` say."""
        words, positional = [self.cli_command], []
        for param in self.click_command.params:
            if param.name not in options:
                continue
            value = options[param.name]
            if param.param_type_name == "argument":
                positional += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            elif param.is_flag:
                words += [param.opts[0]] if value else param.secondary_opts[:1]
            else:
                name = max(param.opts, key=len)
                for item in value if param.multiple else [value]:
                    # One word (--key=-x), so a value that starts with "-" is never read as an option.
                    words += [f"{name}={item}"] if name.startswith("--") else [name, str(item)]
        return [*words, "--", *positional] if positional else words


class _RawStream:
    """Django's OutputWrapper ends each write with a newline; the command line writes whole lines itself."""

    def __init__(self, wrapper):
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, ending="")
        return len(text)

    def flush(self) -> None:
        self.wrapper.flush()

    def isatty(self) -> bool:
        return self.wrapper.isatty()
