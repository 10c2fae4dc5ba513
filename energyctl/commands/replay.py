"""``energyctl replay``: apply a JSON Lines file of requests."""

from __future__ import annotations

import typer

from energyctl.commands.replay_run import DEFAULT_CHUNK, DEFAULT_RETRY_FOR_S, DEFAULT_SHOWN_FAILURES, run_replay
from energyctl.output import Output
from energyctl.prepare import prepare


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Example: energyctl replay requests.jsonl   (or: generate-requests | energyctl replay - --json)"
    )(replay)


def replay(
    file: str = typer.Argument(..., metavar="FILE", help="JSON Lines file of requests, or - for stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON document."),
    chunk_size: int = typer.Option(DEFAULT_CHUNK, "--chunk-size", min=1, max=10_000,
                                   help="Requests sent to the database per batch."),
    show_failures: int = typer.Option(DEFAULT_SHOWN_FAILURES, "--show-failures", min=0,
                                      help="Report at most this many failed lines (number and reason) on stderr."),
    client: str = typer.Option(None, "--client", metavar="NAME", show_default=False,
                               help="Act in this client's idempotency-key space "
                                    "[default: operator, the command line's own]."),
    retry_for: float = typer.Option(DEFAULT_RETRY_FOR_S, "--retry-for", metavar="SECONDS", min=0,
                                    help="Wait this long for an unavailable database (backoff with jitter) "
                                         "before stopping with exit 75; 0 stops at once."),
) -> None:
    """Apply every request of a JSON Lines file exactly once, then count the outcomes.

    Each line is {"account_id": 1, "amount": 30, "idempotency_key": "k1"}. Blank lines are \
skipped; malformed lines count as invalid_request. Exit 0 if every line ended applied or replayed, else 6.

    While the database is unavailable the replay waits and retries, for up to --retry-for \
seconds; past that it stops, counts the lines not applied as unavailable and exits 75.

    An interrupted or stopped run can be started again with the same file: lines already \
applied come back replayed, and nothing is applied twice.
    """
    prepare()
    out = Output(as_json=as_json)
    raise typer.Exit(run_replay(out, file, chunk_size=chunk_size, show_failures=show_failures, client=client,
                                retry_for=retry_for))

