"""Knobs of a fault-injection run."""

from __future__ import annotations

from dataclasses import dataclass

FAULT_KINDS = ("client_killed", "backend_terminated", "server_crashed", "lock_held")


@dataclass(frozen=True)
class TortureConfig:
    seconds: float = 20.0
    clients: int = 6
    accounts: int = 200
    # The first few accounts take a large share of the traffic, so their row locks are
    # contended and they run dry, which exercises insufficient_energy under retries.
    hot_accounts: int = 3
    hot_share: float = 0.4
    # A small share of requests names an account that does not exist.
    missing_share: float = 0.02
    # A small share re-sends a key this client already had applied: it must be replayed.
    duplicate_share: float = 0.05
    # Shares of new requests that credit an account, and that reverse one of the client's
    # own applied consumptions; the rest consume. Credits also keep the hot accounts going.
    credit_share: float = 0.1
    reverse_share: float = 0.08
    # Shares of new requests that hold energy, and that capture or void one of the client's
    # own open holds. Some holds live a second or two (short_hold_share), so that holds
    # expire during the run, some of them while a capture or void of them is on its way.
    hold_share: float = 0.12
    resolve_share: float = 0.12
    short_hold_share: float = 0.3
    # Now and then a client runs `holds expire`, as cron would, beside everyone's writes.
    expire_share: float = 0.01
    # Some applied answers are thrown away by the client, as if the response had been lost on
    # the network after the commit; the client then retries the same key. Counted, not drawn:
    # each client process drops its first applied answer and every this-many-th after it.
    drop_answer_every: int = 50
    start_energy: int = 1_000
    max_amount: int = 40
    # Short on purpose: the lock-holding fault must push waiting consumes past it.
    lock_timeout_ms: int = 200
    # How long the hot accounts' row locks are held once a client waits for them.
    lock_hold_seconds: float = 1.0
    # Pause between two faults; faults run one at a time, in a fixed rotation of kinds.
    fault_interval: float = 1.0
    server_downtime: float = 0.5
    # After the load phase, how long a client keeps retrying the key it is working on.
    drain_seconds: float = 15.0
    seed: int | None = None
    # When set, the run uses a dedicated new database on this server instead of a
    # temporary cluster of its own; the server itself is then never crashed.
    database_url: str | None = None
