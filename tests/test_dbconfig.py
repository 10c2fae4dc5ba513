"""The environment turned into connection settings: what each kind of deployment gets."""

import importlib

import pytest
from django.core.exceptions import ImproperlyConfigured
from psycopg import IsolationLevel

from energy.db import config as dbconfig
from energy.domain.exceptions import InvalidRequest
from tests.support import energyctl


@pytest.fixture
def configure(monkeypatch):
    """Re-read the environment with ``env`` set; the module is restored afterwards."""

    def reload(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return importlib.reload(dbconfig)

    yield reload
    monkeypatch.undo()
    importlib.reload(dbconfig)


def test_a_direct_connection_carries_every_setting_as_startup_options(configure):
    options = configure().database_settings("postgresql://u@db.example/energy")["OPTIONS"]
    assert options["options"] == (
        "-c lock_timeout=5000ms -c statement_timeout=30000ms -c idle_in_transaction_session_timeout=10000ms"
        r" -c default_transaction_isolation=read\ committed -c synchronous_commit=on"
    )
    assert (options["isolation_level"], options["prepare_threshold"]) == (IsolationLevel.READ_COMMITTED, 5)
    assert {k: options[k] for k in ("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                                    "keepalives_count", "tcp_user_timeout")} == {
        "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
        "keepalives_count": 3, "tcp_user_timeout": 25000}


def test_behind_a_pooler_nothing_is_sent_at_start_up_and_nothing_is_prepared(configure):
    options = configure(ENERGYCTL_DB_POOLER="transaction").database_settings("postgresql://u@pool/energy")["OPTIONS"]
    assert "options" not in options
    assert options["prepare_threshold"] is None
    assert options["isolation_level"] == IsolationLevel.READ_COMMITTED


def test_behind_a_pooler_prepared_statements_can_be_asked_for(configure):
    config = configure(ENERGYCTL_DB_POOLER="transaction", ENERGYCTL_PREPARE_THRESHOLD="5")
    assert config.database_settings("postgresql://u@pool/energy")["OPTIONS"]["prepare_threshold"] == 5


def test_the_client_deadline_follows_the_statement_timeout(configure):
    assert configure(ENERGYCTL_STATEMENT_TIMEOUT_MS="2000").CLIENT_TIMEOUT_MS == 7000


def test_sqlite_writers_take_the_write_lock_at_begin_and_wait_for_it(configure):
    options = configure(ENERGYCTL_LOCK_TIMEOUT_MS="1500").database_settings("sqlite:///tmp/x.sqlite3")["OPTIONS"]
    assert options == {"transaction_mode": "IMMEDIATE", "timeout": 1.5}


# Every bound energyctl reads, each with a value that must be refused: not a number, 0 (which
# PostgreSQL or libpq would read as "no limit"), negative, or beyond what the server takes.
BAD_SETTINGS = [
    ("ENERGYCTL_LOCK_TIMEOUT_MS", "abc"), ("ENERGYCTL_LOCK_TIMEOUT_MS", "0"), ("ENERGYCTL_LOCK_TIMEOUT_MS", "-5"),
    ("ENERGYCTL_LOCK_TIMEOUT_MS", "5s"), ("ENERGYCTL_STATEMENT_TIMEOUT_MS", "0"),
    ("ENERGYCTL_STATEMENT_TIMEOUT_MS", "3000000000"), ("ENERGYCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS", "-1"),
    ("ENERGYCTL_CONNECT_TIMEOUT", "0"), ("ENERGYCTL_KEEPALIVES_IDLE", "x"), ("ENERGYCTL_KEEPALIVES_INTERVAL", "0"),
    ("ENERGYCTL_KEEPALIVES_COUNT", "-3"), ("ENERGYCTL_TCP_USER_TIMEOUT_MS", "0"),
    ("ENERGYCTL_CLIENT_TIMEOUT_MS", "1.5"), ("ENERGYCTL_PREPARE_THRESHOLD", "sometimes"),
    ("ENERGYCTL_PREPARE_THRESHOLD", "-1"), ("ENERGYCTL_DB_POOLER", "session"), ("ENERGYCTL_CONN_MAX_AGE", "-1"),
    ("ENERGYCTL_CONN_MAX_AGE", "ten"),
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_a_bad_setting_is_an_invalid_request_naming_the_variable(configure, name, value):
    with pytest.raises(InvalidRequest) as caught:
        configure(**{name: value})
    assert list(caught.value.fields) == [name]
    assert value.strip().lower() in caught.value.detail
    assert isinstance(caught.value, ImproperlyConfigured)  # what Django and manage.py expect of settings


def test_zero_means_what_it_says_where_it_bounds_nothing(configure):
    config = configure(ENERGYCTL_PREPARE_THRESHOLD="0", ENERGYCTL_CONN_MAX_AGE="0")
    assert (config.PREPARE_THRESHOLD, config.CONN_MAX_AGE_S) == ("0", 0)
    assert config.database_settings("postgresql://u@db/energy")["OPTIONS"]["prepare_threshold"] == 0


# Every kind of command, and the server, read the settings before they do anything.
COMMANDS = [
    ("consume", "--account", "1", "--amount", "1", "--key", "k"), ("balance", "--account", "1"),
    ("seed", "--accounts", "1", "--energy", "1"), ("replay", "-"), ("migrate",), ("serve", "--port", "1"),
    ("db", "status"), ("db", "stop"), ("clients", "list"), ("history", "--account", "1"), ("audit",),
    ("show", "--key", "k"), ("race-demo",), ("bench", "--seconds", "1"), ("torture", "--seconds", "1"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_energyctl_with_a_bad_setting_exits_2_naming_it_before_doing_anything(tmp_path, name, value):
    done = energyctl("consume", "--account", "1", "--amount", "1", "--key", "k", "--json", url="",
                     env={"ENERGYCTL_PGDATA": str(tmp_path / "pgdata"), name: value}, stdin="")
    assert done.returncode == 2, done
    assert done.json["error"] == "invalid_request" and name in done.json["fields"], done
    assert not (tmp_path / "pgdata").exists()  # no embedded server was even set up


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command[:2]))
def test_every_command_and_the_server_refuse_a_bad_setting_with_one_line(tmp_path, command):
    done = energyctl(*command, url="", env={"ENERGYCTL_PGDATA": str(tmp_path / "pgdata"),
                                            "ENERGYCTL_LOCK_TIMEOUT_MS": "0"}, stdin="")
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "ENERGYCTL_LOCK_TIMEOUT_MS" in done.stderr, done
    assert "Traceback" not in done.stderr and done.stdout == "", done
    assert not (tmp_path / "pgdata").exists()


@pytest.fixture
def own_databases():
    """Databases of this test's own on the suite's server, each with one row of real data; dropped afterwards."""
    import psycopg

    from tests.support import test_database_url

    made = []

    def make(name: str) -> str:
        with psycopg.connect(test_database_url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        url = test_database_url(name)
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE precious (value text); INSERT INTO precious VALUES ('kept')")
        return url

    def still_there(url: str) -> bool:
        with psycopg.connect(url) as db:
            return db.execute("SELECT value FROM precious").fetchall() == [("kept",)]

    make.still_there = still_there
    yield make
    with psycopg.connect(test_database_url("postgres"), autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_bench_refuses_to_work_in_the_database_energyctl_uses(own_databases):
    url = own_databases("bench_home")
    done = energyctl("bench", "--seconds", "1", "--only", "single", "--json", url=url,
                     env={"ENERGYCTL_BENCH_DATABASE": "bench_home"})
    assert done.returncode == 2, done
    assert done.json["error"] == "invalid_request" and "ENERGYCTL_BENCH_DATABASE" in done.json["detail"], done
    assert own_databases.still_there(url)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_bench_never_drops_a_database_it_did_not_create(own_databases):
    home = own_databases("bench_other")
    taken = own_databases("bench_other_bench")  # the name the benchmark would pick, already someone's
    done = energyctl("bench", "--seconds", "1", "--only", "single", "--json", url=home)
    assert done.returncode == 2, done
    assert "did not create" in done.json["detail"] and "ENERGYCTL_BENCH_DATABASE" in done.json["detail"], done
    assert own_databases.still_there(taken) and own_databases.still_there(home)


def test_the_database_url_option_warns_that_the_process_list_shows_it(capsys):
    from energyctl.app import main

    assert main(["--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--database-url" in shown
    assert "visible to other users of the machine in the process list" in shown
    assert "Prefer the DATABASE_URL environment variable" in shown
