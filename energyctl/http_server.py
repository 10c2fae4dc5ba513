"""The HTTP server behind ``energyctl serve``: waitress, in one process or several sharing one socket.

waitress reads every request whole on its event loop before a thread runs it, so clients
that open connections and send nothing, or half a request, cost a socket each and no
thread: they cannot starve the threads that run the API. Connections idle (or stalled
mid-request) for ``IDLE_TIMEOUT_S`` are closed. Why waitress and these numbers: README,
Performance.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from functools import cache

from energy.http.log_lines import escaped, field

# Threads per process that run requests; each keeps its own database connection. Measured
# on 2 cores: 4 and 8 gave the same throughput, 4 keeps fewer server connections.
DEFAULT_THREADS = 4
# Processes sharing the port: one Python process runs one thread at a time, and on 2 cores
# two processes served 20-60% more requests than one (README, Performance). More were not
# measured on larger machines, so the default stops at two.
DEFAULT_PROCESSES = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
# Seconds a connection may stay silent (idle between requests, or stalled inside one)
# before it is closed: the header and body timeout.
IDLE_TIMEOUT_S = 20
# How often idle connections are looked for; a stalled one lives at most this much longer.
SWEEP_INTERVAL_S = 5
# Open connections one process holds before it stops accepting; poll() has no FD_SETSIZE cap.
CONNECTION_LIMIT = 1000
# Bodies above this are refused by the server itself; below it Django's 64 KiB limit answers
# with the contract's 413 document.
MAX_BODY_BYTES = 1024 * 1024
# A request's header block: an API call needs well under 1 KiB. Bounded so a thousand open
# connections cannot hold more than a few tens of MB of half-sent headers.
MAX_HEADER_BYTES = 32 * 1024
# Seconds between restarts of a worker process that keeps dying, so a broken set-up does
# not spin the CPU.
RESPAWN_DELAY_S = 1.0
# Seconds a worker whose supervisor is gone gets to finish its requests before it exits anyway.
ORPHAN_GRACE_S = 10.0

access_log = logging.getLogger("energy.access")


def server_options(threads: int) -> dict:
    return {
        "threads": threads,
        "channel_timeout": IDLE_TIMEOUT_S,
        "cleanup_interval": SWEEP_INTERVAL_S,
        "connection_limit": CONNECTION_LIMIT,
        "asyncore_use_poll": True,
        "max_request_body_size": MAX_BODY_BYTES,
        "max_request_header_size": MAX_HEADER_BYTES,
        "ident": "energyctl",
    }


# Connections a listening socket queues before its process accepts them.
BACKLOG = 1024


def listen(host: str, port: int) -> socket.socket:
    """The serving address, bound (and so checked) before any worker starts; it listens in ``run``.

    With several processes each worker listens on a socket of its own bound to the same address
    (SO_REUSEPORT), so the kernel spreads new connections over the workers. From one shared socket
    they were taken unevenly: a waitress process holding most of a client's keep-alive
    connections spins in its event loop, and the whole server answered a fifth of its rate.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _listener_beside(bound: socket.socket) -> socket.socket:
    """A listening socket of this worker's own at ``bound``'s address (which stays bound, never listening)."""
    sock = socket.socket(bound.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(bound.getsockname())
    sock.listen(BACKLOG)
    return sock


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only: 127.0.0.0/8, ::1, localhost."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_access_log(app):
    """One INFO record per request on ``energy.access``: address, method, path, protocol, status,
    time, user agent, and why a request was refused (or the error id it was answered with).

    Only these: no other header's value (a token sent as Basic credentials would be one) and no
    query string (where a caller may put anything). Each field is escaped, so what a caller
    sent never breaks the line (a path's %0d%0a arrives here decoded).
    """
    if not access_log.isEnabledFor(logging.INFO):
        return app
    from energy.http.errors import LOG_NOTE

    def logged(environ, start_response):
        started = time.perf_counter()
        status = []

        def start(code, headers, exc_info=None):
            status.append(code[:3])
            return start_response(code, headers, exc_info)

        try:
            return app(environ, start)
        finally:
            note = environ.get(LOG_NOTE)
            access_log.info('%s "%s %s %s" %s %.1fms "%s"%s', escaped(environ.get("REMOTE_ADDR", "-")),
                            field(environ.get("REQUEST_METHOD", "")), field(environ.get("PATH_INFO", "")),
                            field(environ.get("SERVER_PROTOCOL", "")), status[0] if status else "-",
                            (time.perf_counter() - started) * 1000, field(environ.get("HTTP_USER_AGENT", "-")),
                            f" {escaped(note)}" if note else "")

    return logged


@cache
def json_error_channel():
    """waitress's connection class, answering what waitress refuses itself (a body over
    MAX_BODY_BYTES, malformed HTTP) with the contract's JSON error instead of plain text.

    Built on first use: the command line imports this module without serving.
    """
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    from energy.domain.exceptions import error_document

    class JSONErrorTask(ErrorTask):
        def execute(self):
            error = self.request.error
            detail = "Request body is too large." if error.code == 413 else f"{error.reason}: {error.body}"
            outcome = "internal_error" if error.code >= 500 else "invalid_request"
            body = json.dumps(error_document(outcome, detail)).encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JSONErrorChannel(HTTPChannel):
        error_task_class = JSONErrorTask

    return JSONErrorChannel


def run(sock: socket.socket, *, processes: int, threads: int, access: bool) -> None:
    """Serve until SIGTERM or Ctrl-C: in this process, or in ``processes`` forked ones."""
    if processes == 1:
        sock.listen(BACKLOG)
        _serve(sock, threads, access)
        return
    # Imported once here, before any fork: workers start faster, and a broken installation
    # fails this once, with its error, instead of in every worker the supervisor restarts.
    import waitress  # noqa: F401

    import energy.wsgi  # noqa: F401

    _supervise(sock, processes, threads, access)


def _serve(sock: socket.socket, threads: int, access: bool) -> None:
    from django.conf import settings
    from waitress import create_server

    from energy.wsgi import application

    app = with_access_log(application) if access else application
    options = server_options(threads)
    if settings.TRUSTED_PROXY:
        # waitress then takes the scheme from the proxy's X-Forwarded-Proto (wsgi.url_scheme).
        options.update(trusted_proxy=settings.TRUSTED_PROXY, trusted_proxy_headers={"x-forwarded-proto"})
    server = create_server(app, sockets=[sock], **options)
    server.channel_class = json_error_channel()
    # SIGTERM (a service manager's stop) ends the loop like Ctrl-C does, closing the sockets.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _exit_on_signal(signum, _frame):
    raise SystemExit(0)


def _supervise(sock: socket.socket, processes: int, threads: int, access: bool) -> None:
    """Keep ``processes`` workers serving ``sock``'s address; restart one that dies; stop them on TERM/INT."""
    children: set[int] = set()
    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Never written to: a worker reads end-of-file from it once no supervisor holds the write
    # end, however the supervisor ended (SIGKILL included), and stops.
    lifeline = os.pipe()
    for _ in range(processes):
        children.add(_fork_worker(sock, threads, access, lifeline))
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            continue
        children.discard(pid)
        if not stopping:
            print(f"energyctl serve: worker {pid} exited; starting another", file=sys.stderr, flush=True)
            time.sleep(RESPAWN_DELAY_S)
            if not stopping:
                children.add(_fork_worker(sock, threads, access, lifeline))


def _fork_worker(sock: socket.socket, threads: int, access: bool, lifeline: tuple[int, int]) -> int:
    # A TERM that reached a new worker before it set its own handler would run the supervisor's
    # (inherited) one: the worker would then signal its siblings and keep serving, and the
    # supervisor would wait for it forever. So TERM and INT stay blocked across the fork until
    # each side has the handler it needs; one sent meanwhile is delivered then.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        return pid
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends TERM
        signal.signal(signal.SIGTERM, _exit_on_signal)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        _stop_with_supervisor(lifeline)
        bound, sock = sock, _listener_beside(sock)
        bound.close()
        _serve(sock, threads, access)
    except SystemExit:
        pass
    except BaseException as exc:  # noqa: BLE001 - a worker never returns into the supervisor's code
        print(f"energyctl serve: worker {os.getpid()} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        os._exit(code)


def _stop_with_supervisor(lifeline: tuple[int, int]) -> None:
    """In a worker: stop like on SIGTERM once the supervisor is gone, and exit anyway after a grace period."""
    read_end, write_end = lifeline
    os.close(write_end)

    def watch():
        while os.read(read_end, 1):
            pass
        print(f"energyctl serve: worker {os.getpid()}: the supervisor is gone; stopping", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="supervisor-lifeline", daemon=True).start()


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
