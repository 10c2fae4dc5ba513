"""``energyctl race-demo`` (and ``manage.py race_demo``): each removed protection, failing on cue."""

from __future__ import annotations

from typing import Optional

import typer

from energy.domain.exceptions import EnergyError, InvalidRequest
from energyctl.output import EXIT_CODES, Output, exit_help
from energyctl.prepare import prepare

DEFAULT_WORKERS = 8
DEFAULT_BALANCE = 100
DEFAULT_AMOUNT = 60

RACE_HELP = f"""Race real OS processes on PostgreSQL with each protection removed in turn, next to the protected path.

Each scenario is named for the protection it removes (no_unique_key, no_atomic, …), next to protected; \
an unknown --scenario lists them all.

{exit_help("ok", "not_as_expected", "unsupported", "invalid_request", "unavailable")} \
0 means the protected path held and every other scenario showed its anomaly.
"""


def register(app: typer.Typer) -> None:
    app.command(
        "race-demo",
        help=RACE_HELP,
        epilog="Example: energyctl race-demo --workers 8 --scenario protected --scenario no_unique_key",
    )(race_demo)


def race_demo(
    workers: int = typer.Option(DEFAULT_WORKERS, "--workers", metavar="INTEGER", min=2, max=64,
                                help="Processes racing each other, each with its own connection."),
    balance: int = typer.Option(DEFAULT_BALANCE, "--balance", metavar="INTEGER", min=1,
                                help="Starting balance of the contested account."),
    amount: int = typer.Option(DEFAULT_AMOUNT, "--amount", metavar="INTEGER", min=1,
                               help="Energy each process tries to spend."),
    scenario: Optional[list[str]] = typer.Option(
        None, "--scenario", metavar="NAME", help="Run only this scenario (repeatable). Default: all of them."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document."),
) -> None:
    out = Output(as_json=as_json)
    raise typer.Exit(run_race(out, workers=workers, balance=balance, amount=amount, scenarios=scenario))


def run_race(out: Output, *, workers: int = DEFAULT_WORKERS, balance: int = DEFAULT_BALANCE,
             amount: int = DEFAULT_AMOUNT, scenarios: list[str] | None = None) -> int:
    from energy.race import SCENARIOS, DemoError, DemoUnsupported, run_demo

    try:
        unknown = [name for name in scenarios or () if name not in SCENARIOS]
        if unknown:
            raise InvalidRequest({"scenario": f"unknown: {', '.join(unknown)} (known: {', '.join(SCENARIOS)})"})
        prepare()
        report = _run(out, run_demo, workers=workers, balance=balance, amount=amount, scenarios=scenarios or None)
    except EnergyError as exc:
        return out.fail(exc)
    except DemoUnsupported as exc:
        return out.problem("unsupported", str(exc))
    except DemoError as exc:
        return out.problem("demo_failed", str(exc))
    if out.as_json:
        out.document(report.to_dict())
    else:
        from energyctl.race_view import render

        render(report, out.out)
    return EXIT_CODES["ok" if report.ok else "not_as_expected"]


def _run(out: Output, run_demo, **options):
    if not out.err.is_terminal:
        return run_demo(**options)
    with out.err.status("Racing processes…") as status:
        return run_demo(**options, on_progress=lambda message: status.update(message))
