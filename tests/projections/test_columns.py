"""The fast path (step figures read as columns, the ledger folded from the step columns)
gives the same series and the same ledger as the Records from `load_records`."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.accounting import compute_ledger, compute_ledger_from_columns
from monitor.projections.series import series_from_columns, step_series
from monitor.store import load_records, open_store
from monitor.store.columns import load_step_columns
from tests.projections.conftest import LING_RUN, NANOCHAT_RUN


@pytest.mark.parametrize("run", [NANOCHAT_RUN, LING_RUN])
def test_columns_give_the_series_and_ledger_of_the_records(sample_db, run):
    engine = open_store(sample_db, read_only=True)
    records = load_records(engine, run)
    events = [r for r in records if r.kind != "step"]
    columns = load_step_columns(engine, run)
    slow, fast = step_series(records), series_from_columns(columns, events)
    for name in ("ts", "step", "nodes"):
        assert np.array_equal(getattr(slow, name), getattr(fast, name)), name
    assert np.array_equal(np.diff(slow.attempt) != 0, np.diff(fast.attempt) != 0)
    for name, values in slow.figures.items():
        assert np.array_equal(values, fast.figures[name], equal_nan=True), name
    assert (slow.tokens_logged, slow.total_steps_logged, slow.peak_mem_reported) == \
        (fast.tokens_logged, fast.total_steps_logged, fast.peak_mem_reported)
    assert compute_ledger(records).to_dict() == compute_ledger_from_columns(run, columns, events).to_dict()
    assert slow.has("loss")  # nanochat's smoothed loss, kept in the row's extra, is read too


def test_the_fast_path_reads_both_stores(store_url):
    """On SQLite and on the real PostgreSQL server: the step columns, nanochat's loss kept in its
    rows' extra, and the commands on top of them."""
    from monitor.intake import Intake
    from monitor.sources import Targets
    from tests.projections.conftest import NANOCHAT, cli

    engine = open_store(store_url)
    Intake(engine).ingest(Targets([str(NANOCHAT / "logs")]))
    columns = load_step_columns(engine, NANOCHAT_RUN)
    assert len(columns.ts) == 12_000 and np.isfinite(columns.figures["loss"]).all()
    assert columns.total_steps_logged == 12_000 and columns.attempts == [columns.attempts[0]]
    result = cli("eta", NANOCHAT_RUN, "--db", store_url, "--format", "json")
    assert result.returncode == 0, result.stderr
    engine.dispose()
