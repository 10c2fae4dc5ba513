"""The race demo as ``energyctl race-demo`` and ``manage.py race_demo`` show it."""

from __future__ import annotations

from energy.domain.exceptions import EnergyError, InvalidRequest
from energyctl.output import EXIT_FAILED, Output
from energyctl.prepare import prepare

DEFAULT_WORKERS = 8
DEFAULT_BALANCE = 100
DEFAULT_AMOUNT = 60


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
        return out.problem("unsupported", str(exc), None, EXIT_FAILED)
    except DemoError as exc:
        return out.problem("demo_failed", str(exc), None, EXIT_FAILED)
    if out.as_json:
        out.document(report.to_dict())
    else:
        from energyctl.race_view import render

        render(report, out.out)
    return 0 if report.ok else EXIT_FAILED


def _run(out: Output, run_demo, **options):
    if not out.err.is_terminal:
        return run_demo(**options)
    with out.err.status("Racing processes…") as status:
        return run_demo(**options, on_progress=lambda message: status.update(message))
