"""Opening the store: where it lives, the SQLite settings, migrations on open, masked URLs and secrets."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import quote, quote_plus

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
ENV_VAR = "TRAINLEDGER_DB"


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message is one line, without any password."""


def default_db_path() -> Path:
    """$XDG_DATA_HOME/trainledger/trainledger.db, i.e. ~/.local/share/trainledger/trainledger.db."""
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "trainledger" / "trainledger.db"


def resolve_url(url_or_path: str | os.PathLike | None = None) -> str:
    """A SQLAlchemy URL from a URL, a SQLite file path, $TRAINLEDGER_DB or the default path."""
    target = url_or_path if url_or_path not in (None, "") else os.environ.get(ENV_VAR) or default_db_path()
    target = os.fspath(target)
    if "://" in target:
        return target
    return f"sqlite:///{Path(target).expanduser().resolve()}"


SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token",
                               "api_key", "apikey", "auth"})
"""Query parameters whose value is a secret (`?password=…` is how libpq takes one too)."""
MASK = "***"


def mask_url(url_or_path: str | os.PathLike | None) -> str:
    """The URL fit to print: its password, in `user:password@` or in a query parameter, replaced by ***."""
    url = resolve_url(url_or_path)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    hidden = {key: MASK for key in parsed.query if key.lower() in SECRET_QUERY_KEYS}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace(quote(MASK, safe=""), MASK)


def secrets_of(url_or_path: str | os.PathLike | None) -> list[str]:
    """Every secret in the URL, as written and as decoded, longest first (what `mask_secrets` hides)."""
    url = resolve_url(url_or_path)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return []
    values = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if key.lower() in SECRET_QUERY_KEYS:
            values += [value] if isinstance(value, str) else list(value)
    found = {form for value in values if value for form in (value, quote(value, safe=""), quote_plus(value))}
    return sorted(found, key=len, reverse=True)


def mask_secrets(text: str, url_or_path: str | os.PathLike | None) -> str:
    """The text (an error from the driver, a log line) with every secret of the URL replaced by ***."""
    for secret in secrets_of(url_or_path):
        text = text.replace(secret, MASK)
    return text


class MaskedLog(logging.Filter):
    """Hides the store's secrets in every log message: a driver's error may quote its DSN."""

    def __init__(self, url_or_path: str | os.PathLike | None) -> None:
        super().__init__()
        self.secrets = secrets_of(url_or_path)

    def filter(self, record: logging.LogRecord) -> bool:
        """Masks the message and a traceback already formatted (PrintableLog, before, does that)."""
        if self.secrets:
            message, traceback = record.getMessage(), record.exc_text or ""
            for secret in self.secrets:
                message, traceback = message.replace(secret, MASK), traceback.replace(secret, MASK)
            record.msg, record.args, record.exc_text = message, None, traceback or None
        return True


def json_dumps(value) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer beyond 64 bits, say: the slow, general encoder
        return json.dumps(value, default=str)


def _sqlite_engine(url: str, read_only: bool) -> Engine:
    parsed = make_url(url)
    path = Path(parsed.database or "")
    if not parsed.database or parsed.database == ":memory:":
        raise StoreError("an in-memory SQLite store cannot be shared; give a file path")
    if read_only:
        if not path.exists():
            raise StoreError(f"no store at {path}")
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, json_serializer=json_dumps, json_deserializer=orjson.loads,
                           connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # SQLAlchemy, not the sqlite3 module, decides where transactions begin (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a killed process loses nothing committed; only power loss may.
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # A writer takes the write lock up front: no read-then-write upgrade can deadlock.
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _migrate(engine: Engine, read_only: bool) -> None:
    config = _alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return
    if read_only:
        raise StoreError(f"the store is at schema revision {current or 'none'}, not {head}: "
                         "`trainledger ingest` or `watch` upgrades it")
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('trainledger-migrate'))"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_store(url_or_path: str | os.PathLike | None = None, *, read_only: bool = False) -> Engine:
    """An engine on the store at this URL or SQLite path (default: $TRAINLEDGER_DB, then
    `default_db_path()`), migrated to the newest schema. `read_only=True` (the dashboard)
    never writes, not even a migration. Raises StoreError with a one-line, masked message."""
    url = resolve_url(url_or_path)
    masked = mask_url(url)
    try:
        backend = make_url(url).get_backend_name()
        if backend == "sqlite":
            engine = _sqlite_engine(url, read_only)
        else:
            connect_args = {"options": "-c default_transaction_read_only=on"} if read_only else {}
            engine = create_engine(url, json_serializer=json_dumps, json_deserializer=orjson.loads,
                                   pool_pre_ping=True, connect_args=connect_args)
        _migrate(engine, read_only)
    except StoreError:
        raise
    except (SQLAlchemyError, ArgumentError, ImportError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason_line = mask_secrets(reason[0] if reason else type(exc).__name__, url)
        raise StoreError(f"cannot open the store {masked}: {reason_line}") from None
    return engine
