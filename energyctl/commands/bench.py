"""``energyctl bench``: the consume path next to pgbench on the same server (see benchmarks/bench.py)."""

from __future__ import annotations

import typer

from energyctl.output import EXIT_CODES, Output, exit_help

BENCH_HELP = f"""Measure consume against pgbench running the same SQL, in a database of its own; check invariants.

{exit_help("ok", "violations", "invalid_request", "unavailable")}
"""


def register(app: typer.Typer) -> None:
    app.command(help=BENCH_HELP, epilog="Example: energyctl bench --seconds 10 --processes 8")(bench)


def bench(
    seconds: int = typer.Option(10, "--seconds", min=1, help="Length of each run, in seconds."),
    processes: int = typer.Option(8, "--processes", min=1, help="Processes (and pgbench clients) per run."),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Interleaved slices each engine's time is split into."),
    only: str = typer.Option("", "--only", help="Comma-separated workloads: single,hot,spread,storm,bulk,holds,"
                                                "http,http-hot,replay,replay-hot (http and replay name families)."),
    replay_lines: int = typer.Option(20_000, "--replay-lines", min=1, help="Lines of each end-to-end replay file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of the table."),
) -> None:
    from energyctl.prepare import prepare

    prepare()
    from energyctl.bench.report import render, run

    out = Output(as_json=as_json)
    names = [name for name in only.split(",") if name] or None
    try:
        report = run(seconds=seconds, processes=processes, only=names, rounds=rounds, replay_lines=replay_lines,
                     progress=None if as_json else lambda text: out.err.print(f"[dim]{text}[/dim]"))
    except ValueError as exc:
        raise typer.Exit(out.problem("invalid_request", str(exc))) from None
    if as_json:
        out.document(report)
    else:
        render(report, out.out)
    raise typer.Exit(EXIT_CODES["ok" if report["ok"] else "violations"])
