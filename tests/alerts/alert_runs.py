"""Records of runs with known answers, built in memory (the nanochat sample run is read from
sample_logs/ by the real intake)."""

from __future__ import annotations

from pathlib import Path

from monitor.intake import Intake
from monitor.records import Record
from monitor.sources import Targets
from monitor.store import list_runs, load_records, open_store

REPO = Path(__file__).resolve().parents[2]
NANOCHAT = REPO / "sample_logs" / "nanochat_2gpu" / "logs"
START = 1_760_000_000.0


def nanochat_records(tmp_path) -> list[Record]:
    engine = open_store(tmp_path / "nanochat.db")
    Intake(engine).ingest(Targets([NANOCHAT]))
    (run,) = list_runs(engine)
    records = load_records(engine, run.name)
    engine.dispose()
    return records


def step(step: int, ts: float, attempt: str = "a1", run: str = "run", **fields) -> Record:
    return Record(kind="step", run=run, attempt=attempt, ts=ts, step=step,
                  fields={"tokens_per_s": 50_000.0, "mfu": 0.4, "loss": 2.0, **fields})


def event(kind: str, ts: float, attempt: str = "a1", run: str = "run", step: int | None = None, **fields) -> Record:
    return Record(kind=kind, run=run, attempt=attempt, ts=ts, step=step, fields=fields)


def jitter(i: int) -> float:
    """A deterministic ±2 % wobble."""
    return 1.0 + 0.02 * (((i * 7919) % 11) - 5) / 5
