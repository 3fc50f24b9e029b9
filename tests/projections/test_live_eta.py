"""The watcher's live ETA (monitor/projections/live.py): on a run ingested from a JSONL log, a
`live_etas` row with the run's steps and an ordered range; none for a run that does not say its
total; at most one projection per `eta_every_s`; and the metrics endpoint serving it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.exporter import serve_metrics
from monitor.intake import Intake
from monitor.live import LiveRuns
from monitor.projections.live import LiveEtas
from monitor.sources import Targets
from monitor.store import list_live_etas, list_live_states
from tests.projections.conftest import cli

START = 1_795_000_000.0
STEPS = 200
STEP_S = 1.5


def write_log(path: Path, run: str, total_steps: int | None) -> float:
    """A run launched at START that has stepped STEPS times at about STEP_S; the time of its last record."""
    launch = {"v": 1, "kind": "launch", "run": run, "attempt": "a1", "ts": START, "host": "node1", "rank": 0,
              "world_size": 8, "nodes": 1, "hosts": ["node1"], "device": "cuda", "peak_flops": 1e15,
              "flops_per_token": 6e9, "config_digest": "0", "data_batch": "0", "data_slice": None, "resume_from": None}
    if total_steps is not None:
        launch["total_steps"] = total_steps
    lines = [launch]
    ts = START + 30.0
    for step in range(1, STEPS + 1):
        took = STEP_S + (0.05 if step % 2 else -0.05)
        ts += took
        lines.append({"v": 1, "kind": "step", "run": run, "attempt": "a1", "ts": ts, "host": "node1", "rank": 0,
                      "step": step, "loss": 5.0, "step_time": took})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return ts


def watched(engine, tmp_path: Path, total_steps: int | None, *, run: str = "live-eta") -> tuple[LiveEtas, float]:
    """The run ingested as the watcher would, followed by LiveRuns, a few seconds after its last step."""
    last = write_log(tmp_path / f"{run}.jsonl", run, total_steps)
    now = last + 5.0
    live = LiveRuns(engine, clock=lambda: now)
    etas = LiveEtas(engine, live, clock=lambda: now)
    Intake(engine).ingest(Targets([str(tmp_path / f"{run}.jsonl")]))
    live.stale.add(run)  # as a watcher started on a store already holding the run reads it
    live.tick()
    return etas, now


def test_the_listener_stores_each_live_runs_finish_with_its_range(store, tmp_path):
    etas, now = watched(store, tmp_path, 1000)
    assert [s.state for s in list_live_states(store)] == ["training"]
    etas.tick()
    (row,) = list_live_etas(store)
    assert row.run == "live-eta"
    assert (row.done_steps, row.total_steps, row.finished) == (STEPS, 1000, False)
    assert row.step_time_s == pytest.approx(STEP_S, abs=0.06)
    assert now < row.finish_p10 <= row.finish_p50 <= row.finish_p90
    assert row.finish_p50 - now >= (1000 - STEPS) * (STEP_S - 0.06)  # the steps to go at the step time, at least
    assert row.updated == now


def test_status_shows_each_live_runs_projected_finish(sqlite_url, tmp_path):
    from monitor.store import open_store

    engine = open_store(sqlite_url)
    etas, _ = watched(engine, tmp_path, 1000)
    etas.tick()
    (row,) = list_live_etas(engine)
    engine.dispose()
    result = cli("status", "--db", sqlite_url)
    assert result.returncode == 0, result.stderr
    assert "ETA (P50)" in result.stdout
    finish = datetime.fromtimestamp(row.finish_p50, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert finish in result.stdout


def test_a_run_that_does_not_say_its_total_gets_no_row_and_no_error(store, tmp_path, caplog):
    etas, _ = watched(store, tmp_path, None)
    etas.tick()
    assert list_live_etas(store) == []
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_it_projects_at_most_every_eta_every_s(sqlite_url, tmp_path):
    from monitor.store import open_store

    engine = open_store(sqlite_url)
    etas, now = watched(engine, tmp_path, 1000)
    etas.tick()
    first = list_live_etas(engine)[0].updated
    etas.clock = lambda: now + 30.0  # under a minute later: the row stays
    etas.tick()
    assert list_live_etas(engine)[0].updated == first
    etas.clock = lambda: now + 61.0
    etas.tick()
    assert list_live_etas(engine)[0].updated == now + 61.0
    engine.dispose()


def test_the_metrics_endpoint_serves_the_projected_finish(sqlite_url, tmp_path):
    from monitor.store import open_store

    engine = open_store(sqlite_url)
    etas, _ = watched(engine, tmp_path, 1000)
    etas.tick()
    (row,) = list_live_etas(engine)
    server = serve_metrics(engine, etas.live.policy, 0)
    try:
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30).text
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
    samples = {(s.name, s.labels.get("run"), s.labels.get("quantile")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    for quantile, finish in (("0.1", row.finish_p10), ("0.5", row.finish_p50), ("0.9", row.finish_p90)):
        assert samples[("trainledger_eta_finish_timestamp_seconds", "live-eta", quantile)] == pytest.approx(finish)
