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


# One hold captured and voided (or captured twice...): energy both spent and given back.
DOUBLE_RESOLUTION = "double_resolution"
# The account's held differs from what its open holds reserve.
HELD_DRIFT = "held_drift"
CAPTURE, VOID = "capture", "void"


def audit_holds(opening: int, energy: int, held: int, entries: list[tuple]) -> list[Finding]:
    """Every broken guarantee of one account's holds.

    ``entries`` are (id, kind, amount, key, target_id, state): holds and the captures and voids that resolve them.
    """
    findings = []
    holds = {entry[0]: entry for entry in entries if entry[1] == "hold"}
    resolutions: dict[int, list[tuple]] = {}
    for entry in entries:
        if entry[1] in (CAPTURE, VOID):
            resolutions.setdefault(entry[4], []).append(entry)
    for hold_id, resolved in sorted(resolutions.items()):
        if len(resolved) > 1:
            _, _, amount, key, _, state = holds[hold_id]
            spent = sum(r[2] for r in resolved if r[1] == CAPTURE)
            given_back = sum(amount for r in resolved if r[1] == VOID)
            kinds = " and ".join(("captured" if r[1] == CAPTURE else "voided") for r in resolved)
            findings.append(Finding(
                DOUBLE_RESOLUTION,
                f"resolved twice: hold {key!r} {kinds} (its state says {state}): "
                f"{spent} spent and {given_back} given back from one hold of {amount}",
            ))
    open_held = sum(hold[2] for hold in holds.values() if hold[5] == "open")
    if held != open_held:
        findings.append(Finding(HELD_DRIFT, f"held is {held}, but the open holds reserve {open_held}"))
    captured = sum(entry[2] for entry in entries if entry[1] == CAPTURE)
    if energy + held != opening - captured:
        findings.append(Finding(
            RECORDS_EXCEED_DEDUCTIONS if energy + held > opening - captured else DEDUCTIONS_EXCEED_RECORDS,
            f"energy + held is {energy + held}, but opening {opening} - captures {captured} is {opening - captured}",
        ))
    return findings
