"""`trainledger eta`: on synthetic runs with a known step time and fault rate, cut half-way, the
true finish lies inside the projected P10–P90 range in at least 8 of 10 seeded runs.

Half-way, the history holds 1–4 faults; cut at 40 % (0–4 faults) the range held the finish in 6
of these 10 runs, and over 30 seeds in 20 (40 %) and 23 (half-way): a nominal 80 % range is a
little narrow while the history has only a few faults (docs/projections.md)."""

from __future__ import annotations

import json
import random

import pytest

from monitor.accounting import compute_ledger
from monitor.projections.eta import EtaError, estimate_eta
from monitor.records import Record
from tests.projections.conftest import LING_RUN, NANOCHAT_RUN, cli

TOTAL_STEPS = 60_000
STEP_S = 1.0
FAULTS_PER_HOUR = 0.4
MEAN_DOWNTIME_S = 1800.0
CHECKPOINT_EVERY = 500
RECORD_EVERY = 10


def synthetic_run(seed: int) -> tuple[list[Record], float]:
    """A run that faults at FAULTS_PER_HOUR of training (exponential times), is down an
    exponential MEAN_DOWNTIME_S, and resumes from its last checkpoint; and its finish time."""
    rng = random.Random(seed)
    records: list[Record] = []
    ts, step, attempt = 1_700_000_000.0, 0, 0
    while True:
        name = f"a{attempt}"
        records.append(Record("launch", "synthetic", name, ts, fields={"total_steps": TOTAL_STEPS, "nodes": 1,
                                                                       "world_size": 8}))
        ts += 120.0
        if attempt:
            records.append(Record("resume", "synthetic", name, ts, step=step, fields={"restored": {}}))
        until_fault = rng.expovariate(FAULTS_PER_HOUR / 3600)
        alive = 0.0
        while step < TOTAL_STEPS:
            took = sum(rng.gauss(STEP_S, 0.03 * STEP_S) for _ in range(RECORD_EVERY))
            ts += took
            alive += took
            step += RECORD_EVERY
            records.append(Record("step", "synthetic", name, ts, step=step, fields={"step_time": took / RECORD_EVERY}))
            if step % CHECKPOINT_EVERY == 0:
                ts += 2.0
                records.append(Record("checkpoint", "synthetic", name, ts, step=step, fields={"blocked_s": 2.0}))
            if alive > until_fault and step < TOTAL_STEPS:
                records.append(Record("fault", "synthetic", name, ts + 1, step=step, fields={"cause": "exception"}))
                break
        else:
            records.append(Record("finish", "synthetic", name, ts + 1, step=step, fields={"reason": "total_steps"}))
            return records, ts + 1
        step -= step % CHECKPOINT_EVERY
        ts += 1 + rng.expovariate(1 / MEAN_DOWNTIME_S)
        attempt += 1


def cut_while_training(records: list[Record], fraction: float) -> list[Record]:
    """The records up to the step record nearest `fraction` of the run's time."""
    moment = records[0].ts + fraction * (records[-1].ts - records[0].ts)
    last = max(i for i, r in enumerate(records) if r.kind == "step" and r.ts <= moment)
    return records[:last + 1]


def test_the_true_finish_is_inside_the_range_in_at_least_8_of_10_seeded_runs():
    inside = []
    for seed in range(10):
        records, finished = synthetic_run(seed)
        seen = cut_while_training(records, 0.5)
        eta = estimate_eta(seen, compute_ledger(seen), seed=seed)
        assert eta.total_steps == TOTAL_STEPS and not eta.finished
        assert eta.step_time.median == pytest.approx(STEP_S, rel=0.02)
        assert eta.faults.faults == sum(r.kind == "fault" for r in seen)
        inside.append(eta.finish_p10 <= finished <= eta.finish_p90)
    assert sum(inside) >= 8, inside


def test_the_same_seed_gives_the_same_range_and_no_fault_gives_a_stated_assumption():
    records, _ = synthetic_run(3)
    seen = cut_while_training(records, 0.5)
    ledger = compute_ledger(seen)
    first, again = estimate_eta(seen, ledger, seed=7), estimate_eta(seen, ledger, seed=7)
    assert (first.finish_p10, first.finish_p90) == (again.finish_p10, again.finish_p90)
    assert first.finish_p10 < first.finish_p50 < first.finish_p90
    calm = [r for r in seen if r.attempt == seen[-1].attempt]
    eta = estimate_eta(calm, compute_ledger(calm))
    assert eta.faults.faults == 0 and eta.fault_cost_assumed
    with pytest.raises(EtaError, match="total steps"):
        estimate_eta([r for r in calm if r.kind != "launch"], compute_ledger(calm))


def test_eta_command_on_the_sample_runs(sample_db):
    done = cli("eta", NANOCHAT_RUN, "--db", sample_db, "--format", "json")
    assert done.returncode == 0, done.stderr
    nanochat = json.loads(done.stdout)
    assert nanochat["finished"] is True
    # its steps are 0…11999 of 12000: the newest step record is the last step, none to go
    assert (nanochat["done_step"], nanochat["steps_done"], nanochat["remaining_steps"]) == (11_999, 12_000, 0)
    assert "12,000 of 12,000" in cli("eta", NANOCHAT_RUN, "--db", sample_db).stdout
    ling = cli("eta", LING_RUN, "--db", sample_db, "--total-steps", "800000", "--format", "json")
    out = json.loads(ling.stdout)
    assert out["faults"]["count"] == 5 and len(out["faults"]["costs_s"]) == 5
    assert out["remaining_s"]["p10"] < out["remaining_s"]["p50"] < out["remaining_s"]["p90"]
    assert out["remaining_s"]["p10"] >= (800_000 - out["done_step"]) * 4.0  # never below the compute alone
    table = cli("eta", LING_RUN, "--db", sample_db, "--total-steps", "800000")
    for term in ("step time", "fault rate", "cost per fault", "checkpoint stalls", "evals", "P90"):
        assert term in table.stdout
    missing = cli("eta", LING_RUN, "--db", sample_db)
    assert missing.returncode == 2 and "--total-steps" in missing.stderr and "Traceback" not in missing.stderr


def test_a_log_counting_from_step_0_is_done_at_its_last_step_without_a_finish_record(sample_db):
    """nanochat logs steps 0…11999 of 12000: cut before its closing lines, it is still done,
    while a run counting from step 1 (the synthetic one) has its newest step as its count."""
    from monitor.store import load_records, open_store

    records = [r for r in load_records(open_store(sample_db, read_only=True), NANOCHAT_RUN) if r.kind != "finish"]
    eta = estimate_eta(records, compute_ledger(records))
    assert (eta.done_step, eta.steps_done, eta.remaining_steps, eta.finished) == (11_999, 12_000, 0, True)
    unfinished = [r for r in records if r.kind != "step" or r.step < 11_999]
    eta = estimate_eta(unfinished, compute_ledger(unfinished))
    assert (eta.steps_done, eta.remaining_steps, eta.finished) == (11_999, 1, False)
    counted_from_one, _ = synthetic_run(0)
    seen = cut_while_training(counted_from_one, 0.5)
    eta = estimate_eta(seen, compute_ledger(seen))
    assert eta.steps_done == eta.done_step == max(r.step for r in seen if r.kind == "step")
