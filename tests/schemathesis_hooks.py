"""schemathesis hooks for tests/test_openapi.py: the rule of the API that OpenAPI cannot state.

A consume's, a credit's or a hold's idempotency key comes in the body or in the Idempotency-Key header (at least one of
them), and the two agree when both are given; the document says so in words. Generated
requests that break it are dropped: the server refuses them with 400, as it must, and
schemathesis would take that for a valid request refused.
"""

from __future__ import annotations

import schemathesis

from energy.domain.requests import key_from_header


@schemathesis.hook
def filter_case(context, case) -> bool:
    keyed = ("/api/energy/consume/", "/api/energy/credit/", "/api/energy/holds/")
    if case.operation.path not in keyed or not isinstance(case.body, dict):
        return True
    header = next((value for name, value in (case.headers or {}).items() if name.lower() == "idempotency-key"), None)
    body_key = case.body.get("idempotency_key")
    if header is None or body_key is None:
        return (header is None) != (body_key is None)
    named = key_from_header(header, {}) if isinstance(header, str) else None
    return named is None or named == body_key
