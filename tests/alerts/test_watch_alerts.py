"""Live, end to end: a real `trainledger watch --config` follows a log another process writes in
real time; the writer stops at 03:00 local time (the policy's timezone is the fixed offset that
makes now 03:00); a real loopback HTTP server gets the stall alert on the on-call route within
the stall threshold + 10 s, then the fault, then "recovered" once writing resumes — with the
Feishu and DingTalk signatures checked on arrival. A dead webhook on another route is retried
with backoff meanwhile, and the watcher keeps ingesting. Every wait polls against a deadline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from monitor.store import list_alerts, list_live_states, open_store
from polling import wait_for
from receiver import Receiver

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
STALL_S, FAULT_S = 4.0, 9.0
WRITER = r"""
import json, sys, time
control, logs = sys.argv[1], sys.argv[2:]
step = 0
while True:
    mode = open(control).read().strip()
    if mode == "exit":
        break
    if mode == "write":
        step += 1
        now = time.time()
        for rank, log in enumerate(logs):
            with open(log, "a") as f:
                f.write(json.dumps({"v": 1, "kind": "step", "run": "night", "attempt": "night-1", "ts": now,
                                    "host": f"node{rank}", "rank": rank, "step": step, "loss": 2.0,
                                    "tokens_per_s": 50000.0}) + "\n")
        with open(control + ".last", "w") as f:
            f.write(f"{step} {now}")
    time.sleep(0.2)
"""


def three_am_offset(now: datetime) -> tuple[str, timezone]:
    """The fixed UTC offset in which `now` is 03:00 (to the minute)."""
    minutes = (3 * 60 - (now.hour * 60 + now.minute)) % 1440
    minutes -= 1440 if minutes > 720 else 0
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}", timezone(timedelta(minutes=minutes))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, url: str, offset: str, store: str) -> None:
    path.write_text(f"""
[watch]
store = "{store}"

[policy]
timezone = "{offset}"
work_hours = "09:30-22:00"
stall_after_s = {STALL_S}
fault_after_s = {FAULT_S}

[[alerts.notifiers]]
name = "oncall-feishu"
type = "feishu"
url = "{url}/feishu/hook"
secret_env = "TL_TEST_FEISHU_SECRET"

[[alerts.notifiers]]
name = "oncall-dingtalk"
type = "dingtalk"
url_env = "TL_TEST_DINGTALK_URL"
secret_env = "TL_TEST_DINGTALK_SECRET"

[[alerts.notifiers]]
name = "team-day"
type = "webhook"
url = "{url}/day"

[[alerts.notifiers]]
name = "dead"
type = "webhook"
url = "{url}/fail/hook"
retries = 2

[[alerts.routes]]
notifiers = ["oncall-feishu", "oncall-dingtalk"]
when = "off_hours"
group_wait_s = 0

[[alerts.routes]]
notifiers = ["team-day"]
when = "working_hours"
group_wait_s = 0

