"""Human output of the race demo: a result table, then each scenario's timeline, in 80 columns."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

SESSION_STYLES = {"T1": "bold cyan", "T2": "bold magenta"}


def render(report, console: Console) -> None:
    console.print(
        f"[bold]Race demo[/] on {report.backend} with {report.workers} processes",
        highlight=False,
    )
    console.print(_summary(report))
    for result in report.scenarios:
        console.print()
        console.print(_scenario(result))
    console.print()
    console.print(_verdict(report))


def _summary(report) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("scenario", no_wrap=True)
    table.add_column("protection removed", min_width=19, overflow="fold")
    table.add_column("expected", justify="right")
    table.add_column("final", justify="right")
    table.add_column("records", justify="right")
    table.add_column("verdict", no_wrap=True)
    for result in report.scenarios:
        table.add_row(
            result.name,
            result.protection_removed,
            str(result.expected_balance),
            Text(str(result.final_balance), style="" if result.holds else "red"),
            str(result.consumptions_recorded),
            _badge(result),
        )
    return table


def _badge(result) -> Text:
    if result.name == "protected":
        return Text("holds", style="green") if result.holds else Text("BROKEN", style="bold red")
    if result.as_expected:
        return Text("broken", style="yellow")
    return Text("NOT SHOWN", style="bold red")


def _scenario(result) -> Group:
    title = Text.assemble((result.name, "bold"), f"  (removed: {result.protection_removed})")
    steps = Table.grid(padding=(0, 1))
    steps.add_column(justify="right", style="dim")
    steps.add_column(no_wrap=True)
    steps.add_column(overflow="fold")
    for number, step in enumerate(result.timeline, 1):
        if step.session:
            steps.add_row(str(number), Text(step.session, style=SESSION_STYLES.get(step.session, "bold")),
                          step.text)
        else:
            steps.add_row(str(number), "", Text(step.text, style="italic dim"))
    findings = Table.grid(padding=(0, 1))
    findings.add_column(no_wrap=True)
    findings.add_column(overflow="fold")
    for anomaly in result.anomalies:
        findings.add_row(Text("x", style="bold red"), Text(anomaly, style="red"))
    if result.holds:
        findings.add_row(Text("ok", style="bold green"), Text("no anomaly: every guarantee held", style="green"))
    return Group(title, Padding(steps, (0, 0, 0, 2)), Padding(findings, (0, 0, 0, 2)))


def _verdict(report) -> Text:
    if report.ok:
        unsafe = sum(1 for result in report.scenarios if result.name != "protected")
        shown = f"{unsafe} unsafe variant{'s' if unsafe != 1 else ''} broke as expected"
        if any(result.name == "protected" for result in report.scenarios):
            shown += "; the protected path held"
        return Text(f"OK: {shown}{_took(report)}.", style="bold green")
    problems = [result.name for result in report.scenarios if not result.as_expected]
    return Text(f"FAILED: {', '.join(problems)} did not behave as expected{_took(report)}.", style="bold red")


def _took(report) -> str:
    return f" ({report.seconds:.1f} s)" if report.seconds else ""
