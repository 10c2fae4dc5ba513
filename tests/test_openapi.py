"""The OpenAPI document at /api/schema/ says what the server does: parameters with their bounds,
every status of each endpoint, every error body; schemathesis holds a real server to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from energy.domain.requests import MAX_INT64, MAX_KEY_LENGTH, MAX_PAGE_LIMIT
from tests.http_server import Server
from tests.support import test_database_url

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Hang guards for a busy shared machine, not performance claims.
START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 120
API = "/api/energy"
CONSUME = f"{API}/consume/"
ACCOUNT = f"{API}/accounts/{{account_id}}/"
HISTORY = f"{API}/accounts/{{account_id}}/consumptions/"
RECORD = f"{API}/consumptions/{{key}}/"


@pytest.fixture
def document(db):
    from drf_spectacular.validation import validate_schema

    response = APIClient().get("/api/schema/")
    assert response.status_code == 200, response.content
    document = json.loads(response.content)
    validate_schema(document)
    return document


def parameters(document, path: str, method: str = "get") -> dict:
    return {p["name"]: p for p in document["paths"][path][method].get("parameters", [])}


def test_path_and_query_integers_carry_the_bounds_the_server_enforces(document):
    for path in (ACCOUNT, HISTORY):
        assert parameters(document, path)["account_id"]["schema"] == {
            "type": "integer", "minimum": 1, "maximum": MAX_INT64}, path
    history = parameters(document, HISTORY)
    assert (history["limit"]["schema"]["minimum"], history["limit"]["schema"]["maximum"]) == (1, MAX_PAGE_LIMIT)
    assert (history["before"]["schema"]["minimum"], history["before"]["schema"]["maximum"]) == (1, MAX_INT64)
    key = parameters(document, RECORD)["key"]["schema"]
    assert (key["minLength"], key["maxLength"]) == (1, MAX_KEY_LENGTH)


@pytest.mark.parametrize("path, method, statuses", [
    (CONSUME, "post", {"200", "201", "400", "401", "403", "404", "406", "409", "413", "415", "422", "500", "503"}),
    (ACCOUNT, "get", {"200", "400", "401", "403", "404", "406", "500", "503"}),
    (HISTORY, "get", {"200", "400", "401", "403", "404", "406", "500", "503"}),
    (RECORD, "get", {"200", "400", "401", "403", "404", "406", "500", "503"}),
    ("/healthz", "get", {"200", "400", "406", "500", "503"}),
])
def test_every_status_an_endpoint_answers_is_documented_with_its_body(document, path, method, statuses):
    responses = document["paths"][path][method]["responses"]
    assert set(responses) == statuses
    for status in statuses - {"200", "201"}:
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, (status, schema)
    if "503" in statuses:
        assert responses["503"]["headers"]["Retry-After"]["required"] is True
    if "401" in statuses:
        assert responses["401"]["headers"]["WWW-Authenticate"]["schema"]["enum"] == ["Bearer"]


def test_the_error_body_names_every_outcome_the_api_answers(document):
    error = document["components"]["schemas"]["Error"]
    outcomes = set(document["components"]["schemas"][error["properties"]["error"]["$ref"].rsplit("/", 1)[1]]["enum"])
    assert {"invalid_request", "unauthenticated", "forbidden", "account_not_found", "key_not_found", "not_found",
            "insufficient_energy", "idempotency_key_mismatch", "invalid_state", "internal_error",
            "unavailable"} == outcomes
    assert set(error["required"]) == {"status", "error", "detail"}


def test_a_replay_and_the_key_header_are_documented(document):
    consume = document["paths"][CONSUME]["post"]
    assert consume["responses"]["200"]["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"]
    header = parameters(document, CONSUME, "post")["Idempotency-Key"]
    assert header["in"] == "header" and not header.get("required", False)
    links = consume["responses"]["201"]["links"]
    assert links["TheStoredRecord"]["parameters"] == {"key": "$response.body#/idempotency_key"}


def test_the_key_header_pattern_is_the_servers_rule():
    """The document's pattern accepts exactly the header values the server reads a key from."""
    import re

    from hypothesis import assume, given, settings
    from hypothesis import strategies as st

    from energy.domain.requests import key_from_header
    from energy.http.openapi import KEY_HEADER_PATTERN

    pattern = re.compile(KEY_HEADER_PATTERN)

    @settings(max_examples=300, deadline=None)
    @given(value=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
           | st.text(alphabet='"\\ab ', max_size=8).map(lambda t: f'"{t}"'))
    def agree(value):
        # Spaces around a header value are not part of it: waitress strips them before the app sees it.
        assume(value == value.strip(" "))
        problems: dict[str, str] = {}
        key = key_from_header(value, problems)
        readable = key is not None and 1 <= len(key) <= MAX_KEY_LENGTH
        assert bool(pattern.fullmatch(value)) == readable, (value, key, problems)

    agree()


# --- schemathesis against a real server ------------------------------------------------------------

# A consume with a valid body may still reuse a key for another amount (422); a history's
# `before` is a cursor that must name one of the account's consumptions (else 400); a credit
# may take an account past 2**63 - 1 (400) and a reverse may name a credit (409); a hold may reuse
# a key (422) or want more than there is (409), and a capture may ask more than its hold (400), or
# meet a hold already resolved or expired (409) or captured with another amount (422). All are
# outcomes the document states, not refusals of valid input.
CONFIG = """
hooks = "tests.schemathesis_hooks"

[[operations]]
include-operation-id = "api_energy_consume_create"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "5xx"]

[[operations]]
include-operation-id = "api_energy_accounts_consumptions_retrieve"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "5xx"]

[[operations]]
include-operation-id = "api_energy_credit_create"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "422", "5xx"]

[[operations]]
include-operation-id = "api_energy_consumptions_reverse_create"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "5xx"]

[[operations]]
include-operation-id = "api_energy_holds_create"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "5xx"]

[[operations]]
include-operation-id = "api_energy_holds_capture_create"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "5xx"]

[[operations]]
include-operation-id = "api_energy_holds_void_create"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "5xx"]
"""


@pytest.fixture
def server(transactional_db, tmp_path):
    """(port, token): ``energyctl serve`` on the suite's database, accounts 1..3, a client allowed all of them."""
    from energy.application.accounts import seed_accounts
    from energy.application.clients import add_client

    seed_accounts(count=3, energy=10**12)
    token = add_client(name="schemathesis", accounts=None, scopes=["consume", "read", "credit"]).token
    server = Server(test_database_url(), tmp_path / "serve.log", workers=1, args=("--no-access-log",))
    try:
        yield server.port, token
    finally:
        server.close()


@pytest.mark.slow
def test_schemathesis_finds_the_server_as_the_document_says(server, tmp_path):
    port, token = server
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [SCHEMATHESIS, "--config-file", config, "run", f"http://127.0.0.1:{port}/api/schema/",
         "--header", f"Authorization: Bearer {token}", "--checks", "all",
         "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "10", "--seed", "1",
         "--workers", "1", "--request-timeout", "10", "--output-truncate", "false"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Stateful" in done.stdout and "No issues found" in done.stdout, done.stdout[-3000:]
