"""Security basics: parameterised SQL, no credentials in errors or logs, Host checking."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SQL_CALLS = {"execute", "executemany", "raw", "extra", "RawSQL"}
PASSWORD = "Sup3r-s3cret-pw"


# --- SQL is never built from values -------------------------------------------------------
#
# Rule: the SQL text handed to execute/raw/extra/RawSQL is a literal, a name bound at module
# level (evaluated once at import, so it cannot hold a request's values), a value computed by
# a call (Django's own compiler), or a psycopg.sql composition. Text formatted at call time
# (f-string, `%`, `.format()`, `+`) may only insert identifiers: what a quoting function
# (`connection.ops.quote_name`, …) returned, directly or through a helper or attribute of the
# same file, or constants. Product code only: tests feed no outside input to SQL.


class _File:
    """What one source file binds: its functions' return values, attributes, module names."""

    def __init__(self, tree: ast.Module):
        self.returns: dict[str, list] = {}
        self.attributes: dict[str, list] = {}
        self.module_names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                             if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.returns[node.name] = [r.value for r in ast.walk(node) if isinstance(r, ast.Return) and r.value]
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute):
                        self.attributes.setdefault(target.attr, []).append(node.value)


def unsafe_sql_calls(source: str, filename: str = "<string>") -> list[str]:
    tree = ast.parse(source, filename)
    file = _File(tree)
    found = []
    for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]:
        local = _assignments(scope) if scope is not tree else {}
        for call in _calls_in(scope):
            if _call_name(call) in SQL_CALLS and call.args and _is_built(call.args[0], local, file):
                found.append(f"{filename}:{call.lineno}: {ast.unparse(call)[:100]}")
    return sorted(set(found))


def _is_built(node, local: dict, file: _File) -> bool:
    """True when ``node`` formats something other than identifiers into SQL text at call time."""
    if isinstance(node, ast.JoinedStr):
        return not all(_identifier(part.value, local, file, set())
                       for part in node.values if isinstance(part, ast.FormattedValue))
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return not (_literal(node.left) and _literal(node.right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return not _is_psycopg_sql(node.func.value)
    if isinstance(node, ast.Name) and node.id in local:
        return any(_is_built(value, {}, file) for value in local[node.id])
    return False


def _identifier(node, local: dict, file: _File, seen: set) -> bool:
    """True when ``node`` can only evaluate to quoted identifiers or constant text."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.IfExp):
        return _identifier(node.body, local, file, seen) and _identifier(node.orelse, local, file, seen)
    if isinstance(node, ast.JoinedStr):
        return all(_identifier(p.value, local, file, seen) for p in node.values if isinstance(p, ast.FormattedValue))
    if isinstance(node, ast.Call):
        name = _call_name(node) or ""
        if "quote" in name:
            return True
        if name == "join":
            return all(_identifier(arg, local, file, seen) for arg in node.args)
        return _all_identifiers(("def", name), file.returns.get(name), local, file, seen)
    if isinstance(node, ast.Attribute):
        return node.attr == "db_table" or _all_identifiers(("attr", node.attr), file.attributes.get(node.attr),
                                                           {}, file, seen)
    if isinstance(node, ast.Name):
        if node.id in local:
            return _all_identifiers(("name", node.id), local[node.id], {}, file, seen)
        return node.id in file.module_names
    return False


def _all_identifiers(what, values, local, file, seen) -> bool:
    if not values or what in seen:
        return False
    return all(_identifier(value, local, file, seen | {what}) for value in values)


def _literal(node) -> bool:
    if isinstance(node, ast.BinOp):
        return _literal(node.left) and _literal(node.right)
    return isinstance(node, ast.Constant)


def _is_psycopg_sql(node) -> bool:
    """``sql.SQL("...")`` or ``SQL("...")``: psycopg quotes what its format() inserts."""
    return isinstance(node, ast.Call) and _call_name(node) == "SQL"


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else None


def _calls_in(scope):
    """Calls directly in ``scope``, not inside functions nested in it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.Call):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _assignments(scope) -> dict[str, list]:
    bound: dict[str, list] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                _bind(target, node.value, bound)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name) and node.value:
            value = node.value if isinstance(node, ast.AnnAssign) else ast.BinOp(node.target, node.op, node.value)
            bound.setdefault(node.target.id, []).append(value)
    return bound


