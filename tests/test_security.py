"""Security basics: parameterised SQL (linted), no credentials in errors or logs, Host checking."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import path

from energy.urls import handler500  # noqa: F401 - this module is a URLconf too (see below)
from energy.urls import urlpatterns as api_routes
from tests.support import closed_port, energyctl

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Sup3r-s3cret-pw"


# --- SQL is never built from values -------------------------------------------------------
# ruff's S608 checks the code (see .ci/run and [tool.ruff] in pyproject.toml); this only makes
# sure the project's configuration keeps it on for product code.

@pytest.mark.slow
@pytest.mark.parametrize("filename", ["energy/application/example.py", "energyctl/example.py", "torture/example.py"])
def test_lint_flags_sql_built_from_values_in_product_code(filename):
    snippet = 'def f(cursor, key):\n    cursor.execute(f"SELECT * FROM t WHERE k = \'{key}\'")\n'
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                           "--stdin-filename", filename, "-"], input=snippet, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "S608" in done.stdout, done.stdout + done.stderr


# --- Credentials stay out of messages and logs ----------------------------------------------

def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings", **env}
    return subprocess.run([sys.executable, "-c", code], env=environment, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


UNAVAILABLE_EVERYWHERE = """
import json, logging, django
django.setup()
logging.getLogger("psycopg").setLevel(logging.DEBUG)
from rest_framework.test import APIClient
from energy.application.accounts import get_balance
from energy.application.consume import consume
from energy.domain.exceptions import Unavailable
messages = []
for call in (lambda: consume(account_id=1, amount=5, idempotency_key="k"), lambda: get_balance(account_id=1)):
    try:
        call()
    except Unavailable as exc:
        messages.append(str(exc))
