"""What authentication adds to one API request: the Bearer check, timed in the request path.

    python -m benchmarks.auth_cost [--requests 3000]

Runs in one process against a database of its own on the configured server (``<name>_auth_cost``,
made as ``energyctl bench`` makes its own): a client is added, then the same ``POST /api/energy/consume/`` goes
through Django's WSGI handler ``--requests`` times, and the time spent inside the API's
authentication class (hashing the token, reading the client) is measured around each call.
Prints CPU and wall microseconds per request for the whole request and for authentication.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.auth_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests to time (default 3000)")
    args = parser.parse_args(argv)
    from energy.setup import quiet_consume_log, setup_django

    setup_django()
    quiet_consume_log()
    from django.db import connection

    from energyctl.bench import database

    # A database of its own, so a concurrent `energyctl bench` (which recreates <name>_bench) is left alone.
    os.environ.setdefault("ENERGYCTL_BENCH_DATABASE", f"{connection.settings_dict['NAME']}_auth_cost")

    target = database.prepare()
    database.reset(target, 1_000)
    from energy.application.clients import add_client

    token = add_client(name="auth-cost", accounts=None).token
    figures = measure(token, args.requests)
    print(f"whole request: {figures['request_cpu_us']:.0f} us CPU, {figures['request_wall_us']:.0f} us wall; "
          f"authentication: {figures['auth_cpu_us']:.0f} us CPU, {figures['auth_wall_us']:.0f} us wall "
          f"({figures['auth_share']:.0%} of the request's wall time), over {args.requests} requests")
    return 0


def measure(token: str, requests: int) -> dict:
    from energy.http import auth
    from energy.wsgi import application

    spent = {"cpu": 0.0, "wall": 0.0}
    original = auth.BearerTokenAuthentication.authenticate

    def timed(self, request):
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return original(self, request)
        finally:
            spent["cpu"] += time.process_time() - cpu
            spent["wall"] += time.perf_counter() - wall

    def call(n: int) -> None:
        body = json.dumps({"account_id": n % 1000 + 1, "amount": 1, "idempotency_key": f"auth-cost-{n}"}).encode()
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/energy/consume/", "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {token}",
                   "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
                   "QUERY_STRING": "", "wsgi.errors": sys.stderr}
        status = []
        response = application(environ, lambda code, headers, exc_info=None: status.append(code))
        b"".join(response)
        response.close()
        if not status[0].startswith("201"):
            raise SystemExit(f"request {n} answered {status[0]}")

    for n in range(200):  # warm up: connection, prepared statements, caches
        call(-n - 1)
    auth.BearerTokenAuthentication.authenticate = timed
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(requests):
            call(n)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        auth.BearerTokenAuthentication.authenticate = original
    return {"request_cpu_us": cpu / requests * 1e6, "request_wall_us": wall / requests * 1e6,
            "auth_cpu_us": spent["cpu"] / requests * 1e6, "auth_wall_us": spent["wall"] / requests * 1e6,
            "auth_share": spent["wall"] / wall}


if __name__ == "__main__":
    sys.exit(main())
