"""Two watchers following one run (one per node, as a cluster runs them) raise each alert
once and send it once: the store's partial unique index decides, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from monitor.store import list_alerts, open_store
from polling import wait_for
from receiver import Receiver
from test_watch_alerts import REPO, TRAINLEDGER, WRITER, settled_last


def test_two_watchers_of_one_run_raise_and_send_each_alert_once(tmp_path, store_url):
    control = tmp_path / "control"
    control.write_text("write")
    logs = [tmp_path / f"node{rank}" / "events.jsonl" for rank in range(2)]
    for log in logs:
        log.parent.mkdir()
    with Receiver() as receiver:
        config = tmp_path / "trainledger.toml"
        config.write_text(f"""
[policy]
work_hours = "00:00-23:59"
stall_after_s = 4
fault_after_s = 8

[[alerts.notifiers]]
name = "team"
type = "webhook"
url = "{receiver.url}/hook"

[[alerts.routes]]
notifiers = ["team"]
group_wait_s = 0
""")
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(control), *map(str, logs)])
        watchers = [subprocess.Popen([TRAINLEDGER, "watch", str(log.parent), "--db", store_url, "--config", str(config),
                                      "--poll", "1", "--idle-flush", "1", "--live-every", "0.3"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                    for log in logs]
        try:
            wait_for(lambda: (last := settled_last(tmp_path / "control.last", quiet_s=0)) and last[0] >= 15,
                     timeout=60)
            control.write_text("pause")
            wait_for(lambda: settled_last(tmp_path / "control.last"), timeout=10)

            def titles():
                return [r.body["title"] for r in receiver.at("/hook")]
            wait_for(lambda: "[CRITICAL] night: fault" in titles(), timeout=60)
            # both watchers go on evaluating the run for a few ticks more: nothing new may come
            control.write_text("write")
            wait_for(lambda: sum(t.startswith("[RECOVERED]") for t in titles() for _ in t.split(", ")) >= 2,
                     timeout=60)
        finally:
            control.write_text("exit")
            writer.wait(timeout=30)
            for watcher in watchers:
                watcher.send_signal(signal.SIGTERM)
            outs = [watcher.communicate(timeout=60)[0] for watcher in watchers]
    assert all(w.returncode == 0 for w in watchers) and not any("Traceback" in out for out in outs), outs
    sent = [(title.split()[0], cause) for title in titles() for cause in title.split(": ")[1].split(", ")]
    assert sorted(sent) == [("[CRITICAL]", "fault"), ("[RECOVERED]", "fault"), ("[RECOVERED]", "stalled"),
                            ("[WARNING]", "stalled")], titles()
    engine = open_store(store_url, read_only=True)
    alerts = list_alerts(engine, include_resolved=True)
    engine.dispose()
    assert sorted(a.kind for a in alerts) == ["fault", "stalled"] and {a.status for a in alerts} == {"resolved"}
    raised = [line for out in outs for line in out.splitlines() if " alert #" in line and "recovered" not in line]
    assert len(raised) == 2, raised  # one watcher logged each raise; the other found it open
