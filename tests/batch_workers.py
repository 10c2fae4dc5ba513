"""A worker process that sends its requests through consume_many, for the multi-process batch tests."""

from __future__ import annotations

from tests.support import setup_django
from tests.workers import line_up


def consume_many_worker(db_name, barrier, requests, chunk_size, results) -> None:
    """Wait for every sibling, send ``requests`` in chunks of ``chunk_size``; put one outcome per request."""
    setup_django(db_name)
    from django.db import connection

    from energy.application import batch
    from energy.domain.requests import ConsumeRequest

    batch.CHUNK_SIZE = chunk_size
    line_up(connection)
    barrier.wait(timeout=60)
    outcomes = batch.consume_many([ConsumeRequest(*r) for r in requests])
    results.put([_as_dict(o, r[2]) for o, r in zip(outcomes, requests, strict=True)])
    connection.close()


def _as_dict(outcome, key) -> dict:
    if hasattr(outcome, "to_dict"):
        return outcome.to_dict()
    return {"status": "error", "error": outcome.outcome, "idempotency_key": key}


def run_mixed(jobs: list[tuple]) -> list[dict]:
    """Run each job in its own process, all released together: ("batch", requests, chunk_size)
    sends through consume_many, ("single", requests) one consume at a time. Every outcome."""
    from tests.workers import consume_worker, run_workers

    return run_workers([
        (consume_many_worker, (requests, chunk[0])) if kind == "batch" else (consume_worker, (requests,))
        for kind, requests, *chunk in jobs
    ])
