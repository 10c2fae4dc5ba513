"""Drives demo sessions through a fixed order of steps, the way PostgreSQL's isolation tester does.

A step lets one session run until it pauses, finishes, or waits for a lock. A session counts
as waiting when ``pg_blocking_pids()`` names the backend holding what it asked for; the
next step then goes to another session, and a later step for the waiting one only waits
for it to get going again. Each session reports what it did as it does it, so the timeline
is in the order the database saw it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.db import connection

from energy.race.errors import DemoFailed
from energy.race.pool import Worker
from energy.race.report import Step

# Far longer than any step takes (a few ms); reaching it means a session hangs.
STEP_TIMEOUT_S = 15.0
POLL_S = 0.003

NEW, RUNNING, PAUSED, BLOCKED, DONE, KILLED = "new", "running", "paused", "blocked", "done", "killed"


@dataclass
class Session:
    name: str
    worker: Worker
    program: str
    kwargs: dict
    state: str = NEW
    result: object = None
    blocked_by: list[str] = field(default_factory=list)


class Stage:
    def __init__(self):
        self.sessions: dict[str, Session] = {}
        self.timeline: list[Step] = []

    def add(self, name: str, worker: Worker, program: str, **kwargs) -> None:
        self.sessions[name] = Session(name, worker, program, kwargs)

    def note(self, text: str) -> None:
        self.timeline.append(Step("", text))

    def play(self, order: tuple[str, ...]) -> None:
        """Take the steps in ``order``: a session name, or "kill <name>" for a crash (SIGKILL)."""
        for entry in order:
            if entry.startswith("kill "):
                self.kill(entry.removeprefix("kill "))
            else:
                self.step(entry)
        for session in self.sessions.values():
            while session.state not in (DONE, KILLED):
                self.step(session.name)

    def step(self, name: str) -> None:
        session = self.sessions[name]
        if session.state == NEW:
            session.worker.send("run", session.program, session.kwargs)
        elif session.state == PAUSED:
            session.worker.send("go")
        elif session.state != BLOCKED:
            raise DemoFailed(f"{name} has no step left (it is {session.state})")
        watch_for_locks = session.state != BLOCKED
        session.state = RUNNING
        self._advance(session, watch_for_locks)

    def kill(self, name: str) -> None:
        session = self.sessions[name]
        session.worker.kill()
        session.state = KILLED
        self.timeline.append(Step(name, "crashes here (the demo sends it SIGKILL)"))

    def _advance(self, session: Session, watch_for_locks: bool) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            if session.worker.poll(POLL_S):
                if self._handle(session, session.worker.receive(deadline)):
                    return
            elif watch_for_locks and (holders := self._holders(session)):
                while session.worker.poll(0):  # what it did before it had to wait
                    self._handle(session, session.worker.receive(deadline))
                session.state, session.blocked_by = BLOCKED, holders
                self.timeline.append(Step(session.name, f"waits for the lock {' and '.join(holders)} holds"))
                return
        raise DemoFailed(f"{session.name} neither finished nor waited for a lock within {STEP_TIMEOUT_S:.0f} s")

    def _handle(self, session: Session, message: tuple) -> bool:
        """Record one message of ``session``; True when its step is over."""
        kind = message[0]
        if kind == "event":
            self.timeline.append(Step(session.name, message[1]))
            return False
        if kind == "pause":
            session.state = PAUSED
        elif kind == "done":
            session.state, session.result = DONE, message[1]
        else:
            raise DemoFailed(f"{session.name} ({session.program}) failed: {message[1]}")
        return True

    def _holders(self, session: Session) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_blocking_pids(%s)", [session.worker.backend_pid])
            pids = cursor.fetchone()[0]
        names = {s.worker.backend_pid: s.name for s in self.sessions.values()}
        return [names.get(pid, f"backend {pid}") for pid in pids]
