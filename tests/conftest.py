"""Shared fixtures: a store on a real SQLite file and on a real PostgreSQL server.

PostgreSQL comes from $TRAINLEDGER_TEST_PG_URL (scripts/test.sh starts one and sets it); each
test session gets a database of its own, dropped at the end. Without the variable, or with a
server that does not answer, the PostgreSQL tests are skipped — and said so loudly, in the
skip reason and in a banner at the end of the run.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from monitor.store import open_store

PG_ENV = "TRAINLEDGER_TEST_PG_URL"
_pg_problem: list[str] = []


def _admin(url: str):
    import psycopg

    parsed = make_url(url).set(drivername="postgresql")
    return psycopg.connect(parsed.render_as_string(hide_password=False), autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_url():
    """The URL of a fresh PostgreSQL database for this test session."""
    base = os.environ.get(PG_ENV)
    if not base:
        _pg_problem.append(f"${PG_ENV} is not set")
        pytest.skip(f"!!! PostgreSQL store tests SKIPPED: ${PG_ENV} is not set "
                    "(scripts/test.sh starts PostgreSQL and sets it) !!!")
    name = f"trainledger_test_{uuid.uuid4().hex[:12]}"
    try:
        with _admin(base) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 — any failure to reach the server is a loud skip
        _pg_problem.append(f"PostgreSQL at {make_url(base).render_as_string(hide_password=True)} "
                          f"did not answer: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        pytest.skip(f"!!! PostgreSQL store tests SKIPPED: {_pg_problem[-1]} !!!")
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with _admin(base) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE runs, attempts, step_metrics, events, source_files, alerts, alert_mutes, live_states, live_etas RESTART IDENTITY"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return str(tmp_path / "store" / "trainledger.db")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    """A store URL (SQLite path or PostgreSQL URL) holding nothing yet."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "trainledger.db")
    url = request.getfixturevalue("pg_url")
    engine = open_store(url)
    _empty(engine)
    engine.dispose()
    return url


@pytest.fixture
def store(store_url):
    """An engine on an empty, migrated store (SQLite file or PostgreSQL database)."""
    engine = open_store(store_url)
    yield engine
    engine.dispose()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _pg_problem:
        terminalreporter.write_sep("!", "PostgreSQL store tests were SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"reason: {_pg_problem[0]}", red=True, bold=True)
        terminalreporter.write_line("run them with: TRAINLEDGER_TEST_PG_URL=$(bash scripts/start-postgres.sh) "
                                    ".venv/bin/python -m pytest tests/monitor", red=True)