# A well-formed token: checking it needs the database, which is unreachable.
answers = [APIClient().post("/api/energy/consume/", {"account_id": 1, "amount": 5, "idempotency_key": "k"},
                            format="json", HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer ect_" + "A" * 43),
           APIClient().get("/healthz", HTTP_HOST="localhost")]
print(json.dumps({"messages": messages, "answers": [
    {"status": a.status_code, "type": a["Content-Type"], "retry": a.get("Retry-After"), "body": a.json()}
    for a in answers]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_password_in_database_url_never_reaches_messages_or_logs(log_format):
    url = f"postgresql://energy:{PASSWORD}@127.0.0.1:{closed_port()}/energyctl?sslmode=disable"
    done = run_python(UNAVAILABLE_EVERYWHERE, DATABASE_URL=url, ENERGYCTL_LOG_LEVEL="DEBUG",
                      ENERGYCTL_LOG_FORMAT=log_format)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert len(seen["messages"]) == 2 and [a["status"] for a in seen["answers"]] == [503, 503], seen
    assert all("unavailable" in message for message in seen["messages"])
    assert "consume unavailable" in done.stderr, "the consume log record is missing"
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.slow
def test_a_503_says_a_fixed_sentence_and_an_error_id_and_the_log_says_why():
    port = closed_port()
    done = run_python(UNAVAILABLE_EVERYWHERE, DATABASE_URL=f"postgresql://energy:{PASSWORD}@127.0.0.1:{port}/energyctl",
                      ENERGYCTL_LOG_LEVEL="INFO")
    assert done.returncode == 0, done.stderr
    for answer in json.loads(done.stdout)["answers"]:
        body = answer["body"]
        assert (answer["status"], answer["type"], answer["retry"]) == (503, "application/json", "1"), answer
        assert set(body) == {"status", "error", "detail"} and body["error"] == "unavailable", body
        # Nothing about the database: not its host, port, user, driver or the driver's words.
        for detail in ("127.0.0.1", str(port), "energy:", "energyctl", "psycopg", "connect", "refused", "server"):
            assert detail not in body["detail"], (detail, body)
        error_id = re.fullmatch(r"The service cannot answer right now; .* Error id: ([0-9a-f]{12})\.",
                                body["detail"]).group(1)
        logged = [line for line in done.stderr.splitlines() if error_id in line and "energy.http" in line]
        assert logged and "Connection refused" in logged[0] and str(port) in logged[0], done.stderr


def test_redaction_covers_driver_messages_that_quote_the_url():
    from energy.db.redact import redact_text

    text = f"could not connect to postgresql://energy:{PASSWORD}@db.example:5432/x and password={PASSWORD}"
    assert PASSWORD not in redact_text(text)


# --- Host header ------------------------------------------------------------------------------

HOSTS_PROBE = """
import json, django
django.setup()
from django.test import Client
print(json.dumps({host: Client().get("/api/energy/consume/", HTTP_HOST=host).status_code
                  for host in ("api.example.com", "localhost", "evil.example")}))
"""


@pytest.mark.slow
def test_allowed_hosts_come_from_the_environment_and_a_bad_host_is_400():
    done = run_python(HOSTS_PROBE, ENERGYCTL_ALLOWED_HOSTS="api.example.com", ENERGYCTL_LOG_LEVEL="CRITICAL")
    assert done.returncode == 0, done.stderr
    # A request without a token is a 401 without touching the database: the Host was accepted.
    assert json.loads(done.stdout) == {"api.example.com": 401, "localhost": 400, "evil.example": 400}
    assert "Traceback" not in done.stderr


@pytest.mark.django_db
def test_bad_host_is_400_not_500_in_process():
    from django.test import Client

    response = Client().post("/api/energy/consume/", "{}", content_type="application/json", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"status": "error", "error": "invalid_request",
                               "detail": "The Host header names a host this server does not answer to."}


# --- Every refusal is the contract's JSON error, never Django's HTML page ----------------------------

def _token() -> str:
    from energy.application.clients import add_client

    return add_client(name="edges", accounts=None).token


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, kwargs, status", [
    ("get", "/no/such/endpoint", {}, 404),
    ("get", "/api/energy/nothing-here/", {"auth": True}, 404),
    ("get", "/api/energy/consumptions/a%0Ab/", {"auth": True}, 400),
    ("get", "/api/energy/consumptions/a%0D%0AForged/", {"auth": True}, 400),
    ("delete", "/api/energy/consume/", {"auth": True}, 405),
    ("post", "/healthz", {}, 405),
    ("put", "/api/schema/", {}, 405),
    ("get", "/api/energy/accounts/1/", {"auth": True, "HTTP_ACCEPT": "text/html"}, 406),
    ("get", "/api/schema/", {"HTTP_ACCEPT": "text/html"}, 406),
    ("post", "/api/energy/consume/", {"auth": True, "data": "x=1", "content_type": "text/plain"}, 415),
    ("post", "/api/energy/consume/", {"auth": True, "data": "[" * 70_000, "content_type": "application/json"}, 413),
    ("get", "/healthz", {"HTTP_HOST": "evil.example"}, 400),
], ids=["unknown-path", "unknown-api-path", "newline-key", "crlf-key", "405", "405-healthz", "405-schema", "406",
        "406-schema", "415", "413", "bad-host"])
def test_every_refusal_is_the_contracts_json_error(method, url, kwargs, status):
    from django.test import Client

    kwargs = dict(kwargs)
    if kwargs.pop("auth", False):
        kwargs["HTTP_AUTHORIZATION"] = f"Bearer {_token()}"
    response = getattr(Client(), method)(url, **kwargs)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert {"status", "error", "detail"} <= set(body) and body["status"] == "error", body
    assert b"<html" not in response.content.lower()


@pytest.mark.django_db
def test_a_key_with_a_line_break_is_invalid_and_named():
    from django.test import Client

    response = Client().get("/api/energy/consumptions/a%0Ab/", HTTP_AUTHORIZATION=f"Bearer {_token()}")
    assert response.json()["fields"] == {"idempotency_key": "must not contain control characters"}


def _fails(request):
    raise RuntimeError("a bug with db.internal:5432 in its message")


# This module is also the URLconf of the test below: the API's routes and error views, and a route that fails.
urlpatterns = [*api_routes, path("fails/", _fails)]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.django_db
def test_a_500_is_json_with_an_error_id_and_django_logs_the_traceback_with_that_id(settings):
    from django.test import Client

    settings.ROOT_URLCONF = __name__
    seen = _Records()
    logger = logging.getLogger("django.request")
    logger.addHandler(seen)
    try:
        response = Client(raise_request_exception=False).get("/fails/")
    finally:
        logger.removeHandler(seen)
    assert (response.status_code, response["Content-Type"]) == (500, "application/json")
    body = response.json()
    assert body["error"] == "internal_error" and "db.internal" not in body["detail"], body
    error_id = re.search(r"Error id: ([0-9a-f]{12})\.", body["detail"]).group(1)
    [record] = seen.records
    assert error_id in record.getMessage() and record.exc_info[0] is RuntimeError


# --- Production mode -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("args, env, reason", [
    (["--production"], {}, "ENERGYCTL_SECRET_KEY"),
    (["--production"], {"ENERGYCTL_SECRET_KEY": "k" * 50, "ENERGYCTL_DEBUG": "1"}, "debug"),
    (["--production", "--debug"], {"ENERGYCTL_SECRET_KEY": "k" * 50}, "debug"),
    ([], {"ENERGYCTL_ENV": "production"}, "ENERGYCTL_SECRET_KEY"),
], ids=["no-secret-key", "debug-env", "debug-flag", "production-env"])
def test_serve_in_production_mode_refuses_an_unsafe_environment(args, env, reason):
    done = energyctl("serve", "--port", str(closed_port()), *args, inherit_settings=False,
                     url=f"postgresql://energy:{PASSWORD}@127.0.0.1:{closed_port()}/energyctl", env=env)
    assert done.returncode == 78, (done.stdout, done.stderr)
    assert reason in done.stderr and "Traceback" not in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


# --- Log lines: what a caller sent never starts a line of its own ----------------------------------

def test_a_record_with_line_breaks_from_a_caller_is_written_on_one_line():
    import io

    from energy.http.log_lines import OneLine

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(OneLine())
    logger = logging.getLogger("tests.one_line")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("Not Found: %s", "/healthz\r\nFORGED-LINE \x1b[2J\u2028x\x85y")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "Not Found: /healthz\\x0d\\x0aFORGED-LINE \\x1b[2J\\u2028x\\x85y\n"


@pytest.mark.parametrize("text, written", [
    ("/a\r\nb", "/a\\x0d\\x0ab"),
    ('say "hi"', 'say \\x22hi\\x22'),
    ("back\\slash", "back\\\\slash"),
    ("caf\xc3\xa9", "caf\\xc3\\xa9"),
    ("plain /path?x=1", "plain /path?x=1"),
])
def test_an_access_log_field_is_printable_ascii_and_unambiguous(text, written):
    from energy.http.log_lines import field

    assert field(text) == written


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("192.0.2.1", False), ("example.com", False),  # noqa: S104
    ("localhost.example.com", False),
])
def test_debug_mode_is_for_loopback_hosts_only(host, loopback):
    from energyctl.http_server import is_loopback

    assert is_loopback(host) is loopback
