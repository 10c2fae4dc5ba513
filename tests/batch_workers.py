"""A worker process that sends its requests through consume_many, for the multi-process batch tests."""

from __future__ import annotations

from tests.workers import setup_django


def consume_many_worker(db_name, barrier, requests, chunk_size, results) -> None:
    """Wait for every sibling, send ``requests`` in chunks of ``chunk_size``; put one outcome per request."""
    setup_django(db_name)
    from django.db import connection

    from energy.application import batch
    from energy.domain.requests import ConsumeRequest

    batch.CHUNK_SIZE = chunk_size
    connection.ensure_connection()
    barrier.wait(timeout=60)
    outcomes = batch.consume_many([ConsumeRequest(*r) for r in requests])
    results.put([_as_dict(o, r[2]) for o, r in zip(outcomes, requests)])
    connection.close()


def _as_dict(outcome, key) -> dict:
    if hasattr(outcome, "to_dict"):
        return outcome.to_dict()
    return {"status": "error", "error": outcome.outcome, "idempotency_key": key}


def run_mixed(jobs: list[tuple]) -> list[dict]:
    """Run each job in its own process, all released together: ("batch", requests, chunk_size)
    sends through consume_many, ("single", requests) one consume at a time. Every outcome."""
    from django.db import connections

    from tests.workers import consume_worker, spawn_context, test_database_name

    db_name = test_database_name()
    connections.close_all()
    ctx = spawn_context()
    barrier = ctx.Barrier(len(jobs))
    results = ctx.Queue()
    procs = []
    for kind, requests, *chunk in jobs:
        if kind == "batch":
            procs.append(ctx.Process(target=consume_many_worker, args=(db_name, barrier, requests, chunk[0], results)))
        else:
            procs.append(ctx.Process(target=consume_worker, args=(db_name, barrier, requests, results)))
    for proc in procs:
        proc.start()
    outcomes = []
    for _ in procs:
        outcomes.extend(results.get(timeout=120))
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0, f"worker {proc.pid} exited with {proc.exitcode}"
    return outcomes
