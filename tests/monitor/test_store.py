"""The store against real databases: SQLite files and PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

import math

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlmodel import SQLModel

from monitor.models import StepMetric
from monitor.records import Record
from monitor.store import (StoreError, count_records, default_db_path, insert_records, list_runs,
                           load_records, mask_url, open_store, resolve_url)


def _step(step, ts, run="r1", attempt="a1", rank=0, **fields):
    return Record("step", run, attempt, ts, "node1", rank, step, fields)


RECORDS = [
    Record("launch", "r1", "a1", 100.0, "node1", 0, None,
           {"world_size": 2, "hosts": ["node1"], "peak_flops": 1e12, "resume_from": None}),
    _step(1, 101.0, loss=10.91, lr=6e-4, grad_norm=1.5, loss_scale=65536.0, tflops=180.5, tgs=1234.5,
          tokens_per_s=2469.0, mfu=0.33, num_consumed_tokens=2**40, step_time=0.83, fwd_bwd_time=0.7,
          acc=0.01, perplexity=54000.0, inf_nan_skip_batches=0, num_samples_in_batch=8, largest_length=2048,
          peak_mem_bytes=19 * 2**30,
          per_source={"web": {"loss": 10.8, "acc": 0.01, "tokens": 1024}, "code": {"loss": None}}),
    _step(2, 102.0, rank=1, loss=None, mfu="0.3", lr=1, custom={"a": [1, 2]}, grad_norm=float("nan"),
          tflops=float("inf"), num_consumed_tokens=2**70, largest_length=True),
    Record("eval", "r1", "a1", 102.0, "node1", 0, 2, {"val_loss": 9.5, "val_bpb": 2.0388}),
    Record("checkpoint", "r1", "a1", 103.0, "node1", 0, 2,
           {"path": "out/ckpt/step_2", "bytes": 40_000_000, "blocked_s": 0.2, "write_s": 1.4}),
    Record("fault", "r1", "a1", 104.0, "node1", 1, None,
           {"exc_type": "OutOfMemoryError", "message": "CUDA out of memory", "cause": "oom", "step": None}),
    Record("launch", "r1", "a2", 200.0, "node2", 0, None, {"world_size": 4}),
    Record("finish", "r1", "a2", 300.0, "node2", 0, 50, {"reason": "total_steps"}),
]


def _same(a: Record, b: Record) -> bool:
    """Equal, NaN included (NaN != NaN)."""
    def norm(fields):
        return {k: ("NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in fields.items()}
    return (a.kind, a.run, a.attempt, a.ts, a.host, a.rank, a.step, norm(a.fields)) == \
           (b.kind, b.run, b.attempt, b.ts, b.host, b.rank, b.step, norm(b.fields))


def test_records_round_trip_exactly_in_timestamp_order(store):
    shuffled = RECORDS[4:] + RECORDS[:4]
    with store.begin() as conn:
        assert insert_records(conn, shuffled, source_id=None, first_seq=0) == len(RECORDS)
    loaded = load_records(store, "r1")
    assert len(loaded) == len(RECORDS)
    for got, want in zip(loaded, RECORDS):
        assert _same(got, want), (got, want)
    step = loaded[1]
    assert type(step.fields["num_consumed_tokens"]) is int and step.fields["num_consumed_tokens"] == 2**40
    odd = loaded[2].fields
    assert odd["loss"] is None and odd["mfu"] == "0.3" and odd["num_consumed_tokens"] == 2**70
    assert math.isnan(odd["grad_norm"]) and odd["tflops"] == math.inf and odd["largest_length"] is True


def test_step_figures_land_in_their_columns(store):
    with store.begin() as conn:
        insert_records(conn, RECORDS[:2], source_id=None)
    with store.connect() as conn:
        row = conn.execute(select(StepMetric.__table__)).one()
    assert row.loss == 10.91 and row.tgs == 1234.5 and row.num_consumed_tokens == 2**40
    assert row.peak_mem_bytes == 19 * 2**30 and set(row.extra) == {"per_source"}


def test_ties_keep_the_order_they_were_read_in(store):
    same_ts = [_step(i, 5.0, loss=float(i)) for i in range(5)]
    same_ts.insert(2, Record("eval", "r1", "a1", 5.0, "node1", 0, 1, {"val_loss": 1.0}))
    with store.begin() as conn:
        insert_records(conn, same_ts, source_id=7, first_seq=10)
    assert load_records(store, "r1") == same_ts


def test_a_batch_of_many_statements_round_trips_in_order(store):
    """SQLite takes whole chunks of rows as multi-row INSERTs and the rest one by one: a batch
    of several chunks and a remainder, steps and events mixed, comes back whole and in order."""
    batch = []
    for i in range(437):
        batch.append(_step(i, 1000.0 + i, loss=1.0 / (i + 1), tgs=float(i), num_consumed_tokens=i * 4096,
                           per_source={"web": {"tokens": i}}))
        if i % 50 == 0:
            batch.append(Record("eval", "r1", "a1", 1000.0 + i, "node1", 0, i, {"val_loss": float(i)}))
    with store.begin() as conn:
        assert insert_records(conn, batch, source_id=3, first_seq=0) == len(batch)
    assert load_records(store, "r1") == batch


def test_runs_and_attempts_cover_every_batch(store):
    for batch in (RECORDS[2:5], RECORDS[5:], RECORDS[:2],
                  [Record("launch", "r0", "x", 50.0, "h", 0, None, {})]):
        with store.begin() as conn:
            insert_records(conn, batch, source_id=None)
    runs = list_runs(store)
    assert [r.name for r in runs] == ["r1", "r0"]
    assert (runs[0].first_ts, runs[0].last_ts, runs[0].attempts) == (100.0, 300.0, ["a1", "a2"])
    assert count_records(store) == {"step": 2, "launch": 3, "eval": 1, "checkpoint": 1, "fault": 1, "finish": 1}
    assert count_records(store, "r0") == {"launch": 1}


def test_load_records_filters_by_time_and_kind(store):
    with store.begin() as conn:
        insert_records(conn, RECORDS, source_id=None)
    assert [r.kind for r in load_records(store, "r1", since_ts=103.0)] == ["checkpoint", "fault", "launch", "finish"]
    assert [r.kind for r in load_records(store, "r1", kinds={"launch", "finish"})] == ["launch", "launch", "finish"]
    assert [r.step for r in load_records(store, "r1", kinds={"step"})] == [1, 2]
    assert load_records(store, "nope") == []


def test_migrations_build_exactly_the_models(store):
    with store.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_reopening_keeps_the_data_and_skips_migrating(store_url):
    first = open_store(store_url)
    with first.begin() as conn:
        insert_records(conn, RECORDS, source_id=None)
    first.dispose()
    again = open_store(store_url)
    assert len(load_records(again, "r1")) == len(RECORDS)
    again.dispose()


def test_read_only_store_reads_but_never_writes(store_url):
    writer = open_store(store_url)
    with writer.begin() as conn:
        insert_records(conn, RECORDS[:3], source_id=None)
    reader = open_store(store_url, read_only=True)
    assert len(load_records(reader, "r1")) == 3
    with pytest.raises(Exception, match="(?i)read.only|readonly"):
        with reader.begin() as conn:
            insert_records(conn, RECORDS[3:], source_id=None)
    assert len(load_records(writer, "r1")) == 3
    reader.dispose()
    writer.dispose()


def test_sqlite_store_is_in_wal_mode(sqlite_url):
    engine = open_store(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_read_only_open_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no store at .*missing.db"):
        open_store(tmp_path / "missing.db", read_only=True)


def test_unreachable_database_is_one_masked_line():
    with pytest.raises(StoreError) as info:
        open_store("postgresql+psycopg://alice:s3cret-pw@127.0.0.1:1/trainledger")
    message = str(info.value)
    assert "s3cret-pw" not in message and "alice:***@127.0.0.1:1" in message and "\n" not in message


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.delenv("TRAINLEDGER_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "trainledger" / "trainledger.db"
    assert resolve_url(None) == f"sqlite:///{tmp_path}/trainledger/trainledger.db"
    monkeypatch.setenv("TRAINLEDGER_DB", "postgresql+psycopg://u:pw@db/x")
    assert resolve_url(None) == "postgresql+psycopg://u:pw@db/x"
    assert mask_url(None) == "postgresql+psycopg://u:***@db/x"
    assert resolve_url(tmp_path / "a.db") == f"sqlite:///{tmp_path}/a.db"
