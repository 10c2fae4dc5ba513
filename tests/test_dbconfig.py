"""The environment turned into connection settings: what each kind of deployment gets."""

import importlib

import pytest
from django.core.exceptions import ImproperlyConfigured
from psycopg import IsolationLevel

from energy.db import config as dbconfig


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
        r" -c default_transaction_isolation=read\ committed"
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


@pytest.mark.parametrize("env, message", [
    ({"ENERGYCTL_LOCK_TIMEOUT_MS": "5s"}, "ENERGYCTL_LOCK_TIMEOUT_MS must be a whole number, not '5s'"),
    ({"ENERGYCTL_DB_POOLER": "session"}, "ENERGYCTL_DB_POOLER must be 'transaction' or empty, not 'session'"),
])
def test_a_wrong_setting_is_named(configure, env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        configure(**env)
