"""`trainledger.toml`: the monitor's one configuration file.

Found by `--config`, else `$TRAINLEDGER_CONFIG`, else `$XDG_CONFIG_HOME/trainledger/trainledger.toml`
(~/.config/…); none at all is fine (every default applies). It says what to watch, where the
store is, the accounting policy every command classifies with, the alert rules and where
alerts go. Command-line flags override it. A bad value is a `ConfigError` whose one line names
the file and the key. Secrets are best left out of the file: `url_env`, `secret_env` and
`password_env` name environment variables that hold them. See docs/trainledger.example.toml.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date, time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_VAR = "TRAINLEDGER_CONFIG"
SEVERITIES = ("info", "warning", "critical")


class ConfigError(ValueError):
    """A configuration problem, in one line naming the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WatchConfig(_Section):
    paths: list[str] = []
    """Log files, folders or globs to follow when `watch` is given none."""
    store: str | None = None
    """A SQLite path or a postgresql+psycopg:// URL; `store_env` names a variable holding one."""
    store_env: str | None = None


class PolicyConfig(_Section):
    """The accounting policy (monitor/accounting/policy.py), as the file spells it."""

    timezone: str | None = None
    work_hours: str | None = None
    holidays: list[date] = []
    maintenance: list[str] = []
    stall_after_s: float | None = Field(None, gt=0)
    fault_after_s: float | None = Field(None, gt=0)


class RulesConfig(_Section):
    """The detectors' thresholds (monitor/detectors/)."""

    throughput_margin: float = Field(0.10, gt=0, lt=1)
    """Fire when tokens/s sit this fraction below the run's own baseline…"""
    throughput_persist_s: float = Field(300.0, ge=0)
    throughput_persist_steps: int = Field(20, ge=1)
    """…for at least this long and this many steps (both)."""
    throughput_warmup_steps: int = Field(20, ge=0)
    """Steps at the start of each attempt (compilation, warm-up) that neither set nor test the baseline."""
    compare_to: str | None = None
    """A run whose median tokens/s this run must not fall below by the margin."""
    mfu_margin: float = Field(0.10, gt=0, lt=1)
    loss_spike_z: float = Field(8.0, gt=0)
    loss_scale_min: float = Field(1.0, gt=0)
    skipped_batches: int = Field(3, ge=1)
    """Fire when this many batches were skipped (inf/NaN) within `skipped_window_steps` steps."""
    skipped_window_steps: int = Field(100, ge=1)
    restart_storm_count: int = Field(3, ge=2)
    restart_storm_window_s: float = Field(1800.0, gt=0)
    disabled: list[str] = []
    """Causes never raised (e.g. ["finished"])."""
    history_after_s: float = Field(86400.0, gt=0)
    """A run whose newest record is older than this raises nothing new: a backlog the watcher
    reads for the first time is history, not news (what is open still resolves)."""


class NotifierConfig(_Section):
    """One channel. `url` / `secret` / `password` may instead come from the variables their
    `*_env` keys name (recommended: the file then holds no secret)."""

    name: str
    type: Literal["webhook", "slack", "feishu", "dingtalk", "wecom", "email"]
    url: str | None = None
    url_env: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    per_minute: int | None = Field(None, ge=1)
    """Most messages a minute (DingTalk's default: 20)."""
    timeout_s: float = Field(10.0, gt=0)
    retries: int = Field(4, ge=0)
    smtp_host: str | None = None
    smtp_port: int = 587
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    sender: str | None = None
    to: list[str] = []
    ca_file: str | None = None
    """CA bundle that signs the SMTP server's certificate (default: the system's)."""

    @model_validator(mode="after")
    def _complete(self) -> NotifierConfig:
        if self.type == "email":
            if not self.smtp_host or not self.sender or not self.to:
                raise ValueError("an email notifier needs smtp_host, sender and to")
        elif not (self.url or self.url_env):
            raise ValueError(f"a {self.type} notifier needs url or url_env")
        return self

    def resolved(self, key: str) -> str | None:
        """`url`, `secret` or `password`: the value, else the named environment variable's."""
        value = getattr(self, key)
        env = getattr(self, f"{key}_env")
        if value is None and env:
            value = os.environ.get(env)
            if value is None:
                raise ConfigError(f"notifier {self.name!r}: {key}_env: ${env} is not set")
        return value


class RouteConfig(_Section):
    """Where alerts go. Every matching route gets a message (routes are not exclusive)."""

    notifiers: list[str]
    min_severity: Literal["info", "warning", "critical"] = "info"
    causes: list[str] = []
    """Only these causes; empty: all."""
    when: Literal["always", "working_hours", "off_hours"] = "always"
    """`off_hours`: the on-call route, outside working hours and on holidays (policy timezone)."""
    group_wait_s: float = Field(30.0, ge=0)
    repeat_interval_s: float = Field(4 * 3600.0, gt=0)


class AlertsConfig(_Section):
    rules: RulesConfig = RulesConfig()
    notifiers: list[NotifierConfig] = []
    routes: list[RouteConfig] = []

    @model_validator(mode="after")
    def _known_notifiers(self) -> AlertsConfig:
        names = [n.name for n in self.notifiers]
        if len(set(names)) != len(names):
            raise ValueError("notifier names must be unique")
        for route in self.routes:
            for name in route.notifiers:
                if name not in names:
                    raise ValueError(f"route names notifier {name!r}, which no [[alerts.notifiers]] defines")
        return self


class Config(_Section):
    watch: WatchConfig = WatchConfig()
    policy: PolicyConfig = PolicyConfig()
    alerts: AlertsConfig = AlertsConfig()
    formats: list[dict[str, Any]] = []
    """`[[formats]]` tables: user-defined log formats, read by monitor/parsers (passed through here)."""
    path: Path | None = None
    """The file it came from (None: no file, all defaults)."""

    def store_url(self) -> str | None:
        if self.watch.store is None and self.watch.store_env:
            return os.environ.get(self.watch.store_env)
        return self.watch.store


def config_path(explicit: str | os.PathLike | None = None) -> Path | None:
    """The file to read: the explicit one (must exist), $TRAINLEDGER_CONFIG, else the user's
    config folder's trainledger.toml when it exists."""
    chosen = explicit or os.environ.get(ENV_VAR)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            source = "--config" if explicit else f"${ENV_VAR}"
            raise ConfigError(f"{source} {path}: no such file")
        return path
    home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    default = Path(home) / "trainledger" / "trainledger.toml"
    return default if default.is_file() else None


def load_config(explicit: str | os.PathLike | None = None) -> Config:
    """The configuration in force (all defaults when there is no file); ConfigError on a bad one."""
    path = config_path(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return Config.model_validate({**data, "path": path})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {key}: {message}") from None


def parse_work_hours(text: str) -> tuple[time, time]:
    """'HH:MM-HH:MM' → (start, end); ValueError otherwise."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError
    return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
