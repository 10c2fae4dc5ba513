"""Replay a JSON Lines stream of consume requests, applying each exactly once.

Lines are read one at a time and applied in chunks through ``consume_many``, so memory stays
flat however long the stream is. A line that is not JSON, or breaks an input rule, counts as
``invalid_request`` under its line number and never stops the run. Because every request
carries its idempotency key, an interrupted replay can simply be run again: what was applied
the first time comes back ``replayed``, and nothing is applied twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from energy.application.batch import consume_many
from energy.domain.exceptions import EnergyError, InvalidRequest
from energy.domain.requests import ConsumeRequest
from energy.models import OPERATOR_CLIENT_ID

OUTCOMES = (
    "applied",
    "replayed",
    "insufficient_energy",
    "account_not_found",
    "idempotency_key_mismatch",
    "invalid_request",
    "unavailable",
)
SUCCESSFUL = frozenset({"applied", "replayed"})
# Requests per consume_many call: large enough to amortise round trips, small enough that
# an interruption loses little work and one slow chunk does not stall progress reports.
CHUNK_SIZE = 500


@dataclass(frozen=True)
class LineFailure:
    """A line that did not end applied or replayed."""

    line: int
    outcome: str
    detail: str


@dataclass
class ReplaySummary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        """Every line ended applied or replayed."""
        return all(count == 0 for outcome, count in self.counts.items() if outcome not in SUCCESSFUL)

    def to_dict(self) -> dict:
        return {"total": self.total, **self.counts, "seconds": round(self.seconds, 3)}


class ReplayInterrupted(Exception):
    """The replay was stopped (Ctrl-C); ``summary`` counts the lines finished before."""

    def __init__(self, summary: ReplaySummary):
        super().__init__("replay interrupted")
        self.summary = summary


def replay(
    lines: Iterable[bytes | str],
    *,
    chunk_size: int = CHUNK_SIZE,
    on_progress: Callable[[ReplaySummary], None] | None = None,
    on_failure: Callable[[LineFailure], None] | None = None,
    client_id: int = OPERATOR_CLIENT_ID,
) -> ReplaySummary:
    """Apply every request in ``lines`` in ``client_id``'s key space (default: the operator's).

    ``lines`` holds JSON objects, one per line; blank lines are skipped.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    summary = ReplaySummary()
    started = time.perf_counter()
    pending: list[tuple[int, ConsumeRequest]] = []
    try:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                pending.append((number, _parse(raw)))
            except InvalidRequest as exc:
                _count(summary, number, exc, on_failure)
                continue
            if len(pending) >= chunk_size:
                _apply(pending, summary, on_failure, client_id)
                pending = []
                _report(summary, started, on_progress)
        if pending:
            _apply(pending, summary, on_failure, client_id)
        _report(summary, started, on_progress)
    except KeyboardInterrupt:
        summary.seconds = time.perf_counter() - started
        raise ReplayInterrupted(summary) from None
    return summary


def _parse(raw: bytes | str) -> ConsumeRequest:
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest({"body": f"is not valid JSON ({_first_line(exc)})"}) from None
    return ConsumeRequest.from_json(data)


def _apply(pending, summary: ReplaySummary, on_failure, client_id: int) -> None:
    outcomes = consume_many([request for _, request in pending], client_id=client_id)
    if len(outcomes) != len(pending):
        raise RuntimeError(f"consume_many answered {len(outcomes)} outcomes for {len(pending)} requests")
    for (number, _), outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, EnergyError):
            _count(summary, number, outcome, on_failure)
        else:
            summary.counts[outcome.status] += 1


def _count(summary: ReplaySummary, number: int, exc: EnergyError, on_failure) -> None:
    summary.counts[exc.outcome] += 1
    if on_failure is not None:
        on_failure(LineFailure(line=number, outcome=exc.outcome, detail=exc.detail))


def _report(summary: ReplaySummary, started: float, on_progress) -> None:
    summary.seconds = time.perf_counter() - started
    if on_progress is not None:
        on_progress(summary)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
