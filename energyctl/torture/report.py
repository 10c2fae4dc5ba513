"""A run's figures as labelled rows, as ``energyctl torture`` shows them."""

from __future__ import annotations

from energyctl.torture.run import Report


def rows(report: Report) -> list[tuple[str, str]]:
    def counts(mapping: dict) -> str:
        return ", ".join(f"{name} {n}" for name, n in sorted(mapping.items())) or "none"

    figures = [
        ("database", f"{report.database} (seed {report.seed})"),
        ("load", f"{report.clients} clients, {report.accounts} accounts, {report.load_seconds} s"),
        ("requests", f"{report.requests} sent for {report.keys} keys"),
        ("requests by kind", counts(report.requests_by_kind)),
        ("outcomes", counts(report.outcomes)),
        ("unavailable because", counts(report.unavailable_reasons)),
        ("holds ended", counts(report.hold_states)),
        ("released by holds expire", str(report.released_by_holds_expire)),
        ("faults injected", counts(report.faults)),
        ("killed mid-request", str(report.kills_in_flight)),
        ("answers dropped", str(report.answers_dropped)),
        ("lost then replayed", str(report.lost_answers_replayed)),
        ("keys never answered", str(report.unanswered_keys)),
        ("violations", str(len(report.violations))),
        ("duration", f"{report.duration_seconds} s"),
    ]
    figures += [("fault not injected", failure) for failure in report.faults_not_injected]
    figures += [("VIOLATION", violation) for violation in report.violations]
    if report.kept_logs:
        figures.append(("client logs kept in", report.kept_logs))
    return figures

