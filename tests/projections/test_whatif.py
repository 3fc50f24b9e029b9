"""`trainledger whatif`: the ChatLM-mini-Chinese guide's table from its own figures, and from a
run as measured (FLOPs formula for the sequence length, the run's node counts)."""

from __future__ import annotations

import json

import pytest

from monitor.accounting import compute_ledger
from monitor.projections.series import step_series
from monitor.projections.whatif import Scenario, WhatIfError, baseline_from_run, given_baseline, project
from monitor.records import Record
from tests.projections.conftest import LING_RUN, cli

GUIDE = ["--step-time", "1.0", "--steps-per-epoch", "183605", "--base-epochs", "5", "--dataset-samples", "10000000"]


def test_the_guide_table_from_its_own_figures():
    """The guide's five rows: 10M/5 epochs at 1.0 s; 3M; 3M at 0.9 s (its lr row); 3 epochs; and
    max_seq_len 192 with the guide's own "+20 % speed" (0.9 × 0.8 = 0.72 s) assumed."""
    result = cli("whatif", *GUIDE, "--samples", "3000000", "--epochs", "3", "--assume-step-time", "0.9",
                         "--scenario", "3M: samples=3e6", "--scenario", "3M lr: sample_frac=0.3, step_time_s=0.9",
                         "--scenario", "all: samples=3e6, epochs=3, step_time_s=0.72", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["rows"]}
    base, chosen = rows["baseline"], rows["what if"]
    assert base["steps_per_epoch"] == 183_605
    assert round(base["hours_per_epoch"]) == 51 and round(base["compute_hours"]) == 255
    assert chosen["steps_per_epoch"] == 55_081
    assert round(chosen["hours_per_epoch"], 1) == 13.8
    assert chosen["compute_hours"] == pytest.approx(41.4, abs=0.15)  # the guide: 13.8 h × 3, rounded first
    assert round(chosen["speedup"], 1) == 6.2
    for name, per_epoch, total, speedup in (("3M", 15.3, 76.5, 3.3), ("3M lr", 13.8, 69, 3.7), ("all", 11.0, 33, 7.7)):
        assert round(rows[name]["hours_per_epoch"], 1) == per_epoch, name
        assert rows[name]["compute_hours"] == pytest.approx(total, abs=0.5), name
        assert round(rows[name]["speedup"], 1) == speedup, name
    table = cli("whatif", *GUIDE, "--samples", "3000000", "--epochs", "3", "--assume-step-time", "0.9")
    assert "55,081" in table.stdout and "6.2×" in table.stdout and "step time 0.9 s assumed" in table.stdout


def _run_with_shape(nodes_by_attempt=(2,)) -> list[Record]:
    records, ts, step = [], 1_700_000_000.0, 0
    for a, nodes in enumerate(nodes_by_attempt):
        records.append(Record("launch", "shaped", f"a{a}", ts, fields={
            "world_size": nodes * 8, "nodes": nodes, "flops_per_token": 6 * 1e9 + 12 * 24 * 2048 * 4096,
            "n_params": 1.1e9, "seq_len": 4096, "total_steps": 10_000, "global_batch_tokens": 4096 * 4 * nodes * 8}))
        for _ in range(50):
            ts += 2.0
            step += 1
            records.append(Record("step", "shaped", f"a{a}", ts, step=step,
                                  fields={"step_time": 2.0, "tgs": 8192.0 * (1 - 0.02 * nodes)}))
        ts += 600
    return records


def test_seq_len_follows_the_flops_formula_and_nodes_the_runs_own_counts():
    records = _run_with_shape((2, 4))
    series = step_series(records)
    base = baseline_from_run(series, compute_ledger(records), num_layers=24, hidden_size=2048, micro_bsz=4)
    rows = project(base, [Scenario("T 2048", seq_len=2048), Scenario("3 nodes", nodes=3), Scenario("8 nodes", nodes=8)])
    dense, attention = 6e9, 12 * 24 * 2048
    expected = 2048 * (dense + attention * 2048) / (4096 * (dense + attention * 4096))
    assert rows[1].step_time_s == pytest.approx(2.0 * expected)
    assert rows[1].steps_per_epoch == 10_000  # a sample is cut shorter: as many steps
    # 3 nodes: between the measured 2 (tgs × 0.96) and 4 (× 0.92): interpolated, relative to 4
    assert rows[2].steps_per_epoch == int(10_000 * 4 / 3)
    assert rows[2].step_time_s == pytest.approx(2.0 / (0.94 / 0.92))
    assert rows[3].step_time_s == pytest.approx(2.0 / 0.95)  # beyond: the stated 95 % per doubling
    assert rows[3].steps_per_epoch == 5_000


def test_a_change_the_baseline_cannot_answer_is_a_clear_error():
    with pytest.raises(WhatIfError, match="micro_bsz"):
        project(given_baseline(1.0, 1000), [Scenario("b", micro_bsz=8)])
    result = cli("whatif", "--step-time", "1", "--steps-per-epoch", "10", "--seq-len", "128")
    assert result.returncode == 2 and "seq_len" in result.stderr and "Traceback" not in result.stderr
    result = cli("whatif", "--step-time", "1", "--steps-per-epoch", "10", "--scenario", "x: speed=3")
    assert result.returncode == 2 and "key=value" in result.stderr


def test_whatif_on_the_ling_run_adds_its_fault_downtime(sample_db):
    result = cli("whatif", LING_RUN, "--db", sample_db, "--total-steps", "600000", "--nodes", "10",
                         "--format", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    base, fewer = out["rows"]
    assert base["step_time_s"] == pytest.approx(4.0, abs=0.01)  # the sample run's 4 s steps
    assert base["wall_hours"] > base["compute_hours"] * 1.1  # 5 faults, ~19 h each, in 634 training h
    assert fewer["steps_per_epoch"] == 600_000 * 15 // 10
    assert any("measured" in note for note in fewer["notes"])