[[alerts.routes]]
notifiers = ["dead"]
causes = ["stalled"]
group_wait_s = 0
""")


def test_a_run_that_stops_at_3am_pages_the_on_call_route_then_recovers(tmp_path):
    secrets = {"feishu": "feishu-signing-secret", "dingtalk": "SECdingtalk-signing-secret"}
    offset, zone = three_am_offset(datetime.now(timezone.utc))
    logs, control = tmp_path / "logs", tmp_path / "control"
    logs.mkdir()
    control.write_text("write")
    store = str(tmp_path / "store.db")
    port = free_port()
    with Receiver(secrets) as receiver:
        config = tmp_path / "trainledger.toml"
        write_config(config, receiver.url, offset, store)
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), TL_TEST_FEISHU_SECRET=secrets["feishu"],
                   TL_TEST_DINGTALK_URL=f"{receiver.url}/dingtalk/robot/send?access_token=tok3n",
                   TL_TEST_DINGTALK_SECRET=secrets["dingtalk"])
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(control), str(logs / "events.jsonl")])
        watcher = subprocess.Popen([TRAINLEDGER, "watch", str(logs), "--config", str(config), "--poll", "1",
                                    "--idle-flush", "1", "--live-every", "0.5", "--metrics-port", str(port)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            def training():
                """the watcher has the run training"""
                try:
                    engine = open_store(store, read_only=True)
                except Exception:  # noqa: BLE001 — not created yet
                    return None
                try:
                    return any(s.run == "night" and s.state == "training" and s.step >= 5
                               for s in list_live_states(engine))
                finally:
                    engine.dispose()
            wait_for(training, timeout=60)

            control.write_text("pause")  # the writer stops…
            last_step, last_ts = wait_for(lambda: settled_last(tmp_path / "control.last"), timeout=10)
            stopped_at = datetime.fromtimestamp(last_ts, zone)
            assert (stopped_at.hour, stopped_at.minute // 10) == (3, 0), stopped_at  # …at 03:0x local time

            def paged(cause: str, path: str = "/feishu/hook"):
                return next((r for r in receiver.at(path) if cause in r.text.splitlines()[0]), None)
            stalled = wait_for(lambda: paged("stalled"), timeout=STALL_S + 15)
            assert stalled.at - last_ts <= STALL_S + 10
            assert f"since step {last_step} " in stalled.text and "[WARNING] night: stalled" in stalled.text
            assert wait_for(lambda: paged("stalled", "/dingtalk/robot/send"), timeout=10)

            scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert f'trainledger_run_last_step{{run="night"}} {float(last_step)}' in scrape
            assert 'trainledger_alerts_open{cause="stalled",run="night"} 1.0' in scrape
            assert 'trainledger_run_tokens_per_second{run="night"} 50000.0' in scrape

            fault = wait_for(lambda: paged("fault"), timeout=FAULT_S + 15)
            assert fault.at - last_ts >= FAULT_S and "silence (no record after step" in fault.text

            control.write_text("write")  # the run comes back
            recovered = wait_for(lambda: [r for r in receiver.at("/feishu/hook") if "[RECOVERED]" in r.text],
                                 timeout=30)
            wait_for(lambda: {"stalled", "fault"} <= {cause for r in receiver.at("/feishu/hook")
                                                      if "[RECOVERED]" in r.text for cause in ("stalled", "fault")
                                                      if cause in r.text.splitlines()[0]}, timeout=30)
            assert recovered[0].at > fault.at
        finally:
            control.write_text("exit")
            writer.wait(timeout=30)
            watcher.send_signal(signal.SIGTERM)
            out, _ = watcher.communicate(timeout=60)
        assert watcher.returncode == 0 and "Traceback" not in out, out

        feishu, dingtalk = receiver.at("/feishu/hook"), receiver.at("/dingtalk/robot/send")
        assert feishu and all(r.signed for r in feishu) and dingtalk and all(r.signed for r in dingtalk)
        assert receiver.at("/day") == []  # the working-hours route: nobody is at work at 03:00

        # the dead webhook: the stall message tried 3 times, waiting longer each time
        tries = [r.at for r in receiver.at("/fail/hook") if r.body["title"] == "[WARNING] night: stalled"]
        assert len(tries) == 3, tries
        assert tries[1] - tries[0] >= 0.9 and tries[2] - tries[1] >= 1.8
        assert stalled.at < tries[-1]  # the on-call page did not wait for the dead channel's retries
        assert "gave up on alerts" in out
        for secret in (*secrets.values(), "tok3n", receiver.url):
            assert secret not in out  # no URL, token or key in the log

    engine = open_store(store, read_only=True)
    alerts = {a.kind: a for a in list_alerts(engine, "night", include_resolved=True)}
    engine.dispose()
    assert {"stalled", "fault"} <= set(alerts) and all(alerts[c].status == "resolved" for c in ("stalled", "fault"))


def settled_last(path: Path, quiet_s: float = 0.5):
    """The writer's last step and its time, once it has written nothing for `quiet_s`."""
    if not path.exists():
        return None
    first = path.read_text()
    time.sleep(quiet_s)
    if path.read_text() != first or len(first.split()) != 2:
        return None  # still writing (or caught mid-write)
    step, ts = first.split()
    return int(step), float(ts)
