"""Turns the environment into Django's DATABASES entry.

``DATABASE_URL`` (``postgresql://…`` or ``sqlite:///path``) names a database; unset, the
embedded PostgreSQL is used. Either way waits are bounded, so a command never hangs on a
dead server or a held lock: it fails with ``unavailable`` and can be retried.
"""

from __future__ import annotations

import os

# Seconds to wait for a TCP/socket connection before calling the database unreachable.
CONNECT_TIMEOUT_S = int(os.environ.get("ENERGYCTL_CONNECT_TIMEOUT", "5"))
# How long a consume queues behind another holder of the same account's row lock. Far
# longer than any healthy transaction (a few ms); reaching it means something is stuck.
LOCK_TIMEOUT_MS = int(os.environ.get("ENERGYCTL_LOCK_TIMEOUT_MS", "5000"))
# Upper bound for any single statement, so a runaway query cannot hold locks forever.
STATEMENT_TIMEOUT_MS = int(os.environ.get("ENERGYCTL_STATEMENT_TIMEOUT_MS", "30000"))
# Executions of one statement after which psycopg prepares it on the server. Django's own
# queries bind client-side and never prepare; the consume path asks for it explicitly, so its
# statements are parsed and planned once per connection instead of inside every row lock.
# "off" for poolers that cannot hold prepared statements (PgBouncer before 1.21).
PREPARE_THRESHOLD = os.environ.get("ENERGYCTL_PREPARE_THRESHOLD", "5")


def database_settings(url: str | None) -> dict:
    if not url:
        config = {
            "ENGINE": "energy.db.embedded",
            "NAME": "energyctl",
            "USER": "postgres",
            "OPTIONS": {},
        }
    else:
        import dj_database_url

        config = dj_database_url.parse(url)
        config.setdefault("OPTIONS", {})
    if config["ENGINE"].startswith("django.db.backends.postgresql") or config["ENGINE"] == "energy.db.embedded":
        _bound_postgres_waits(config["OPTIONS"])
    return config


def _bound_postgres_waits(options: dict) -> None:
    options.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    if PREPARE_THRESHOLD != "off":
        options.setdefault("prepare_threshold", int(PREPARE_THRESHOLD))
    bounds = f"-c lock_timeout={LOCK_TIMEOUT_MS} -c statement_timeout={STATEMENT_TIMEOUT_MS}"
    options["options"] = f"{options['options']} {bounds}" if options.get("options") else bounds
