"""The HTTP API under load: ``energyctl serve`` as shipped, a real process, driven by wrk.

wrk (Debian package ``wrk``) is used when it is on PATH; otherwise a built-in keep-alive
client in N processes stands in, and the engine's name says so. Every request carries the
headers of ``request_headers()``, the one place that decides them.

Next to it, where the checkout's benchmarks/ and gunicorn are present, the peer: the case
study's design (a DRF view, ``atomic()`` + ``select_for_update()`` + a UNIQUE key + ``F()``,
no authentication) served the conventional way, under gunicorn gthread with CONN_MAX_AGE=60.
It is started as a process from the checkout, never imported.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from energyctl.bench.database import Target

START_TIMEOUT_S = 60
WRK_SCRIPT = Path(__file__).with_name("wrk_consume.lua")
# wrk threads: one per core is what its authors advise.
WRK_THREADS = max(1, min(os.cpu_count() or 1, 4))
CONSUME_PATH = "/api/energy/consume/"
# Statuses that mean the request was answered as the contract says for this workload.
APPLIED, REPLAYED = 201, 200
# The peer's Django project, in the checkout (not installed), and how it is served: the
# conventional deployment of such a project on a 2-core machine.
PEER_PACKAGE = "benchmarks.http_peer.casestudy"
PEER_WORKERS, PEER_THREADS = 2, 4
PEER_ENGINE = f"case-study design, gunicorn gthread {PEER_WORKERS}x{PEER_THREADS}"


def request_headers(token: str | None) -> dict[str, str]:
    """The headers of every benchmark request, wrk's and the built-in client's alike."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def energyctl() -> str:
    return str(Path(sys.executable).with_name("energyctl"))


