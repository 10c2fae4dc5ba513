"""Security basics: parameterised SQL (linted), no credentials in errors or logs, Host checking."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Sup3r-s3cret-pw"


# --- SQL is never built from values -------------------------------------------------------
# ruff's S608 checks the code (see .ci/run and [tool.ruff] in pyproject.toml); this only makes
# sure the project's configuration keeps it on for product code.

@pytest.mark.parametrize("path", ["energy/application/example.py", "energyctl/example.py", "torture/example.py"])
def test_lint_flags_sql_built_from_values_in_product_code(path):
    snippet = 'def f(cursor, key):\n    cursor.execute(f"SELECT * FROM t WHERE k = \'{key}\'")\n'
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                           "--stdin-filename", path, "-"], input=snippet, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "S608" in done.stdout, done.stdout + done.stderr


# --- Credentials stay out of messages and logs ----------------------------------------------

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
response = APIClient().post("/api/energy/consume/", {"account_id": 1, "amount": 5, "idempotency_key": "k"},
                            format="json", HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer ect_" + "A" * 43)
print(json.dumps({"messages": messages, "status": response.status_code, "body": response.content.decode()}))
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_password_in_database_url_never_reaches_messages_or_logs(log_format):
    url = f"postgresql://energy:{PASSWORD}@127.0.0.1:{closed_port()}/energyctl?sslmode=disable"
    done = run_python(UNAVAILABLE_EVERYWHERE, DATABASE_URL=url, ENERGYCTL_LOG_LEVEL="DEBUG",
                      ENERGYCTL_LOG_FORMAT=log_format)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert len(seen["messages"]) == 2 and seen["status"] == 503, seen
    assert all("unavailable" in message for message in seen["messages"])
    assert "consume unavailable" in done.stderr, "the consume log record is missing"
    assert PASSWORD not in done.stdout + done.stderr


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


# --- Production mode -----------------------------------------------------------------------------

def energyctl(*args: str, **env: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "energyctl"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ENERGYCTL_")}
    return subprocess.run([str(script), *args], env={**environment, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args, env, reason", [
    (["--production"], {}, "ENERGYCTL_SECRET_KEY"),
    (["--production"], {"ENERGYCTL_SECRET_KEY": "k" * 50, "ENERGYCTL_DEBUG": "1"}, "debug"),
    (["--production", "--debug"], {"ENERGYCTL_SECRET_KEY": "k" * 50}, "debug"),
    ([], {"ENERGYCTL_ENV": "production"}, "ENERGYCTL_SECRET_KEY"),
], ids=["no-secret-key", "debug-env", "debug-flag", "production-env"])
def test_serve_in_production_mode_refuses_an_unsafe_environment(args, env, reason):
    done = energyctl("serve", "--port", str(closed_port()), *args,
                     DATABASE_URL=f"postgresql://energy:{PASSWORD}@127.0.0.1:{closed_port()}/energyctl", **env)
    assert done.returncode == 78, (done.stdout, done.stderr)
    assert reason in done.stderr and "Traceback" not in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
