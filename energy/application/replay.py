"""Replay a JSON Lines stream of ledger requests, applying each exactly once.

Lines are read one at a time (``read_lines``), each at most ``MAX_LINE_BYTES`` long, and
applied in chunks through ``apply_many``, so memory stays flat however long the stream or
any of its lines is. A line's ``"kind"`` says what it asks for: ``consume`` (the default, with
``account_id``, ``amount`` and ``idempotency_key``), ``credit`` (the same fields) or ``reverse``
(``idempotency_key`` alone, the consumption's). Runs of consumes go in batches; a credit or a
reverse goes on its own, after the lines before it, so the file's order holds. A line that
is too long, not JSON, of an unknown kind, or breaks an input rule, counts as
``invalid_request`` under its line number and never stops the run. Because every request
carries its idempotency key, an interrupted replay can simply be run again: what was applied
the first time comes back ``replayed``, and nothing is applied twice.

A chunk that meets an unavailable database (a restart, a terminated connection, a lock
timeout) is tried again with capped exponential backoff and jitter, for up to ``retry_for``
seconds of one outage. Past that the replay stops sending: every line not applied is counted
``unavailable`` (the rest of the stream is still read, so that the counts add up to the
file), and the summary says the run ``stopped``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

from energy.application.batch import apply_many
from energy.db.analyze import GrowthWatch
from energy.domain.exceptions import EnergyError, InvalidRequest, Unavailable
from energy.domain.requests import ConsumeRequest, CreditRequest, ReverseRequest
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
# A line's "kind" -> how it is read; a line without one is a consume.
KINDS = {"consume": ConsumeRequest.from_json, "credit": CreditRequest.from_json,
         "reverse": lambda data: ReverseRequest.from_text(data.get("idempotency_key"))}
# Requests per consume_many call: large enough to amortise round trips, small enough that
# an interruption loses little work and one slow chunk does not stall progress reports.
CHUNK_SIZE = 500
# Seconds one outage may last before the replay stops and asks to be run again: longer than
# a server restart or a failover, short enough that a dead server is reported soon.
RETRY_FOR_S = 30.0
# Backoff between attempts at an unavailable chunk: doubling from the first delay up to the
# cap, each delay drawn between half and all of it, so that many replays do not retry in step.
FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0
# The longest line a replay reads, newline excluded. The longest request is about 3 KiB (a
# 255-character key written as \u escapes of surrogate pairs, every number at its largest):
# 64 KiB leaves room for any spacing, and a longer line is refused without being held in memory.
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class OverlongLine:
    """A line longer than ``limit``, skipped unread; ``len()`` is its size, so byte counts add up."""

    size: int
    limit: int

    def __len__(self) -> int:
        return self.size


def read_lines(stream: BinaryIO, *, limit: int = MAX_LINE_BYTES) -> Iterator[bytes | OverlongLine]:
    """The lines of a binary stream, each holding at most ``limit`` bytes besides its newline.

    A longer line comes as an ``OverlongLine``: it is read through in pieces of ``limit``
    bytes and dropped, so memory never holds more than one piece whatever the line's length.
    """
    while line := stream.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        size = len(line)
        while (piece := stream.readline(limit)) and not piece.endswith(b"\n"):
            size += len(piece)
        yield OverlongLine(size + len(piece), limit)


@dataclass(frozen=True)
class LineFailure:
    """A line that did not end applied or replayed."""

    line: int
    outcome: str
    detail: str


@dataclass(frozen=True)
class Waiting:
    """The database is unavailable; the chunk is tried again after ``delay`` seconds."""

    reason: str
    delay: float
    seconds_left: float
    first: bool  # the first wait of this outage


@dataclass
class ReplaySummary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    seconds: float = 0.0
    # The database stayed unavailable past the retry budget: the lines from then on were not
    # sent, and are counted as unavailable.
    stopped: bool = False

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


def replay_lines(
    lines: Iterable[bytes | str | OverlongLine],
    *,
    chunk_size: int = CHUNK_SIZE,
    on_progress: Callable[[ReplaySummary], None] | None = None,
    on_failure: Callable[[LineFailure], None] | None = None,
    client_id: int = OPERATOR_CLIENT_ID,
    retry_for: float = RETRY_FOR_S,
    on_waiting: Callable[[Waiting], None] | None = None,
) -> ReplaySummary:
    """Apply every request in ``lines`` in ``client_id``'s key space (default: the operator's).

    ``lines`` holds JSON objects, one per line (from ``read_lines``, which stands for a line
    too long to read with an ``OverlongLine``); blank lines are skipped. An unavailable
    database is waited for up to ``retry_for`` seconds per outage (0: not at all).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if retry_for < 0:
        raise ValueError("retry_for must not be negative")
    summary = ReplaySummary()
    started = time.perf_counter()
    sender = _Sender(summary, on_failure, client_id, retry_for, on_waiting)
    pending: list[tuple[int, Request]] = []
    growth = GrowthWatch(minimum=chunk_size)
    try:
        for number, raw in enumerate(lines, start=1):
            if isinstance(raw, OverlongLine):
                too_long = f"is {raw.size} bytes long; a line may hold at most {raw.limit}"
                _count(summary, number, InvalidRequest({"body": too_long}), on_failure)
                continue
            if not raw.strip():
                continue
            try:
                request = _parse(raw)
            except InvalidRequest as exc:
                _count(summary, number, exc, on_failure)
                continue
            if summary.stopped:
                _count(summary, number, sender.gave_up, on_failure)
                continue
            pending.append((number, request))
            if len(pending) >= chunk_size:
                _send(sender, pending, summary, growth)
                pending = []
                _report(summary, started, on_progress)
        if pending:
            _send(sender, pending, summary, growth)
        _report(summary, started, on_progress)
    except KeyboardInterrupt:
        summary.seconds = time.perf_counter() - started
        raise ReplayInterrupted(summary) from None
    return summary


