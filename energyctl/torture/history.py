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
# Kinds of request a client sends. A reverse is sent with the key of the consumption it gives
# back, so its history is kept apart from that consumption's (``History.reversals``).
CONSUME, CREDIT, REVERSE = "consume", "credit", "reverse"


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


def unfinished_request(events: list[dict]) -> tuple[str, int | None, int | None, str] | None:
    """The request (kind, account, amount, key) this client sent last if it never got a final answer."""
    for event in reversed(events):
        if event["ev"] == ANSWER and event["outcome"] in FINAL_OUTCOMES:
            return None
        if event["ev"] == SEND:
            return event.get("kind", CONSUME), event["account"], event["amount"], event["key"]
    return None


@dataclass
class KeyHistory:
    key: str
    # None for a reverse: it names only the consumption's key.
    account: int | None
    amount: int | None
    sends: int = 0
    answers: list[dict] = field(default_factory=list)
    kind: str = CONSUME

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


def load_history(paths: list[Path]) -> History:
    keys: dict[str, KeyHistory] = {}
    reversals: dict[str, KeyHistory] = {}
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
                known = (reversals if kind == REVERSE else keys).setdefault(
                    event["key"], KeyHistory(event["key"], event["account"], event["amount"], kind=kind))
                if (known.kind, known.account, known.amount) != (kind, event["account"], event["amount"]):
                    conflicting.append(event["key"])
                known.sends += 1
            elif event["ev"] == ANSWER:
                in_flight = False
                (reversals if event.get("kind") == REVERSE else keys)[event["key"]].answers.append(event)
            elif event["ev"] == CRASH:
                crashes.append(event["error"])
    return History(keys, requests, crashes, conflicting, kills_in_flight, reversals)