@dataclass(frozen=True)
class Served:
    """A running ``energyctl serve``: where it listens, and the CPU it has used so far."""

    port: int
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server and its worker processes (Linux /proc), or None elsewhere."""
        try:
            return sum(_own_cpu(pid) for pid in (self.pid, *_children(self.pid)))
        except OSError:
            return None


@contextmanager
def served(url: str, source: Path | None = None):
    """``energyctl serve`` with its defaults on a free port, its log in a temporary file.

    ``source``: another source tree of energyctl (a checkout of an earlier commit, say) to
    serve instead of the installed one, run with the same interpreter and libraries.
    """
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url}
    command = [energyctl(), "serve", "--port", str(port)]
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "energyctl", "serve", "--port", str(port)]
    with _running(command, env, port, "energyctl serve", cwd=source) as server:
        yield server


def checkout() -> Path:
    return Path(__file__).resolve().parents[2]


def peer_unavailable() -> str | None:
    """Why the case-study peer cannot run here, or None when it can."""
    if not (checkout() / "benchmarks" / "http_peer" / "casestudy" / "wsgi.py").is_file():
        return "the case-study peer runs from a checkout only (benchmarks/http_peer is not installed)"
    if importlib.util.find_spec("gunicorn") is None:
        return "the case-study peer needs gunicorn: pip install -e '.[bench]'"
    return None


@contextmanager
def peer_served(url: str):
    """The case-study peer under gunicorn on a free port, on the database at ``url``."""
    port = _free_port()
    command = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", str(PEER_WORKERS),
               "--threads", str(PEER_THREADS), "--bind", f"127.0.0.1:{port}", f"{PEER_PACKAGE}.wsgi:application"]
    with _running(command, _peer_env(url), port, "gunicorn (case-study peer)", cwd=checkout()) as server:
        yield server


def peer_tables(url: str, action: str, *, accounts: int = 0, energy: int) -> dict:
    """Reset the peer's tables to ``accounts`` accounts of ``energy``, or check them (``action``)."""
    done = subprocess.run([sys.executable, "-m", f"{PEER_PACKAGE}.tables", action, "--accounts", str(accounts),
                           "--energy", str(energy)], env=_peer_env(url), cwd=checkout(), capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"the case-study peer's tables ({action}) failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout) if done.stdout.strip() else {}


def _peer_env(url: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(checkout()), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PEER_DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": f"{PEER_PACKAGE}.settings",
            "PYTHONPATH": path}


@contextmanager
def _running(command: list[str], env: dict[str, str], port: int, name: str, cwd: Path | None = None):
    """A server process listening on ``port``, its log in a temporary file; SIGTERM at the end."""
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_until_listening(server, port, log, name)
            yield Served(port, server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def client_token(url: str, name: str) -> str | None:
    """A Bearer token from `energyctl clients add`, or None where the API has no clients."""
    env = {**os.environ, "DATABASE_URL": url}
    probe = subprocess.run([energyctl(), "clients", "--help"], env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        return None
    done = subprocess.run([energyctl(), "clients", "add", name, "--all-accounts", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"energyctl clients add failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads(done.stdout)["token"]


def engine_name() -> str:
    if shutil.which("wrk"):
        return "energyctl serve, wrk"
    return "energyctl serve, built-in client (wrk not on PATH)"


def measure(server: Served, *, accounts: int, connections: int, seconds: float, prefix: str,
            token: str | None) -> dict:
    """Drive the server for ``seconds``; the shape ``clients.run`` returns, statuses as outcomes.

    ``cpu_seconds`` is the server's CPU over the run, not the load generator's: the server is
    the database's client here, the side a request's cost is paid by (``load_cpu_seconds``
    keeps the load generator's).
    """
    headers = request_headers(token)
    before = server.cpu_seconds()
    if shutil.which("wrk"):
        measured = _wrk(server.port, accounts, connections, seconds, prefix, headers)
    else:
        measured = _builtin(server.port, accounts, connections, seconds, prefix, headers)
    after = server.cpu_seconds()
    measured["load_cpu_seconds"] = measured["cpu_seconds"]
    measured["cpu_seconds"] = after - before if before is not None and after is not None else None
    return measured


def _wrk(port, accounts, connections, seconds, prefix, headers) -> dict:
    env = {**os.environ, "BENCH_ACCOUNTS": str(accounts), "BENCH_PREFIX": prefix,
           "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items())}
    threads = min(WRK_THREADS, connections)
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
               "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}"]
    before = _children_cpu()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    cpu = _children_cpu() - before
    report = next((json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")), None)
    if done.returncode != 0 or report is None:
        return _failed(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    statuses = {int(k): v for k, v in report["statuses"].items()}
    errors = [f"{report['socket_errors']} socket errors"] if report["socket_errors"] else []
    # wrk reports quantiles, not every latency: pooled over slices they stand in as samples.
    return {"ops": report["requests"], "elapsed": report["duration_us"] / 1e6, "cpu_seconds": cpu,
            "latencies": sorted(q / 1e6 for q in report["quantiles_us"]), "outcomes": _outcomes(statuses),
            "errors": errors, "applied": statuses.get(APPLIED, 0)}


def _builtin(port, accounts, connections, seconds, prefix, headers) -> dict:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, accounts, seconds, f"{prefix}-{i}", i, headers, results))
             for i in range(connections)]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=seconds + START_TIMEOUT_S) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    statuses = sum((Counter(r["statuses"]) for r in reports), Counter())
    return {"ops": sum(statuses.values()), "elapsed": max(r["elapsed"] for r in reports),
            "cpu_seconds": sum(r["cpu"] for r in reports),
            "latencies": sorted(x for r in reports for x in r["latencies"]), "outcomes": _outcomes(statuses),
            "errors": [r["error"] for r in reports if r.get("error")], "applied": statuses.get(APPLIED, 0)}


def _client(port, accounts, seconds, prefix, seed, headers, results) -> None:
    """One keep-alive connection sending consumes back to back."""
    import random

    rng = random.Random(seed)
    statuses: Counter = Counter()
    latencies, error = [], None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    cpu, start = time.process_time(), time.perf_counter()
    n = 0
    try:
        while (sent := time.perf_counter()) < start + seconds:
            n += 1
            account = 1 if accounts == 1 else rng.randint(1, accounts)
            body = json.dumps({"account_id": account, "amount": 1, "idempotency_key": f"{prefix}-{n}"})
            connection.request("POST", CONSUME_PATH, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
            latencies.append(time.perf_counter() - sent)
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    results.put({"statuses": dict(statuses), "latencies": latencies, "elapsed": time.perf_counter() - start,
                 "cpu": time.process_time() - cpu, "error": error})


def _outcomes(statuses: dict[int, int]) -> dict[str, int]:
    names = {APPLIED: "applied", REPLAYED: "replayed"}
    return {names.get(status, f"http_{status}"): count for status, count in statuses.items()}


def _failed(message: str) -> dict:
    return {"ops": 0, "elapsed": 0.0, "cpu_seconds": 0.0, "latencies": [], "outcomes": {}, "errors": [message],
            "applied": 0}


def database_url(target: Target) -> str:
    from urllib.parse import quote

    server = target.server
    auth = quote(str(server.get("user", "")), safe="")
    if server.get("password"):
        auth += ":" + quote(str(server["password"]), safe="")
    host = quote(str(server.get("host", "")), safe="")
    port = f":{server['port']}" if server.get("port") else ""
    return f"postgresql://{auth}@{host}{port}/{quote(target.name, safe='')}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_listening(server: subprocess.Popen, port: int, log, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _listening(port):
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited {server.returncode}: {log.read().strip()[-500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start listening")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat's fields after the command's closing parenthesis: field 3 (state) onwards."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _own_cpu(pid: int) -> float:
    fields = _stat(pid)  # utime and stime are fields 14 and 15, in clock ticks
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The processes whose parent (field 4) is ``pid``: serve's workers with --workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(entry.name)[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile, or not ours to read
    return found


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
