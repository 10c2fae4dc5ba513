"""``energyctl consume``, ``balance`` and ``replay`` on a plain command line, without Typer.

These are the commands that scripts run one after another. Typer 0.29 checks every option
value through pydantic, and importing Typer and pydantic cost a one-shot consume more than
anything it does itself (README, "One-shot start-up"). So a command line of the plain form
``consume --account 1 --amount 30 --key k [--client NAME] [--json]`` or ``replay FILE
[--client NAME] [--json]`` (options in any order, each once, every value a separate word
that does not start with ``-``, the file ``-`` for stdin) is read here and handed to the same
functions as the Typer command. Anything else (help, a missing or repeated option, the
numeric options of replay, ``--opt=value``, global options, shell completion) goes to
Typer, which answers it, errors included, as always.

OPTIONS and ARGUMENTS repeat, for these commands, what their Typer declarations say;
tests/test_startup.py checks that the two agree and that every line accepted here is
read by Typer into the same values.
"""

from __future__ import annotations

import os

# command -> option -> the parameter it sets (a name in FLAGS: a flag that takes no value).
OPTIONS = {
    "consume": {"--account": "account", "--amount": "amount", "--key": "key", "--client": "client",
                "--json": "as_json"},
    "balance": {"--account": "account", "--json": "as_json"},
    "replay": {"--client": "client", "--json": "as_json"},
}
# command -> the parameter name of its one positional argument.
ARGUMENTS = {"replay": "file"}
FLAGS = {"as_json"}
REQUIRED = {"consume": {"account", "amount", "key"}, "balance": {"account"}, "replay": {"file"}}
# The file name that means stdin; any other value starting with "-" is left to Typer.
STDIN = "-"
# Set by the shell when it asks for completions; Typer answers those.
COMPLETION_VARIABLE = "_ENERGYCTL_COMPLETE"


def parse(args: list[str]) -> tuple[str, dict] | None:
    """The command and its parameters, as Typer would read them; None when Typer must read the line."""
    if not args or args[0] not in OPTIONS or COMPLETION_VARIABLE in os.environ:
        return None
    command, options = args[0], OPTIONS[args[0]]
    params: dict = {name: None for name in options.values()}
    params.update({name: False for name in FLAGS if name in params})
    seen: set[str] = set()
    words = iter(args[1:])
    for word in words:
        name = options.get(word) or _argument(command, word)
        if name is None or name in seen:
            return None
        seen.add(name)
        if name in FLAGS:
            params[name] = True
        elif name == ARGUMENTS.get(command):
            params[name] = word
        else:
            value = next(words, None)
            if value is None or not _plain(value):
                return None
            params[name] = value
    if not REQUIRED[command] <= seen:
        return None
    return command, params


def _argument(command: str, word: str) -> str | None:
    """The positional argument's name when ``word`` can be its value, else None."""
    if command in ARGUMENTS and (word == STDIN or _plain(word)):
        return ARGUMENTS[command]
    return None


def _plain(value: str) -> bool:
    """A value Typer takes as it is: not option-like, and text that encodes (no undecodable argv bytes)."""
    if value.startswith("-"):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run(args: list[str]) -> int | None:
    """Run a plain line and return its exit code; None when Typer must run it."""
    parsed = parse(args)
    if parsed is None:
        return None
    command, params = parsed
    from energyctl import failures

    try:
        return _run(command, params)
    except KeyboardInterrupt:
        return failures.interrupted()
    except Exception as exc:  # noqa: BLE001 - the last resort, as in the Typer app
        if failures.wants_traceback():
            raise
        return failures.unexpected(exc, args)


def _run(command: str, params: dict) -> int:
    from energy.presenters.output import Output

    if command == "replay":
        # As the Typer command does: Django first, then the file; the numeric options keep their defaults.
        from energy.presenters.replay import run_replay
        from energyctl.bootstrap import setup_django

        setup_django()
        return run_replay(Output(as_json=params["as_json"]), params["file"], client=params["client"])
    from energyctl.consume_run import run_balance, run_consume

    out = Output(as_json=params["as_json"])
    if command == "consume":
        return run_consume(out, params["account"], params["amount"], params["key"], client=params["client"])
    return run_balance(out, params["account"])