Request = ConsumeRequest | CreditRequest | ReverseRequest


def _parse(raw: bytes | str) -> Request:
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest({"body": f"is not valid JSON ({_first_line(exc)})"}) from None
    kind = data.get("kind", "consume") if isinstance(data, dict) else "consume"
    read = KINDS.get(kind) if isinstance(kind, str) else None
    if read is None:
        raise InvalidRequest({"kind": f"must be one of {', '.join(KINDS)} (default consume)"})
    return read(data)


def _send(sender: "_Sender", pending, summary: ReplaySummary, growth: GrowthWatch) -> None:
    applied_before = summary.counts["applied"]
    sender.send(pending)
    growth.recorded(summary.counts["applied"] - applied_before)


class _Sender:
    """Sends chunks through ``apply_many``, waiting out an unavailable database within the budget."""

    def __init__(self, summary: ReplaySummary, on_failure, client_id: int, retry_for: float, on_waiting):
        self.summary, self.on_failure, self.client_id = summary, on_failure, client_id
        self.retry_for, self.on_waiting = retry_for, on_waiting
        self.gave_up: Unavailable | None = None
        self._random = random.Random()

    def send(self, pending: list[tuple[int, Request]]) -> None:
        outage_started = None
        attempt = 0
        while pending:
            unavailable = self._send_once(pending)
            if not unavailable:
                return
            now = time.monotonic()
            outage_started = outage_started or now
            seconds_left = self.retry_for - (now - outage_started)
            error = unavailable[0][2]
            if seconds_left <= 0:
                self._stop(unavailable, error)
                return
            delay = min(seconds_left, self._delay(attempt))
            if self.on_waiting is not None:
                self.on_waiting(Waiting(error.reason, delay, seconds_left, first=attempt == 0))
            time.sleep(delay)  # a Ctrl-C here ends the replay like anywhere else
            attempt += 1
            pending = [(number, request) for number, request, _ in unavailable]

    def _send_once(self, pending) -> list[tuple[int, Request, Unavailable]]:
        """Count every outcome but unavailable ones, which are returned to be tried again."""
        outcomes = apply_many([request for _, request in pending], client_id=self.client_id)
        if len(outcomes) != len(pending):
            raise RuntimeError(f"apply_many answered {len(outcomes)} outcomes for {len(pending)} requests")
        unavailable = []
        for (number, request), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, Unavailable):
                unavailable.append((number, request, outcome))
            elif isinstance(outcome, EnergyError):
                _count(self.summary, number, outcome, self.on_failure)
            else:
                self.summary.counts[outcome.status] += 1
        return unavailable

    def _stop(self, unavailable, error: Unavailable) -> None:
        self.summary.stopped = True
        self.gave_up = error
        for number, _, outcome in unavailable:
            _count(self.summary, number, outcome, self.on_failure)

    def _delay(self, attempt: int) -> float:
        ceiling = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** min(attempt, 16))
        return self._random.uniform(ceiling / 2, ceiling)


def _count(summary: ReplaySummary, number: int, exc: EnergyError, on_failure) -> None:
    # Outcomes only a reverse line ends in (key_not_found, invalid_state) are counted once one
    # does: the summary of a file without them keeps exactly the keys of OUTCOMES.
    summary.counts[exc.outcome] = summary.counts.get(exc.outcome, 0) + 1
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
