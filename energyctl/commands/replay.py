"""``energyctl replay`` (and ``manage.py replay_keys``): apply a JSON Lines file of requests, each exactly once."""

from __future__ import annotations

import sys
from contextlib import contextmanager, nullcontext
from typing import BinaryIO

import typer

from energy.domain.exceptions import EnergyError, InvalidRequest
from energyctl.output import EXIT_CODES, OUTCOME_STYLE, Output, escape, exit_help
from energyctl.prepare import prepare

DEFAULT_CHUNK = 500
DEFAULT_SHOWN_FAILURES = 20
# The same as energy.application.replay.RETRY_FOR_S, without importing Django for --help.
DEFAULT_RETRY_FOR_S = 30.0
WAITING = "waiting for the database"


REPLAY_HELP = f"""Apply every request of a JSON Lines file exactly once, then count the outcomes.

Each line is {{"account_id": 1, "amount": 30, "idempotency_key": "k1"}}, a consume; with \
"kind": "credit" the same fields add energy, and {{"kind": "reverse", "idempotency_key": "k1"}} \
gives consumption k1 back. Lines apply in file order. Blank lines are skipped; malformed lines, \
an unknown kind, and lines over 64 KiB, count as invalid_request.

While the database is unavailable the replay waits and retries, for up to --retry-for \
seconds; past that it stops and counts the lines not applied as unavailable.

An interrupted or stopped run can be started again with the same file: lines already \
applied come back replayed, and nothing is applied twice.

{exit_help("ok", "invalid_request", "client_not_found", "incomplete", "unavailable",
           "interrupted")} \
0 means every line ended applied or replayed; 2, a FILE that cannot be read.
"""


def register(app: typer.Typer) -> None:
    app.command(
        help=REPLAY_HELP,
        epilog="Example: energyctl replay requests.jsonl   (or: generate-requests | energyctl replay - --json)",
    )(replay)


def replay(
    file: str = typer.Argument(..., metavar="FILE", help="JSON Lines file of requests, or - for stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON document."),
    chunk_size: int = typer.Option(DEFAULT_CHUNK, "--chunk-size", metavar="INTEGER", min=1, max=10_000,
                                   help="Requests sent to the database per batch."),
    show_failures: int = typer.Option(DEFAULT_SHOWN_FAILURES, "--show-failures", metavar="INTEGER", min=0,
                                      help="Report at most this many failed lines (number and reason) on stderr."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False,
                               help="Act in this client's idempotency-key space "
                                    "(default: operator, the command line's own)."),
    retry_for: float = typer.Option(DEFAULT_RETRY_FOR_S, "--retry-for", metavar="SECONDS", min=0,
                                    help="Wait this long for an unavailable database (backoff with jitter) "
                                         "before stopping as unavailable; 0 stops at once."),
) -> None:
    out = Output(as_json=as_json)
    raise typer.Exit(run_replay(out, file, chunk_size=chunk_size, show_failures=show_failures, client=client,
                                retry_for=retry_for))


def run_replay(out: Output, file: str, *, chunk_size: int = DEFAULT_CHUNK,
               show_failures: int = DEFAULT_SHOWN_FAILURES, stdin: BinaryIO | None = None,
               client: str | None = None, retry_for: float = DEFAULT_RETRY_FOR_S) -> int:
    try:
        stream, size = _open(file, stdin)
    except InvalidRequest as exc:
        return out.fail(exc)
    failures = _FailureReport(out, show_failures)
    try:
        with stream as source:
            prepare()
            from energy.application.clients import client_id_for

            client_id = client_id_for(client)
            summary, interrupted = _replay(out, _CountingLines(source), size, chunk_size, failures, client_id,
                                           retry_for)
    except EnergyError as exc:
        return out.fail(exc)
    _show_summary(out, summary, failures)
    if interrupted:
        out.note(
            f"Interrupted after {summary.total} lines: run the same command again to finish; "
            "lines already applied will be replayed, never applied twice."
        )
        return EXIT_CODES["interrupted"]
    if summary.stopped:
        out.note(
            f"The database stayed unavailable for {retry_for:g} s, so the replay stopped: "
            f"{summary.counts['unavailable']} lines were not applied. Run the same command again to continue; "
            "lines already applied will be replayed, never applied twice."
        )
        return EXIT_CODES["unavailable"]
    return EXIT_CODES["ok" if summary.ok else "incomplete"]


