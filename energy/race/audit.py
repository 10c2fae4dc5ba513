"""The contract's guarantees, checked against what one account and its records ended with."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

OVERDRAW = "overdraw"
DUPLICATE_KEY = "duplicate_key"
# More recorded than deducted (a lost update, or a record whose deduction never happened)...
RECORDS_EXCEED_DEDUCTIONS = "records_exceed_deductions"
# ...or the reverse: energy gone with no record saying where.
DEDUCTIONS_EXCEED_RECORDS = "deductions_exceed_records"


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str


def audit(start: int, final: int, records: list[tuple[str, int]], *, mismatch_name: str = "") -> list[Finding]:
    """Every broken guarantee of one account that started with ``start``; ``records`` are (key, amount)."""
    findings = []
    spent = sum(amount for _, amount in records)
    if final < 0 or spent > start:
        leaving = f", leaving {final}" if final < 0 else ""
        findings.append(Finding(OVERDRAW, f"overdraw: {spent} consumed from a balance of {start}{leaving}"))
    for key, times in sorted(Counter(key for key, _ in records).items()):
        if times > 1:
            total = sum(amount for k, amount in records if k == key)
            findings.append(Finding(DUPLICATE_KEY, f"duplicate: key {key!r} applied {times} times, {total} deducted"))
    fell_by = start - final
    prefix = f"{mismatch_name}: " if mismatch_name else ""
    if spent > fell_by:
        findings.append(Finding(
            RECORDS_EXCEED_DEDUCTIONS,
            f"{prefix}{spent - fell_by} recorded as consumed but never deducted "
            f"(records total {spent}, the balance fell by {fell_by})",
        ))
    elif spent < fell_by:
        findings.append(Finding(
            DEDUCTIONS_EXCEED_RECORDS,
            f"{prefix}{fell_by - spent} deducted without a record "
            f"(records total {spent}, the balance fell by {fell_by})",
        ))
    return findings
