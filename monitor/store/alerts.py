"""The alerts table and per-run mutes. Raising is an INSERT that the partial unique index
(one unresolved alert per run and kind) lets through once, however many watchers try; every
other change is a conditional UPDATE whose row count says which watcher made it — and so
which one sends the message."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from monitor.models import Alert, AlertMute, Event, StepMetric

_ALERTS = Alert.__table__
_MUTES = AlertMute.__table__
UNRESOLVED = _ALERTS.c.status != "resolved"


def _insert(conn, table):
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def raise_alert(engine: Engine, alert: Alert) -> Alert | None:
    """Store `alert` as open unless one of its run and kind is unresolved already; the stored
    alert (with its id) when this call raised it, None when another had."""
    row = alert.model_dump(exclude={"id"})
    with engine.begin() as conn:
        stmt = _insert(conn, _ALERTS).values(**row).on_conflict_do_nothing(
            index_elements=["run", "kind"], index_where=UNRESOLVED).returning(_ALERTS.c.id)
        new_id = conn.execute(stmt).scalar()
    return None if new_id is None else alert.model_copy(update={"id": new_id})


def resolve_alert(engine: Engine, alert_id: int, now: float) -> bool:
    """Mark it resolved; True for the one caller that did."""
    with engine.begin() as conn:
        done = conn.execute(update(_ALERTS).where(_ALERTS.c.id == alert_id, UNRESOLVED)
                            .values(status="resolved", resolved_ts=now))
    return done.rowcount == 1


def ack_alert(engine: Engine, alert_id: int, now: float) -> Alert | None:
    """Acknowledge an open alert: it stays until resolved, but is not repeated. None if no
    such unresolved alert."""
    with engine.begin() as conn:
        done = conn.execute(update(_ALERTS).where(_ALERTS.c.id == alert_id, UNRESOLVED)
                            .values(status="acknowledged", acked_ts=now))
        if done.rowcount != 1:
            return None
        row = conn.execute(select(_ALERTS).where(_ALERTS.c.id == alert_id)).mappings().one()
    return Alert.model_validate(dict(row))


def claim_notification(engine: Engine, alert_id: int, now: float, repeat_s: float) -> bool:
    """True for the one watcher that may send this open alert now: never sent, or last sent
    `repeat_s` ago (acknowledged alerts are not repeated)."""
    with engine.begin() as conn:
        done = conn.execute(update(_ALERTS).where(
            _ALERTS.c.id == alert_id, _ALERTS.c.status == "open",
            or_(_ALERTS.c.notified_ts.is_(None), _ALERTS.c.notified_ts <= now - repeat_s))
            .values(notified_ts=now))
    return done.rowcount == 1


def list_alerts(engine: Engine, run: str | None = None, *, include_resolved: bool = False,
                oldest_first: bool = False) -> list[Alert]:
    """Alerts, newest first (or oldest first): the unresolved ones, or all."""
    order = (_ALERTS.c.ts, _ALERTS.c.id) if oldest_first else (_ALERTS.c.ts.desc(), _ALERTS.c.id.desc())
    query = select(_ALERTS).order_by(*order)
    if run is not None:
        query = query.where(_ALERTS.c.run == run)
    if not include_resolved:
        query = query.where(UNRESOLVED)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [Alert.model_validate(dict(row)) for row in rows]


def open_alert_counts(engine: Engine) -> dict[tuple[str, str], int]:
    """(run, kind) → unresolved alerts (0 or 1 each, by the unique index)."""
    with engine.connect() as conn:
        rows = conn.execute(select(_ALERTS.c.run, _ALERTS.c.kind, func.count())
                            .where(UNRESOLVED).group_by(_ALERTS.c.run, _ALERTS.c.kind)).all()
    return {(run, kind): count for run, kind, count in rows}


def mute_run(engine: Engine, run: str, until: float) -> None:
    with engine.begin() as conn:
        stmt = _insert(conn, _MUTES).values(run=run, until=until)
        conn.execute(stmt.on_conflict_do_update(index_elements=["run"], set_={"until": stmt.excluded.until}))


def muted_runs(engine: Engine, now: float) -> dict[str, float]:
    """run → muted until, for mutes still in force."""
    with engine.connect() as conn:
        rows = conn.execute(select(_MUTES.c.run, _MUTES.c.until).where(_MUTES.c.until > now)).all()
    return dict(rows)


def median_throughput(engine: Engine, run: str) -> float | None:
    """The run's median tokens/s over its step records (the reference a later run is held to)."""
    column = func.coalesce(StepMetric.__table__.c.tokens_per_s, StepMetric.__table__.c.tgs)
    with engine.connect() as conn:
        values = sorted(v for (v,) in conn.execute(select(column).where(
            and_(StepMetric.__table__.c.run == run, column.is_not(None)))))
    return values[len(values) // 2] if values else None


def launch_configs(engine: Engine) -> list[tuple[str, float, dict]]:
    """(run, ts, launch fields) of every launch record, oldest first: what finds a run's
    comparable predecessor."""
    events = Event.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(events.c.run, events.c.ts, events.c.payload)
                            .where(events.c.kind == "launch").order_by(events.c.ts)).all()
    return [(run, ts, payload or {}) for run, ts, payload in rows]


def recent_step_figures(engine: Engine, run: str, last: int = 20) -> list[tuple[int, float, float | None, float | None]]:
    """(step, ts, tokens/s, MFU) of the run's last `last` step records, newest first (the exporter)."""
    steps = StepMetric.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(steps.c.step, steps.c.ts, func.coalesce(steps.c.tokens_per_s, steps.c.tgs),
                                   steps.c.mfu).where(steps.c.run == run)
                            .order_by(steps.c.ts.desc()).limit(last)).all()
    return [tuple(row) for row in rows]



def newest_step_ts(engine: Engine, run: str, rank: int) -> float | None:
    """When this rank of the run last logged a step, as stored by every watcher."""
    steps = StepMetric.__table__
    with engine.connect() as conn:
        return conn.execute(select(func.max(steps.c.ts)).where(steps.c.run == run, steps.c.rank == rank)).scalar()
