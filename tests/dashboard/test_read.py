"""The store's read layer: M4 downsampling inside the query against a plain-Python M4, a spike
in a long series, redone steps, the light accounting loader, and a dashboard that cannot write."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bench.synthetic_run import COLUMNS, T0, spike_step, write_run
from dashboard_support import LING
from monitor.accounting import compute_ledger
from monitor.store import load_records, open_store
from monitor.store.read import Window, accounting_records, insert_step_rows, step_series

SPIKE_STEPS = 200_000


def _m4_buckets(steps: list[int], values: list[float], buckets: int) -> list[dict]:
    """Plain-Python M4: the steps cut into `buckets` equal step ranges; per non-empty bucket its
    first and last (step, value) and its min and max value."""
    x0, x1 = steps[0], steps[-1]
    width = (x1 - x0 + 1) / buckets
    out: dict[int, dict] = {}
    for step, value in zip(steps, values):
        b = out.setdefault(int((step - x0) / width), {"first": (step, value), "min": value, "max": value})
        b["last"] = (step, value)
        b["min"], b["max"] = min(b["min"], value), max(b["max"], value)
    return list(out.values())


@pytest.fixture(scope="module")
def series_store(tmp_path_factory):
    engine = open_store(str(tmp_path_factory.mktemp("series") / "series.db"))
    yield engine
    engine.dispose()


_counter = iter(range(10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=41, max_size=600),
       gaps=st.lists(st.integers(1, 5), min_size=600, max_size=600), max_points=st.sampled_from([40, 48, 100]))
def test_downsampling_keeps_every_buckets_first_last_min_and_max(series_store, values, gaps, max_points):
    run = f"prop-{next(_counter)}"
    steps = [sum(gaps[:i + 1]) for i in range(len(values))]
    with series_store.begin() as conn:
        insert_step_rows(conn, ("seq", "run", "attempt", "ts", "host", "rank", "step", "loss"),
                         [(i, run, run, T0 + s, "", 0, s, v) for i, (s, v) in enumerate(zip(steps, values))])
    _assert_m4(series_store, run, steps, values, max_points)


def _assert_m4(engine, run: str, steps: list[int], values: list[float], max_points: int) -> None:
    series = step_series(engine, run, ["loss"], max_points=max_points)
    xs, ys = series.points["loss"]
    if len(values) <= max_points:
        assert (xs, ys) == (steps, values) and series.exact
        return
    assert not series.exact and series.rows == len(values) and len(xs) <= max_points
    drawn = list(zip(xs, ys))
    for bucket in _m4_buckets(steps, values, max_points // 4):
        assert bucket["first"] in drawn and bucket["last"] in drawn
        inside = [y for x, y in drawn if bucket["first"][0] <= x <= bucket["last"][0]]
        assert bucket["min"] in inside and bucket["max"] in inside


def test_both_stores_downsample_alike(store):
    """SQLite (a range read per bucket) and PostgreSQL (GROUP BY): the same M4 points."""
    write_run(store, "resumed", 20_000)
    with store.connect() as conn:
        rows = conn.execute(text("SELECT step, loss FROM step_metrics WHERE run = 'resumed' AND NOT "
                                 "(attempt = 'resumed-a1' AND step > 6000) ORDER BY step")).all()
    _assert_m4(store, "resumed", [r[0] for r in rows], [r[1] for r in rows], 400)


@pytest.fixture(scope="module")
def long_run(series_store):
    write_run(series_store, "long", SPIKE_STEPS)
    return series_store


@pytest.mark.parametrize("x", ["step", "time", "tokens"])
def test_a_single_step_spike_in_a_long_series_is_drawn(long_run, x):
    series = step_series(long_run, "long", ["loss", "mfu"], x=x, max_points=2000)
    xs, ys = series.points["loss"]
    assert series.rows == SPIKE_STEPS and len(xs) <= 2000
    assert max(ys) == 50.0
    at = xs[ys.index(50.0)]
    where = {"step": spike_step(SPIKE_STEPS), "time": None, "tokens": spike_step(SPIKE_STEPS) * 4096}[x]
    if where is not None:  # drawn inside its bucket: within 1/500 of the axis
        assert abs(at - where) <= (xs[-1] - xs[0]) / 500


def test_redone_steps_appear_once_with_the_newest_attempts_values(long_run):
    series = step_series(long_run, "long", ["loss"], max_points=2000)
    (redone,) = series.redone
    assert (redone.attempt, redone.from_step, redone.to_step) == ("long-a1", 70_001, 80_000)
    window = step_series(long_run, "long", ["loss"], x="time", window=Window(first_step=79_900, last_step=80_100))
    times, _ = window.points["loss"]
    assert window.exact and len(times) == 201  # once each
    second_attempt = next(first_ts for attempt, first_ts, _ in series.attempts if attempt == "long-a2")
    assert min(times) >= second_attempt


def test_live_refresh_reads_only_the_steps_after_the_last(long_run):
    tail = step_series(long_run, "long", ["loss"], window=Window(first_step=SPIKE_STEPS - 9))
    assert tail.exact and tail.points["loss"][0] == list(range(SPIKE_STEPS - 9, SPIKE_STEPS + 1))
    assert step_series(long_run, "long", ["loss"], window=Window(first_step=SPIKE_STEPS + 1)).rows == 0


def test_the_light_loader_gives_accounting_the_same_ledger(sample_store):
    engine = open_store(sample_store, read_only=True)
    assert compute_ledger(accounting_records(engine, LING)).to_dict() == compute_ledger(load_records(engine, LING)).to_dict()


def test_the_light_loader_streams_the_same_ledger_from_both_stores(store):
    write_run(store, "resumed", 20_000)
    assert compute_ledger(accounting_records(store, "resumed")).to_dict() == \
        compute_ledger(load_records(store, "resumed")).to_dict()


def test_the_dashboards_store_cannot_be_written(store_url, monkeypatch):
    with open_store(store_url).begin() as conn:
        insert_step_rows(conn, COLUMNS[1:9], [(0, "r", "r-1", T0, "", 0, 1, 2.0)])
    monkeypatch.setenv("TRAINLEDGER_DB", store_url)
    from dashboard.data import engine

    db = engine()
    for statement in ("DELETE FROM step_metrics", "INSERT INTO runs (name, first_ts, last_ts) VALUES ('x', 0, 0)",
                      "CREATE TABLE evil (x INTEGER)"):
        with pytest.raises(DBAPIError, match="(?i)read-?only"):
            with db.begin() as conn:
                conn.execute(text(statement))
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM step_metrics")).scalar_one() == 1
