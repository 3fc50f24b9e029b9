"""Routing, like Alertmanager: which routes an alert goes to (by severity, cause and time
window in the policy's timezone — outside working hours and on holidays the `off_hours`
route, the on-call one, gets it as well), grouping per run (a wait before a group's first
message gathers what fires together), a repeat interval for what stays open, and per-run
mutes. It decides; the notifiers (monitor/notify/) deliver."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy.engine import Engine

from monitor.accounting import Policy
from monitor.config import SEVERITIES, RouteConfig
from monitor.escape import printable
from monitor.models import Alert
from monitor.notify import Message, Outbox
from monitor.store import claim_notification, list_alerts, muted_runs

log = logging.getLogger("trainledger.alerts")


@dataclass
class Group:
    due: float
    alerts: list[Alert] = field(default_factory=list)


def matches(route: RouteConfig, alert: Alert, policy: Policy, now: float) -> bool:
    if SEVERITIES.index(alert.severity) < SEVERITIES.index(route.min_severity):
        return False
    if route.causes and alert.kind not in route.causes:
        return False
    if route.when == "always":
        return True
    return policy.is_working(now) == (route.when == "working_hours")


def message_of(run: str, alerts: list[Alert], status: str, now: float) -> Message:
    """One message for a run's group of alerts (firing or recovered)."""
    worst = max(alerts, key=lambda a: SEVERITIES.index(a.severity)).severity
    causes = ", ".join(a.kind for a in alerts)
    name = printable(run)
    if status == "resolved":
        title = f"[RECOVERED] {name}: {causes}"
        lines = [f"#{a.id} {a.kind} recovered after {(now - a.ts) / 60:.1f} min (was: {printable(a.message)})"
                 for a in alerts]
    else:
        title = f"[{worst.upper()}] {name}: {causes}"
        lines = [f"#{a.id} {a.kind} ({a.severity}): {printable(a.message)}" for a in alerts]
    return Message(title=title, text="\n".join(lines), severity=worst, run=run,
                   alert_ids=tuple(a.id for a in alerts), status=status,
                   alerts=tuple({"id": a.id, "cause": a.kind, "severity": a.severity, "message": a.message,
                                 "attempt": a.attempt, "ts": a.ts} for a in alerts))


class Router:
    def __init__(self, engine: Engine, routes: list[RouteConfig], outboxes: dict[str, Outbox], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine, self.routes, self.outboxes, self.clock = engine, routes, outboxes, clock
        self.groups: dict[tuple[int, str, str], Group] = {}

    def _enqueue(self, alert: Alert, status: str, policy: Policy, now: float, *, wait: bool = True) -> None:
        for index, route in enumerate(self.routes):
            if matches(route, alert, policy, now):
                due = now + route.group_wait_s if wait else now
                group = self.groups.setdefault((index, alert.run, status), Group(due))
                group.alerts.append(alert)

    def firing(self, alert: Alert, policy: Policy) -> None:
        """An alert this watcher has just raised (and so sends)."""
        now = self.clock()
        claim_notification(self.engine, alert.id, now, 0.0)
        self._enqueue(alert, "firing", policy, now)

    def resolved(self, alert: Alert, policy: Policy) -> None:
        """An alert this watcher has just resolved: its recovery is sent where it was."""
        self._enqueue(alert, "resolved", policy, self.clock())

    def repeat(self, policies: Callable[[str], Policy]) -> None:
        """Open (unacknowledged) alerts whose repeat interval has passed go out again, from the one
        watcher that claims them."""
        now = self.clock()
        for alert in list_alerts(self.engine):
            if alert.status != "open" or alert.notified_ts is None:
                continue
            policy = policies(alert.run)
            intervals = [r.repeat_interval_s for r in self.routes if matches(r, alert, policy, now)]
            if intervals and now - alert.notified_ts >= min(intervals) \
                    and claim_notification(self.engine, alert.id, now, min(intervals)):
                self._enqueue(alert, "firing", policy, now, wait=False)

    def flush(self) -> None:
        """Send every group whose wait is over (muted runs' are dropped, logged)."""
        now = self.clock()
        due = [key for key, group in self.groups.items() if group.due <= now]
        if not due:
            return
        muted = muted_runs(self.engine, now)
        for key in due:
            group = self.groups.pop(key)
            index, run, status = key
            if run in muted:
                log.info("run %s muted: not sending alerts %s", printable(run), [a.id for a in group.alerts])
                continue
            message = message_of(run, group.alerts, status, now)
            for name in self.routes[index].notifiers:
                self.outboxes[name].put(message)
