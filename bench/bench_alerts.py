"""Alerts benchmark (issue 13), three parts:

1. Stall to page: a real `trainledger watch --config` follows a JSONL log a thread writes every
   0.2 s; the writer stops; time from its last step record to the stall alert arriving at a
   loopback webhook. Target: <= the stall threshold + 5 s.
2. The nanochat sample run (sample_logs/nanochat_2gpu) replayed at its real step rate, time
   compressed: the detectors and the live ledger read record timestamps, so the records are fed
   as fast as they fold, each evaluated at its own time and at the watcher's 5 s ticks in
   between (what a live watcher would see). Time from the throughput drop to its alert, and
   every other alert raised over the run. Target: within 5 min of run time, 0 false alerts.
3. Detector cost per ingested step record: `Intake.ingest` of one synthetic run into a fresh
   SQLite store with the watcher's live accounting alone, and with the alerts listener after
   it, alternating rounds, side by side. Target: <= 10 % more.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import time as time_of_day
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from monitor.accounting import LiveLedger, Policy
from monitor.alerting import Alerter
from monitor.config import RulesConfig
from monitor.detectors import RunDetectors
from monitor.intake import Intake
from monitor.live import Listeners, LiveRuns
from monitor.sources import Targets
from monitor.store import list_runs, load_records, open_store

REPO = Path(__file__).resolve().parents[1]
TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
ALL_DAY = Policy(work_start=time_of_day(0), work_end=time_of_day(23, 59, 59, 999999))


class _Hook:
    """A loopback webhook that notes when each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.arrivals.append((time.time(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stall_round(work: Path, stall_s: float, live_every: float) -> float:
    """Seconds from the last step record to the stall alert's arrival."""
    hook = _Hook()
    logs = work / "logs"
    logs.mkdir(parents=True)
    config = work / "trainledger.toml"
    config.write_text(f'[policy]\nwork_hours = "00:00-23:59"\nstall_after_s = {stall_s}\n'
                      f'[[alerts.notifiers]]\nname = "hook"\ntype = "webhook"\n'
                      f'url = "http://127.0.0.1:{hook.server.server_port}/hook"\n'
                      f'[[alerts.routes]]\nnotifiers = ["hook"]\ngroup_wait_s = 0\n')
    watcher = subprocess.Popen([TRAINLEDGER, "watch", str(logs), "--db", str(work / "store.db"), "--config",
                                str(config), "--live-every", str(live_every)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        last_ts = 0.0
        with open(logs / "events.jsonl", "a") as log:
            for step in range(1, 41):  # 8 s of steps
                last_ts = time.time()
                log.write(json.dumps({"v": 1, "kind": "step", "run": "bench", "attempt": "a1", "ts": last_ts,
                                      "step": step, "loss": 2.0, "tokens_per_s": 5e4}) + "\n")
                log.flush()
                time.sleep(0.2)
        deadline = time.time() + stall_s + 60
        while time.time() < deadline:
            pages = [at for at, body in hook.arrivals if "stalled" in body["title"]]
            if pages:
                return pages[0] - last_ts
            time.sleep(0.05)
        raise RuntimeError("no stall alert within a minute of the threshold")
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=60)
        hook.close()


def _nanochat(work: Path) -> list:
    engine = open_store(work / "nanochat.db")
    Intake(engine).ingest(Targets([REPO / "sample_logs" / "nanochat_2gpu" / "logs"]))
    records = load_records(engine, list_runs(engine)[0].name)
    engine.dispose()
    return records


def replay_alerts(records: list, rules: RulesConfig, policy: Policy, tick_s: float = 5.0) -> list[tuple]:
    """(cause, step, raised at, message) of each alert as a live watcher would raise it."""
    detectors, live = RunDetectors(rules), LiveLedger(policy)
    raised: list[tuple] = []
    open_now: set[str] = set()

    def judge(now: float, step: int | None) -> None:
        found = {f.cause: f for f in detectors.findings(live, now)}
        for cause in found.keys() - open_now:
            raised.append((cause, step, now, found[cause].message))
        open_now.clear()
        open_now.update(found)
    for record, following in zip(records, records[1:] + [None]):
        detectors.add(record)
        live.add(record)
        judge(record.ts, record.step)
        if following is not None:
            tick = record.ts + tick_s
            while tick < following.ts:
                judge(tick, record.step)
                tick += tick_s
    return raised


def _ingest_round(records_file: Path, work: Path, with_alerts: bool) -> float:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    engine = open_store(work / "store.db")
    live = LiveRuns(engine, ALL_DAY)
    listeners = Listeners([live, Alerter(engine, live)] if with_alerts else [live])
    intake = Intake(engine, live=listeners)
    started = time.process_time()
    intake.ingest(Targets([records_file]))
    listeners.tick()
    spent = time.process_time() - started
    engine.dispose()
    return spent


def _synthetic_log(path: Path, steps: int) -> None:
    """One step a second up to now (so the run is live news, not history), with the figures the
    detectors read."""
    start = time.time() - steps
    with open(path, "w") as log:
        log.write(json.dumps({"v": 1, "kind": "launch", "run": "cost", "attempt": "a1", "ts": start,
                              "world_size": 8}) + "\n")
        for step in range(1, steps + 1):
            log.write(json.dumps({"v": 1, "kind": "step", "run": "cost", "attempt": "a1", "ts": start + step,
                                  "step": step, "loss": 2.0 + (step % 7) / 100, "tokens_per_s": 5e4 + step % 13,
                                  "mfu": 0.4, "loss_scale": 65536.0}) + "\n")


def main(quick: bool = False) -> str:
    logging.getLogger("trainledger").setLevel(logging.ERROR)  # the synthetic logs' warnings
    work = Path(tempfile.mkdtemp(prefix="bench_alerts_"))
    lines = ["## Alerts (issue 13)", "",
             f"`python -m bench alerts{' --quick' if quick else ''}` (bench/bench_alerts.py), on this 2-core "
             "machine shared with other work.", ""]
    try:
        stall_s = 5.0
        for live_every in (5.0, 1.0):
            rounds = [_stall_round(work / f"stall_{live_every}_{i}", stall_s, live_every)
                      for i in range(1 if quick else 3)]
            lines.append(f"- **Stall to page** (`watch --live-every {live_every:g}`, stall threshold {stall_s:g} s, "
                         f"real processes, loopback webhook): {', '.join(f'{r:.1f}' for r in rounds)} s "
                         f"from the last step record to the alert's arrival (target <= {stall_s + 5:g} s).")

        records = _nanochat(work)
        steps = {r.step: r for r in records if r.kind == "step"}
        drop_ts = steps[4999].ts  # step 5000 is the first slow one
        wall = time.perf_counter()
        raised = replay_alerts(records, RulesConfig(), ALL_DAY)
        wall = time.perf_counter() - wall
        lines.append(f"- **The nanochat run replayed** ({len(steps):,} steps, {(records[-1].ts - records[0].ts) / 3600:.1f} h "
                     f"of run time, replayed in {wall:.1f} s: time compressed, each record judged at its own "
                     f"timestamp and at 5 s ticks between records, as the watcher does). Alerts raised:")
        for cause, step, at, message in raised:
            lines.append(f"  - `{cause}` at step {step}, {(at - drop_ts) / 60:+.1f} min from the drop: {message}")
        drops = [at - drop_ts for cause, _s, at, _m in raised if cause == "throughput"]
        false = [c for c, _s, at, _m in raised if c not in ("throughput", "mfu", "finished", "stalled")
                 or c in ("throughput", "mfu") and at < drop_ts]
        lines.append(f"  - throughput drop to alert: {drops[0] / 60:.2f} min of run time (target <= 5 min; the "
                     f"persistence rule is max(5 min, 20 steps)); false figure alerts: {len(false)}.")

        steps_n = 20_000 if quick else 100_000
        log = work / "cost" / "events.jsonl"
        log.parent.mkdir()
        _synthetic_log(log, steps_n)
        base, alerts = [], []
        for i in range(2 if quick else 3):
            base.append(_ingest_round(log, work / "cost_db", with_alerts=False))
            alerts.append(_ingest_round(log, work / "cost_db", with_alerts=True))
        ratios = [a / b for a, b in zip(alerts, base)]
        lines.append(f"- **Detector cost** ({steps_n:,} JSONL step records through `Intake.ingest` into SQLite, CPU "
                     f"time, {len(base)} alternating rounds): live accounting alone "
                     f"{statistics.median(base) / steps_n * 1e6:.1f} µs a record, with the alerts listener "
                     f"{statistics.median(alerts) / steps_n * 1e6:.1f} µs: ×{statistics.median(ratios):.3f} "
                     f"(rounds {', '.join(f'{r:.3f}' for r in ratios)}; target <= ×1.10).")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
