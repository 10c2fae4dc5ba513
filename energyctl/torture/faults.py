"""Injects one fault at a time, in a fixed rotation of kinds at a fixed interval, until the load phase ends.

A fault counts only once it reached a client: a terminated backend, a client that waited for
a held lock. The phase is stretched, up to a bound, until every kind was injected at least
once: a run that never crashed the server says nothing about crashes.
"""

from __future__ import annotations

import time
from collections import Counter

from energyctl.torture.cluster import TortureDatabase
from energyctl.torture.config import TortureConfig
from energyctl.torture.fleet import Fleet

# How far past the planned end the phase may run to get every kind of fault in.
OVERTIME_S = 30.0


class FaultInjector:
    def __init__(self, database: TortureDatabase, fleet: Fleet, config: TortureConfig):
        self.database, self.fleet, self.config = database, fleet, config
        self.kills = 0
        self.injected: Counter[str] = Counter()
        self.failed: list[str] = []
        kinds = ["client_killed", "backend_terminated", "lock_held"]
        if database.can_crash:
            kinds.append("server_crashed")
        self.kinds = kinds

    def run_until(self, deadline: float) -> None:
        rotation: list[str] = []
        while True:
            time.sleep(self.config.fault_interval)
            now = time.monotonic()
            if now >= deadline and (self._all_injected() or now >= deadline + OVERTIME_S):
                return
            if not rotation:
                rotation = list(self.kinds)
            kind = rotation.pop(0)
            try:
                done = getattr(self, f"_{kind}")()
            except Exception as exc:  # noqa: BLE001 - reported below, never silently dropped
                self.failed.append(f"{kind}: {type(exc).__name__}: {exc}")
                self.database.ensure_up()
                continue
            self.injected[kind] += done

    def _all_injected(self) -> bool:
        return all(self.injected[kind] for kind in self.kinds)

    def _client_killed(self) -> int:
        # Slot after slot, so every client gets killed in turn.
        self.fleet.kill_and_restart(self.kills % self.fleet.slots())
        self.kills += 1
        return 1

    def _backend_terminated(self) -> int:
        return self.database.terminate_backends()

    def _lock_held(self) -> int:
        waited = self.database.hold_hot_locks(self.config.hot_accounts, self.config.lock_hold_seconds)
        return 1 if waited else 0

    def _server_crashed(self) -> int:
        self.database.crash_and_restart(self.config.server_downtime)
        return 1
