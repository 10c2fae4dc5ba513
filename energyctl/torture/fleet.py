"""The client processes of a run: started, SIGKILLed and restarted by slot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from energyctl.torture.history import READY, read_events

# A Django start-up on a busy two-core machine can take a few seconds.
READY_TIMEOUT_S = 60


class Fleet:
    def __init__(self, url: str, workdir: Path, spec: dict, clients: int):
        self.workdir = workdir
        self.stop_file = workdir / "stop"
        self._env = {**os.environ, "DATABASE_URL": url, "ENERGYCTL_LOG_LEVEL": "WARNING",
                     "ENERGYCTL_LOCK_TIMEOUT_MS": str(spec["lock_timeout_ms"])}
        self._spec = {**spec, "stop_file": str(self.stop_file)}
        self._generations = [0] * clients
        self._procs: list[subprocess.Popen] = [self._start(slot) for slot in range(clients)]

    def log_paths(self) -> list[Path]:
        return [self._log(slot) for slot in range(len(self._procs))]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for slot, proc in enumerate(self._procs):
            while not any(e["ev"] == READY for e in read_events(self._log(slot))):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"client {slot} did not start; see {self._stderr(slot)}")
                time.sleep(0.05)

    def kill_and_restart(self, slot: int) -> None:
        """SIGKILL one client wherever it is, then start its next generation, which retries its open key."""
        self._procs[slot].kill()
        self._procs[slot].wait()
        self._generations[slot] += 1
        self._procs[slot] = self._start(slot)

    def slots(self) -> int:
        return len(self._procs)

    def finish(self, timeout: float) -> list[int]:
        """Tell clients to stop, wait for them; returns the exit codes (killed stragglers give -9)."""
        self.stop_file.touch()
        deadline = time.monotonic() + timeout
        codes = []
        for proc in self._procs:
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes

    def kill_all(self) -> None:
        """Leave no client behind, however the run ended."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _start(self, slot: int) -> subprocess.Popen:
        generation = self._generations[slot]
        spec = {**self._spec, "slot": slot, "generation": generation, "log": str(self._log(slot)),
                "seed": hash((self._spec["seed"], slot, generation)) & 0xFFFFFFFF}
        with open(self._stderr(slot), "ab") as stderr:
            return subprocess.Popen([sys.executable, "-m", "energyctl.torture.worker", "client", json.dumps(spec)],
                                    env=self._env, stdout=subprocess.DEVNULL, stderr=stderr)

    def _log(self, slot: int) -> Path:
        return self.workdir / f"client-{slot}.jsonl"

    def _stderr(self, slot: int) -> Path:
        return self.workdir / f"client-{slot}.stderr"
