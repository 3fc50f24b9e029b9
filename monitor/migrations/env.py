"""Alembic environment for the trainledger store: SQLite and PostgreSQL alike.

The store runs `upgrade head` itself on open (`monitor.store.open_store`), passing its
connection in `config.attributes["connection"]`. By hand:

    alembic -c monitor/migrations/alembic.ini -x url=postgresql+psycopg://user@host/db upgrade head

(without `-x url=…` the URL is $TRAINLEDGER_DB, then the default SQLite path).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from monitor import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from sqlmodel import SQLModel

target_metadata = SQLModel.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from monitor.store.engine import resolve_url

    url = context.get_x_argument(as_dictionary=True).get("url")
    engine = create_engine(resolve_url(url))
    with engine.begin() as connection:
        _run(connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; give a database URL")
run_migrations_online()
