"""The coordinator's handles on its demo processes, started once and reused by every scenario."""

from __future__ import annotations

import multiprocessing
import os
import time

from energy.race.errors import DemoFailed
from energy.race.worker import serve

START_TIMEOUT_S = 60.0
# A process that imports Django afresh costs about half a second of CPU. A fork server imports
# these once and forks each demo process from that clean, single-threaded state; the
# project's settings are not among them, so each process still reads its own environment.
PRELOAD = [
    "django.db.backends.postgresql.base",
    "django.db.models",
    "django.http",
    "django.urls",
    "django.utils.log",
    "rest_framework",
    "psycopg",
    "dj_database_url",
    "pythonjsonlogger.json",
]


def process_context():
    """A fork server where the platform has one, else plain spawn (slower, same behaviour)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class Worker:
    """One spawned demo process and the coordinator's end of its pipe."""

    def __init__(self, ctx, db_settings: dict):
        self._conn, child_end = ctx.Pipe()
        # The environment as it is now: a fork server was started with the one of its day.
        self.process = ctx.Process(target=serve, args=(child_end, db_settings, dict(os.environ)), daemon=True)
        self.process.start()
        child_end.close()
        self.backend_pid: int | None = None

    def wait_ready(self, deadline: float) -> None:
        message = self.receive(deadline)
        if message[0] != "ready":
            raise DemoFailed(f"demo process {self.process.pid} did not start: {message}")
        self.backend_pid = message[1]

    def send(self, *message) -> None:
        try:
            self._conn.send(message)
        except (BrokenPipeError, OSError) as exc:
            raise DemoFailed(f"demo process {self.process.pid} is gone ({exc})") from exc

    def poll(self, seconds: float) -> bool:
        return self._conn.poll(seconds)

    def receive(self, deadline: float) -> tuple:
        try:
            if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                raise DemoFailed(f"demo process {self.process.pid} did not answer in time")
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            raise DemoFailed(
                f"demo process {self.process.pid} died (exit code {self.process.exitcode}); see its stderr"
            ) from exc

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)

    def stop(self) -> None:
        if self.alive:
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        self._conn.close()


class Pool:
    """``size`` demo processes; one killed by a scenario is replaced when next asked for."""

    def __init__(self, size: int, db_settings: dict):
        self._ctx = process_context()
        self._db_settings = db_settings
        self._workers: list[Worker] = []
        try:
            self._workers = [Worker(self._ctx, db_settings) for _ in range(size)]
            deadline = time.monotonic() + START_TIMEOUT_S
            for worker in self._workers:
                worker.wait_ready(deadline)
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self._workers)

    def __getitem__(self, index: int) -> Worker:
        worker = self._workers[index]
        if not worker.alive:
            worker.stop()
            worker = Worker(self._ctx, self._db_settings)
            self._workers[index] = worker
            worker.wait_ready(time.monotonic() + START_TIMEOUT_S)
        return worker

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        deadline = time.monotonic() + 5
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.alive:
                worker.kill()