def _open(file: str, stdin: BinaryIO | None):
    if file == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return nullcontext(stream), None  # stdin stays open after the replay
    try:
        stream = open(file, "rb")
    except OSError as exc:
        raise InvalidRequest({"file": f"cannot be read: {exc.strerror or exc} ({file})"}) from None
    import os

    return stream, os.fstat(stream.fileno()).st_size


def _replay(out: Output, lines: "_CountingLines", size: int | None, chunk_size: int, failures, client_id: int,
            retry_for: float):
    """Run the replay use case; returns its summary and whether it was interrupted."""
    from energy.application.replay import ReplayInterrupted, replay_lines

    options = dict(chunk_size=chunk_size, on_failure=failures.add, client_id=client_id, retry_for=retry_for)
    try:
        if not out.err.is_terminal:
            return replay_lines(lines, on_waiting=_note_waiting(out), **options), False
        with _progress_bar(out, lines, size) as (advance, waiting):
            return replay_lines(lines, on_progress=advance, on_waiting=waiting, **options), False
    except ReplayInterrupted as stopped:
        return stopped.summary, True


def _note_waiting(out: Output):
    """Without a progress line, say once per outage that the replay waits, and why."""

    def waiting(wait) -> None:
        if wait.first:
            out.note(f"{WAITING} ({escape(wait.reason)}); retrying for up to {wait.seconds_left:.0f} s")

    return waiting


@contextmanager
def _progress_bar(out: Output, lines: "_CountingLines", size: int | None):
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("{task.fields[status]}"), BarColumn(), TextColumn("{task.fields[lines]} lines")]
    columns += [DownloadColumn(), TimeRemainingColumn()] if size else [TimeElapsedColumn()]
    with Progress(*columns, console=out.err, transient=True) as progress:
        task = progress.add_task("replay", total=size or None, lines=0, status="replay")

        def advance(summary) -> None:
            progress.update(task, completed=lines.bytes_read, lines=summary.total, status="replay")

        def waiting(wait) -> None:
            progress.update(task, status=f"[yellow]{WAITING}[/] (retry in {wait.delay:.1f} s, "
                                         f"{wait.seconds_left:.0f} s left)")

        yield advance, waiting


def _show_summary(out: Output, summary, failures: "_FailureReport") -> None:
    failures.finish()
    if out.as_json:
        out.document(summary.to_dict())
        return
    from rich.table import Table

    table = Table(title="replay", title_justify="left")
    table.add_column("outcome")
    table.add_column("lines", justify="right")
    for outcome, count in summary.counts.items():
        style = OUTCOME_STYLE[outcome] if count else "dim"
        table.add_row(f"[{style}]{outcome}[/]", f"[{style}]{count}[/]")
    table.add_row("[bold]total[/]", f"[bold]{summary.total}[/]", end_section=True)
    out.out.print(table)
    rate = summary.total / summary.seconds if summary.seconds > 0 else 0.0
    out.out.print(f"{summary.total} lines in {summary.seconds:.2f} s ({rate:,.0f} lines/s)")


class _FailureReport:
    """Prints the first few failed lines on stderr and counts the rest, in constant memory."""

    def __init__(self, out: Output, limit: int):
        self.out, self.limit, self.shown, self.hidden = out, limit, 0, 0

    def add(self, failure) -> None:
        if self.shown < self.limit:
            self.shown += 1
            self.out.note(f"line {failure.line}: [bold]{failure.outcome}[/]: {escape(failure.detail)}")
        else:
            self.hidden += 1

    def finish(self) -> None:
        if self.hidden and self.limit:
            self.out.note(f"… and {self.hidden} more failed lines (raise --show-failures to see them)")


class _CountingLines:
    """Iterates over a binary stream's lines, each of bounded length, and remembers how many bytes were read."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.bytes_read = stream, 0

    def __iter__(self):
        from energy.application.replay import read_lines

        for line in read_lines(self.stream):
            self.bytes_read += len(line)
            yield line

