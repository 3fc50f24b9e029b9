"""Routing with the clock in the test's hands and a real loopback receiver: a group's wait
gathers what fires together, an open alert is repeated after its interval but not once
acknowledged, the on-call route only gets what happens off hours, a muted run sends nothing;
and `trainledger alerts` lists, acknowledges and mutes from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from datetime import time as time_of_day
from pathlib import Path

from monitor.accounting import Policy
from monitor.config import NotifierConfig, RouteConfig
from monitor.models import Alert
from monitor.notify import Outbox, channel_of
from monitor.routing import Router
from monitor.store import ack_alert, list_alerts, mute_run, open_store, raise_alert
from polling import wait_for
from receiver import Receiver

DAY = Policy(timezone="UTC", work_start=time_of_day(9), work_end=time_of_day(18))
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc).timestamp()
NIGHT = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc).timestamp()
TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]


def _raise(engine, run: str, kind: str, ts: float, severity: str = "warning") -> Alert:
    return raise_alert(engine, Alert(run=run, ts=ts, kind=kind, severity=severity, message=f"{kind} on {run}"))


def _router(engine, receiver, clock):
    outboxes = {name: Outbox(channel_of(NotifierConfig(name=name, type="webhook", url=f"{receiver.url}/{name}")))
                for name in ("team", "oncall")}
    routes = [RouteConfig(notifiers=["team"], group_wait_s=30, repeat_interval_s=3600),
              RouteConfig(notifiers=["oncall"], when="off_hours", min_severity="critical", group_wait_s=0)]
    return Router(engine, routes, outboxes, clock=lambda: clock[0]), outboxes


def test_grouping_repeats_acknowledgement_the_on_call_window_and_mutes(tmp_path):
    engine = open_store(tmp_path / "store.db")
    clock = [NOON]
    with Receiver() as receiver:
        router, outboxes = _router(engine, receiver, clock)
        stalled, fault = _raise(engine, "ling-1b", "stalled", NOON), _raise(engine, "ling-1b", "fault", NOON, "critical")
        router.firing(stalled, DAY)
        clock[0] += 10
        router.firing(fault, DAY)
        router.flush()
        assert receiver.received == []  # the group's wait (30 s) is not over
        clock[0] = NOON + 31
        router.flush()
        (grouped,) = wait_for(lambda: receiver.at("/team"), timeout=10)
        assert grouped.body["title"] == "[CRITICAL] ling-1b: stalled, fault" and grouped.body["alert_ids"] == [1, 2]
        assert receiver.at("/oncall") == []  # noon: a working hour

        ack_alert(engine, fault.id, clock[0])
        clock[0] = NOON + 3700  # past the repeat interval: the open one again, the acknowledged one not
        router.repeat(lambda run: DAY)
        router.flush()
        repeated = wait_for(lambda: len(receiver.at("/team")) == 2 and receiver.at("/team")[1], timeout=10)
        assert repeated.body["alert_ids"] == [stalled.id]
        router.repeat(lambda run: DAY)  # claimed already: not twice
        router.flush()

        clock[0] = NIGHT + 86400
        night = _raise(engine, "night-run", "fault", clock[0], "critical")
        router.firing(night, DAY)
        router.flush()
        (paged,) = wait_for(lambda: receiver.at("/oncall"), timeout=10)
        assert paged.body["title"] == "[CRITICAL] night-run: fault"

        mute_run(engine, "muted-run", clock[0] + 3600)
        router.firing(_raise(engine, "muted-run", "fault", clock[0], "critical"), DAY)
        clock[0] += 31
        router.flush()
        for outbox in outboxes.values():
            outbox.close()
        assert len(receiver.at("/team")) == 3 and len(receiver.at("/oncall")) == 1  # nothing about muted-run
        assert all("muted-run" not in r.body["title"] for r in receiver.received)
    engine.dispose()


def test_the_alerts_command_lists_acknowledges_and_mutes(tmp_path):
    db = str(tmp_path / "store.db")
    engine = open_store(db)
    first = _raise(engine, "ling-1b", "stalled", NOON)
    _raise(engine, "internlm-20b", "restore_gap", NOON)
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="250")

    def run(*args):
        result = subprocess.run([TRAINLEDGER, "alerts", *args, "--db", db], capture_output=True, text=True,
                                env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout
    listed = run()
    assert "ling-1b" in listed and "internlm-20b" in listed and "stalled on ling-1b" in listed
    assert "internlm-20b" not in run("ling-1b")
    assert run("ack", str(first.id)).strip() == f"acknowledged #{first.id} (stalled on ling-1b)"
    assert [a.status for a in list_alerts(engine, "ling-1b")] == ["acknowledged"]
    assert "run ling-1b muted until" in run("mute", "ling-1b", "--for", "90m")
    assert "run ling-1b muted until" in run("ling-1b")
    engine.dispose()
