"""What the management commands share: rich output on Django's streams, exit codes as CommandError."""

from __future__ import annotations

from django.core.management.base import CommandError

from energyctl.output import Output


class _RawStream:
    """Django's OutputWrapper appends a newline to each write; rich writes whole lines itself."""

    def __init__(self, wrapper):
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, ending="")
        return len(text)

    def flush(self) -> None:
        self.wrapper.flush()

    def isatty(self) -> bool:
        return self.wrapper.isatty()


def output_for(command, as_json: bool) -> Output:
    return Output(as_json=as_json, stdout=_RawStream(command.stdout), stderr=_RawStream(command.stderr))


def finish(code: int, what: str) -> None:
    """Turn the shared function's exit code into Django's: CommandError carries it to the shell."""
    if code:
        raise CommandError(f"{what} (exit {code})", returncode=code)
