"""The case study's design as its own small Django project: the HTTP peer energyctl serve is held against.

A DRF ``APIView`` validates the body with a serializer and calls one use case, which runs
``transaction.atomic()`` around ``select_for_update()`` on the account, an INSERT guarded by
a UNIQUE idempotency key and an ``F()`` deduction. No authentication. Served by gunicorn
(gthread) with CONN_MAX_AGE=60, as such a project is usually deployed. Its tables live next
to energyctl's in the benchmark database, under their own names.
"""