def _bind(target, value, bound: dict) -> None:
    """Pair names with what they are assigned, element by element when a tuple is unpacked."""
    if isinstance(target, ast.Name):
        bound.setdefault(target.id, []).append(value)
    elif isinstance(target, (ast.Tuple, ast.List)):
        if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
            for element, part in zip(target.elts, value.elts):
                _bind(element, part, bound)
        elif isinstance(value, ast.IfExp):
            _bind(target, value.body, bound)
            _bind(target, value.orelse, bound)
        else:
            for element in target.elts:
                _bind(element, value, bound)


def product_files() -> list[Path]:
    files = [ROOT / "settings.py", ROOT / "manage.py"]
    for package in ("energy", "energyctl"):
        files += sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if f.exists()]


@pytest.mark.parametrize("snippet", [
    'cursor.execute(f"SELECT * FROM t WHERE id = {account_id}")',
    'cursor.execute("SELECT * FROM t WHERE id = %s" % account_id)',
    'cursor.execute("SELECT * FROM t WHERE id = {}".format(account_id))',
    'cursor.execute("SELECT * FROM t WHERE key = \'" + key + "\'")',
    'def f(key):\n    query = f"SELECT {key}"\n    cursor.execute(query)',
    'Account.objects.raw(f"SELECT * FROM energy_account WHERE id = {pk}")',
    'Account.objects.extra(f"energy > {n}")',
    'RawSQL("energy - %s" % amount, [])',
    'def f(name):\n    cursor.execute(f"DROP SCHEMA {name}")',
    'def f(key):\n    cursor.execute(f"SELECT 1 FROM {quote_name(t)} WHERE k = \'{key}\'")',
    'class T:\n    def __init__(self, n):\n        self.t = n\n'
    '    def q(self):\n        cursor.execute(f"SELECT * FROM {self.t}")',
])
def test_the_sql_check_catches_sql_built_from_values(snippet):
    assert unsafe_sql_calls(snippet)


@pytest.mark.parametrize("snippet", [
    'cursor.execute("SELECT * FROM t WHERE id = %s", [account_id])',
    'conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))',
    'TABLE = "t"\nQUERY = f"SELECT * FROM {TABLE} WHERE id = %s"\ndef f(pk):\n    cursor.execute(QUERY, [pk])',
    'def f(ids):\n    query, _ = compiled()\n    cursor.execute(query, [ids])',
    'def f(name, pk):\n    cursor.execute(f"SELECT * FROM {connection.ops.quote_name(name)} WHERE id = %s", [pk])',
    'class T:\n    def __init__(self, n):\n        self.t = quote_name(n)\n'
    '    def table(self):\n        return f"s.{self.t}"\n'
    '    def q(self, u):\n        unique = " UNIQUE" if u else ""\n'
    '        cursor.execute(f"CREATE {self.table()}{unique}")',
])
def test_the_sql_check_allows_parameters_and_composition(snippet):
    assert unsafe_sql_calls(snippet) == []


def test_no_product_code_builds_sql_from_values():
    files = product_files()
    sources = {f: f.read_text(encoding="utf-8") for f in files}
    assert sum(src.count(".execute(") for src in sources.values()) >= 3, "the scan found no SQL to check"
    found = [hit for f, src in sources.items() for hit in unsafe_sql_calls(src, str(f.relative_to(ROOT)))]
    assert found == []


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
response = APIClient().post("/api/energy/consume/", {"account_id": 1, "amount": 5, "idempotency_key": "k"},
                            format="json", HTTP_HOST="localhost")
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
    from energy.redact import redact_text

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
    # GET on the consume endpoint is a 405 without touching the database: the Host was accepted.
    assert json.loads(done.stdout) == {"api.example.com": 405, "localhost": 400, "evil.example": 400}
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
