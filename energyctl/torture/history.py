"""Per-client append-only logs of what was sent and what was answered.

Each event is one JSON line written with a single ``write(2)`` on an ``O_APPEND`` file,
so a client killed at any moment loses nothing it had already been answered.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

SEND = "send"
ANSWER = "answer"
READY = "ready"
CRASH = "crash"
# An applied answer the client pretends never arrived; it retries the key.
ANSWER_DROPPED = "answer_dropped"
# Outcomes after which a client stops retrying a key.
FINAL_OUTCOMES = ("applied", "replayed", "insufficient_energy", "account_not_found", "idempotency_key_mismatch",
                  "invalid_request", "key_not_found", "invalid_state")
# Kinds of request a client sends. A reverse is sent with the key of the consumption (or the
# captured hold) it gives back, a capture or a void with its hold's key, so their histories are
# kept apart from that key's own (``History.reversals``, ``History.resolutions``).
CONSUME, CREDIT, REVERSE, HOLD, CAPTURE, VOID = "consume", "credit", "reverse", "hold", "capture", "void"
RESOLVE = (CAPTURE, VOID)
# A client's call of ``holds expire``: not a keyed request, logged with what it released.
EXPIRE = "expire"


class EventLog:
    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, event: str, **fields) -> None:
        os.write(self._fd, (json.dumps({"ev": event, **fields}, ensure_ascii=False) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


def read_events(path: Path) -> list[dict]:
    """Every complete event of one log; a torn last line (never answered) is skipped."""
    events = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def unfinished_request(events: list[dict]) -> tuple[str, int | None, int | None, str, int | None] | None:
    """The request (kind, account, amount, key, expires_in) this client sent last if it never got a final answer."""
    for event in reversed(events):
        if event["ev"] == ANSWER and event["outcome"] in FINAL_OUTCOMES:
            return None
        if event["ev"] == SEND:
            return (event.get("kind", CONSUME), event["account"], event["amount"], event["key"],
                    event.get("expires_in"))
    return None


@dataclass
class KeyHistory:
    key: str
    # None for a reverse or a void: each names only a key; a capture's amount is None for "all".
    account: int | None
    amount: int | None
    sends: int = 0
    answers: list[dict] = field(default_factory=list)
    kind: str = CONSUME
    # A hold's lifetime in seconds; None for every other kind.
    expires_in: int | None = None

    @property
    def final(self) -> list[dict]:
        return [a for a in self.answers if a["outcome"] in FINAL_OUTCOMES]


@dataclass
class History:
    keys: dict[str, KeyHistory]
    requests: int
    crashes: list[str]
    conflicting_sends: list[str]
    kills_in_flight: int
    # Reverses sent, by the key of the consumption each gives back.
    reversals: dict[str, KeyHistory] = field(default_factory=dict)
    # Captures and voids sent, by their hold's key (a client resolves each of its holds one way).
    resolutions: dict[str, KeyHistory] = field(default_factory=dict)
    # What each ``holds expire`` a client ran released: {"released", "energy", "accounts"}.
    expiries: list[dict] = field(default_factory=list)


def load_history(paths: list[Path]) -> History:
    keys: dict[str, KeyHistory] = {}
    reversals: dict[str, KeyHistory] = {}
    resolutions: dict[str, KeyHistory] = {}
    expiries: list[dict] = []

    def kept_for(kind: str) -> dict[str, KeyHistory]:
        return reversals if kind == REVERSE else resolutions if kind in RESOLVE else keys
    requests = kills_in_flight = 0
    crashes: list[str] = []
    conflicting: list[str] = []
    for path in paths:
        events = read_events(path)
        in_flight = False
        for event in events:
            if event["ev"] == READY:
                # A new generation of this client: the previous one died mid-request.
                kills_in_flight += in_flight
                in_flight = False
            elif event["ev"] == SEND:
                requests += 1
                in_flight = True
                kind = event.get("kind", CONSUME)
                known = kept_for(kind).setdefault(event["key"], KeyHistory(
                    event["key"], event["account"], event["amount"], kind=kind, expires_in=event.get("expires_in")))
                if (known.kind, known.account, known.amount, known.expires_in) != (
                        kind, event["account"], event["amount"], event.get("expires_in")):
                    conflicting.append(event["key"])
                known.sends += 1
            elif event["ev"] == ANSWER:
                in_flight = False
                kept_for(event.get("kind", CONSUME))[event["key"]].answers.append(event)
            elif event["ev"] == CRASH:
                crashes.append(event["error"])
            elif event["ev"] == EXPIRE and "released" in event:
                expiries.append({name: event[name] for name in ("released", "energy", "accounts")})
    return History(keys, requests, crashes, conflicting, kills_in_flight, reversals, resolutions, expiries)
