"""The Prometheus endpoint, scraped over HTTP: the nanochat sample run's figures as the store
and the accounting give them."""

from __future__ import annotations

import re
import time
from datetime import time as time_of_day

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.accounting import Policy, compute_ledger
from monitor.exporter import serve_metrics
from monitor.intake import Intake
from monitor.live import LiveRuns
from monitor.models import Alert
from monitor.sources import Targets
from monitor.store import list_runs, load_records, open_store, raise_alert
from alert_runs import NANOCHAT, REPO


def test_the_endpoint_shows_each_runs_state_step_throughput_ratios_and_open_alerts(tmp_path):
    engine = open_store(tmp_path / "store.db")
    Intake(engine).ingest(Targets([NANOCHAT]))
    (run,) = [r.name for r in list_runs(engine)]
    policy = Policy(work_start=time_of_day(0), work_end=time_of_day(23, 59, 59, 999999))
    live = LiveRuns(engine, policy)
    live.stale.add(run)
    live.tick()
    raise_alert(engine, Alert(run=run, ts=time.time(), kind="throughput", message="35k below 65k"))
    server = serve_metrics(engine, policy, 0)
    try:
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30).text
    finally:
        server.shutdown()
        server.server_close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **labels) -> float:
        return samples[(name, tuple(sorted({"run": run, **labels}.items())))]
    records = load_records(engine, run)
    steps = [r for r in records if r.kind == "step"]
    assert value("trainledger_run_state", state="waiting") == 1.0  # finished: waiting for the next launch
    assert value("trainledger_run_state", state="training") == 0.0
    assert value("trainledger_run_last_step") == 11999
    assert value("trainledger_run_last_record_timestamp_seconds") == pytest.approx(records[-1].ts)
    assert 33_000 < value("trainledger_run_tokens_per_second") < 36_000  # after the drop
    assert value("trainledger_run_mfu_ratio") == pytest.approx(0.032, abs=0.002)
    ledger = compute_ledger(records, policy, now=time.time())
    assert value("trainledger_run_goodput_ratio") == pytest.approx(ledger.goodput, rel=1e-3)
    assert value("trainledger_run_ettr_ratio") == pytest.approx(ledger.ettr, rel=1e-3)
    assert value("trainledger_alerts_open", cause="throughput") == 1.0
    assert len(steps) == 12000
    engine.dispose()
    exported = {family.name for family in text_string_to_metric_families(text)}
    for sample in ("grafana-dashboard.json", "prometheus-alerts.yml"):  # the docs' samples use what is served
        used = set(re.findall(r"trainledger_[a-z_]+", (REPO / "docs" / sample).read_text()))
        assert used and used <= exported, (sample, used - exported)
