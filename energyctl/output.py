"""Where outcomes become exit codes and text: rich for people, one JSON document for programs.

Everything meant for people who read results goes to stdout through rich; every error goes
to stderr. With ``--json`` stdout carries exactly one JSON document, success or error.
"""

from __future__ import annotations

import json
import sys
from functools import cached_property
from typing import IO, Any, Callable

from energy.domain.exceptions import EnergyError, InvalidRequest, error_document

# The one table from how a run ends to its exit code. Exit codes, error documents and the
# "Exit status" line of every --help are all read from here (see the contract).
EXIT_CODES = {
    # Outcomes of one request.
    "applied": 0,
    "replayed": 0,
    "invalid_request": 2,
    "insufficient_energy": 3,
    "account_not_found": 4,
    "client_not_found": 4,
    "key_not_found": 4,
    "idempotency_key_mismatch": 5,
    "invalid_state": 7,
    "unavailable": 75,  # EX_TEMPFAIL: retry later, with the same key
    # Ends of a whole command.
    "ok": 0,
    "internal_error": 1,  # unexpected: one redacted line, never a traceback
    "violations": 1,  # audit: the ledger breaks an invariant
    "not_as_expected": 1,  # race demo: a scenario did not do what it must
    "unsupported": 1,  # race demo: the database cannot run it
    "demo_failed": 1,
    "incomplete": 6,  # replay: some line ended other than applied or replayed
    "configuration": 78,  # EX_CONFIG: the environment refuses a setting, e.g. production without a secret key
    "interrupted": 130,  # 128 + SIGINT, what shells report for Ctrl-C
}
JSON_HELP = "Print one JSON document on stdout (success or error) instead of tables."


def exit_help(*ends: str) -> str:
    """The "Exit status" line of a command's help, for the ways it can end, with codes from EXIT_CODES.

    ``exit_help("applied", "replayed", "unavailable")`` is "Exit status: 0 applied, replayed;
    75 unavailable."; names sharing a code share an entry.
    """
    by_code: dict[int, list[str]] = {}
    for end in ends:
        by_code.setdefault(EXIT_CODES[end], []).append(end)
    return "Exit status: " + "; ".join(f"{code} {', '.join(names)}" for code, names in sorted(by_code.items())) + "."


OUTCOME_STYLE = {
    "applied": "green",
    "replayed": "cyan",
    "insufficient_energy": "yellow",
    "account_not_found": "yellow",
    "client_not_found": "yellow",
    "key_not_found": "yellow",
    "idempotency_key_mismatch": "magenta",
    "invalid_state": "magenta",
    "invalid_request": "red",
    "unavailable": "red",
}


class Output:
    """The two streams of one command run and whether stdout speaks JSON."""

    def __init__(self, *, as_json: bool = False, stdout: IO[str] | None = None, stderr: IO[str] | None = None):
        self.as_json = as_json
        self._stdout = stdout
        self._stderr = stderr

    # The consoles are made on first use: a --json run never pays for importing rich.
    # file=None makes rich look sys.stdout/sys.stderr up on every write, so test runners
    # that swap the streams see the output.
    @cached_property
    def out(self):
        from rich.console import Console

        return Console(file=self._stdout, highlight=False, soft_wrap=True)

    @cached_property
    def err(self):
        from rich.console import Console

        return Console(file=self._stderr, stderr=self._stderr is None, highlight=False, soft_wrap=True)

    def document(self, data: Any) -> None:
        stream = self._stdout or sys.stdout
        stream.write(json.dumps(data) + "\n")
        stream.flush()

    def answer(self, value, show: Callable[[Any], None]) -> None:
        """A command's result: ``value.to_dict()`` as the one JSON document, or ``show(value)`` for people."""
        if self.as_json:
            self.document(value.to_dict())
        else:
            show(value)

    def run(self, work: Callable[[], Any], show: Callable[[Any], None]) -> int:
        """Run one request's ``work`` and end the command: its result answered with the exit code of
        its status, or its refusal reported with the refusal's."""
        try:
            result = work()
        except EnergyError as exc:
            return self.fail(exc)
        self.answer(result, show)
        return EXIT_CODES[result.status]

    def fail(self, exc: EnergyError) -> int:
        """Report a failed outcome once and return its exit code."""
        fields = exc.fields if isinstance(exc, InvalidRequest) else None
        return self.problem(exc.outcome, exc.detail, fields)

    def problem(self, error: str, detail: str, fields: dict | None = None) -> int:
        """Report ``error`` once (a JSON error document, or one line on stderr); its exit code from EXIT_CODES."""
        if self.as_json:
            self.document(error_document(error, detail, fields))
        else:
            self.err.print(f"[bold red]{error}[/]: {escape(detail)}")
        return EXIT_CODES[error]

    def note(self, text: str) -> None:
        """A remark for people (progress, warnings, hints): stderr, so stdout stays clean for data."""
        self.err.print(text)


def escape(text: str) -> str:
    """User data shown through rich must not be read as markup (a key like ``[red]``)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def show_record(out: Output, result, *, title: str) -> None:
    """One stored consumption as a two-column table: what ``consume`` answers and ``show`` finds."""
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0), title_justify="left", title=title)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("account", str(result.account_id))
    table.add_row("amount", str(result.amount))
    table.add_row("balance after", str(result.balance_after))
    table.add_row("key", escape(result.idempotency_key))
    table.add_row("consumption", str(result.entry_id))
    table.add_row("recorded at", result.created_at.isoformat())
    out.out.print(table)
