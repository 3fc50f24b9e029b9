"""`trainledger watch --metrics-port N`: a Prometheus endpoint. Its collector reads the store at
scrape time (what `status` shows, so a second watcher's runs are there too), per run: the
live state, last step, time of the last record, tokens/s and MFU (medians of the last 20 step
records), goodput and ETTR (the accounting's, up to now), the open alerts by cause, and the
projected finish (P10 / P50 / P90) the watcher keeps (monitor/projections/live.py)."""

from __future__ import annotations

import logging
import statistics
import time
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from monitor.accounting import STATES, Policy, compute_ledger
from monitor.store import list_live_etas, list_live_states, load_records, open_alert_counts
from monitor.store.alerts import recent_step_figures

log = logging.getLogger("trainledger.exporter")
LEDGER_TTL_S = 30.0
"""A run's goodput and ETTR are recomputed at most this often (they need all its records)."""


class StoreCollector(Collector):
    def __init__(self, engine: Engine, policy: Policy, *, clock: Callable[[], float] = time.time) -> None:
        self.engine, self.policy, self.clock = engine, policy, clock
        self._ledgers: dict[str, tuple[float, float, float, float]] = {}
        """run → (computed at, last record ts, goodput, ETTR)"""

    def _ratios(self, run: str, last_record_ts: float, now: float) -> tuple[float, float] | None:
        cached = self._ledgers.get(run)
        if cached is None or cached[1] != last_record_ts or now - cached[0] > LEDGER_TTL_S:
            ledger = compute_ledger(load_records(self.engine, run), self.policy, now=now)
            if ledger is None:
                return None
            cached = self._ledgers[run] = (now, last_record_ts, ledger.goodput, ledger.ettr)
        return cached[2], cached[3]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        state = GaugeMetricFamily("trainledger_run_state", "1 for the run's live state, 0 for the others",
                                  labels=["run", "state"])
        gauges = {name: GaugeMetricFamily(f"trainledger_run_{name}", doc, labels=["run"]) for name, doc in (
            ("last_step", "the newest attempt's last step"),
            ("last_record_timestamp_seconds", "Unix time of the run's last record"),
            ("tokens_per_second", "median tokens/s of the last 20 step records"),
            ("mfu_ratio", "median MFU of the last 20 step records"),
            ("goodput_ratio", "goodput up to now (docs/accounting.md)"),
            ("ettr_ratio", "effective training time ratio up to now"))}
        alerts = GaugeMetricFamily("trainledger_alerts_open", "unresolved alerts by cause", labels=["run", "cause"])
        for live in list_live_states(self.engine):
            run = live.run
            for name in STATES:
                state.add_metric([run, name], 1.0 if live.state == name else 0.0)
            if live.step is not None:
                gauges["last_step"].add_metric([run], live.step)
            gauges["last_record_timestamp_seconds"].add_metric([run], live.last_record_ts)
            recent = recent_step_figures(self.engine, run)
            for name, column in (("tokens_per_second", 2), ("mfu_ratio", 3)):
                values = [row[column] for row in recent if row[column] is not None]
                if values:
                    gauges[name].add_metric([run], statistics.median(values))
            ratios = self._ratios(run, live.last_record_ts, now)
            if ratios is not None:
                gauges["goodput_ratio"].add_metric([run], ratios[0])
                gauges["ettr_ratio"].add_metric([run], ratios[1])
        for (run, cause), count in sorted(open_alert_counts(self.engine).items()):
            alerts.add_metric([run, cause], count)
        finish = GaugeMetricFamily("trainledger_eta_finish_timestamp_seconds",
                                   "Unix time the run is projected to finish, by quantile (trainledger eta)",
                                   labels=["run", "quantile"])
        for eta in list_live_etas(self.engine):
            for quantile, value in (("0.1", eta.finish_p10), ("0.5", eta.finish_p50), ("0.9", eta.finish_p90)):
                finish.add_metric([eta.run, quantile], value)
        yield state
        yield from gauges.values()
        yield alerts
        yield finish


def serve_metrics(engine: Engine, policy: Policy, port: int, host: str = "127.0.0.1"):
    """Start the endpoint in a thread of its own; the server, to shut down."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(engine, policy))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server
