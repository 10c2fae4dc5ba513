"""The client's own deadline for a database call: past it, the connection is shut down from here.

Server-side timeouts end a statement only if the server runs and its answer arrives; TCP
keepalives and ``tcp_user_timeout`` end a connection only if the peer stops acknowledging
packets. A peer that keeps the connection alive but never answers (a frozen backend, a hung
proxy or pooler) passes both. So one watchdog thread per process shuts down the socket of a
call that outlived its deadline: the waiting call sees the connection end at once and the
guard turns that into ``unavailable``.

Arming and disarming are a dict insert and pop under a lock; the watchdog wakes a few times
a second only while the process lives, so the happy path pays a few microseconds.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time

import psycopg

# How often the watchdog looks at the armed calls: a deadline fires at most this late.
TICK_S = 0.1


class Watchdog:
    def __init__(self):
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, object]] = {}
        self._fired: set[int] = set()
        self._tokens = itertools.count()
        self._pid: int | None = None
        # The watchdog thread may hold the lock at the moment a server forks its workers; a
        # child must not inherit it held, with no thread left to release it.
        os.register_at_fork(after_in_child=self._forget_parent)

    def _forget_parent(self) -> None:
        self._lock = threading.Lock()
        self._pid = None

    def arm(self, wrapper, seconds: float) -> int:
        """Watch Django connection ``wrapper`` for ``seconds``; returns the token for ``disarm``."""
        self._ensure_thread()
        token = next(self._tokens)
        with self._lock:
            self._armed[token] = (time.monotonic() + seconds, wrapper)
        return token

    def disarm(self, token: int | None) -> bool:
        """Stop watching; True if the deadline had passed and the connection was shut down."""
        if token is None:
            return False
        with self._lock:
            self._armed.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _ensure_thread(self) -> None:
        # A forked child inherits the object but not the thread: start one of its own.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._armed.clear()
            self._fired.clear()
            self._pid = os.getpid()
            threading.Thread(target=self._watch, name="energyctl-db-deadline", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(TICK_S)
            now = time.monotonic()
            with self._lock:
                for token, (deadline, wrapper) in list(self._armed.items()):
                    # A connection still being opened is bounded by connect_timeout; it is
                    # shut down at the first tick after it opens, if the call is still running.
                    if deadline <= now and _shut_down(wrapper):
                        del self._armed[token]
                        self._fired.add(token)


def _shut_down(wrapper) -> bool:
    """End the connection under ``wrapper`` without touching its Python state; False if none is open yet."""
    raw = getattr(wrapper, "connection", None)
    if raw is None:
        return False
    try:
        fd = raw.pgconn.socket
    except psycopg.OperationalError:  # already closed: nothing left to end
        return True
    # shutdown() acts on the socket itself, so a duplicate descriptor ends the connection
    # the waiting call uses; closing only the duplicate leaves psycopg's descriptor intact.
    with socket.socket(fileno=os.dup(fd)) as sock:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return True


watchdog = Watchdog()
