"""A real ``energyctl serve`` on a free port, for tests that need real HTTP and its logs."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support import ENERGYCTL, free_port

START_TIMEOUT_S = 60
__all__ = ["Server", "consume", "free_port", "http_request", "post_at_barrier"]


class Server:
    """``energyctl serve`` as a child process; stdout and stderr (access and app logs) go to ``log``."""

    def __init__(self, database_url: str, log: Path, *, workers: int = 2, ready_status: int = 200,
                 args: tuple[str, ...] = (), **env: str):
        self.port, self.log = free_port(), log
        # pytest-django's DJANGO_SETTINGS_MODULE names the checkout's settings, which a served process has not.
        inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        environment = {**inherited, "DATABASE_URL": database_url, **env}
        self._log_file = open(log, "wb")
        self.process = subprocess.Popen(
            [str(ENERGYCTL), "serve", "--port", str(self.port), "--workers", str(workers), *args],
            env=environment, stdout=self._log_file, stderr=subprocess.STDOUT)
        self._wait_until_answering(ready_status)

    def _wait_until_answering(self, ready_status: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if self.request("GET", "/healthz")[0] == ready_status:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"serve did not come up:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.2)

    def request(self, method: str, path: str, body=None, headers: dict | list | None = None):
        return http_request(self.port, method, path, body, headers)

    def consume(self, token: str | None, body: dict, **headers):
        return consume(self.port, token, body, **headers)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log_file.close()


def http_request(port: int, method: str, path: str, body=None, headers: dict | list | None = None):
    """One request on a fresh connection: (status, headers, parsed JSON body or raw bytes).

    ``headers`` may be a list of (name, value) pairs, values str or raw bytes, to send
    what a browser or library would refuse to (repeated headers, non-ASCII bytes).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else (body or b"")
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if raw:
            pairs += [("Content-Type", "application/json")]
        for name, value in [*pairs, ("Content-Length", str(len(raw)))]:
            connection.putheader(name, value)
        connection.endheaders(raw)
        response = connection.getresponse()
        content = response.read()
        try:
            parsed = json.loads(content)
        except ValueError:
            parsed = content
        # Header names are case-insensitive (waitress sends "Www-Authenticate"): keep the message.
        return response.status, response.headers, parsed
    finally:
        connection.close()


def consume(port: int, token: str | None, body: dict, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http_request(port, "POST", "/api/energy/consume/", body, headers)


def post_at_barrier(port, token, barrier, results):
    """One client process: wait for every sibling, send the shared key, report the answer and when."""
    barrier.wait(timeout=60)
    started = time.monotonic()
    status, _, body = consume(port, token, {"account_id": 1, "amount": 10, "idempotency_key": "storm"})
    results.put({"token": token, "status": status, "body": body, "started": started, "ended": time.monotonic()})
