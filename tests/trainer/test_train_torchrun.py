"""A real `torchrun --nproc-per-node 2` run of the tiny preset on gloo."""

import json

import pytest

import eventschema
from trainer_procs import read_events, run_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_rank_run(sample_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    proc = run_train(sample_data, out, "debug.record_sample_ids=true", nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_event_log_validates_against_the_schema(two_rank_run):
    out, _ = two_rank_run
    records = eventschema.validate_lines((out / "events.jsonl").read_text().splitlines(), source="events.jsonl")
    assert {r["rank"] for r in records} == {0}
    assert len({r["run"] for r in records}) == 1 and len({r["attempt"] for r in records}) == 1


def test_launch_then_steps_then_finish(two_rank_run):
    out, _ = two_rank_run
    records = read_events(out / "events.jsonl")
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "launch" and kinds[-1] == "finish"
    assert set(kinds[1:-1]) <= {"step", "eval"} and "eval" in kinds
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps == list(range(1, 101))
    assert records[0]["world_size"] == 2 and records[0]["resume_from"] is None
    assert records[-1] == records[-1] | {"step": 100, "reason": "total_steps"}


def test_loss_falls(two_rank_run):
    out, _ = two_rank_run
    losses = [r["loss"] for r in read_events(out / "events.jsonl") if r["kind"] == "step"]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


def test_consumed_tokens_are_steps_times_global_batch_tokens(two_rank_run):
    out, _ = two_rank_run
    records = read_events(out / "events.jsonl")
    launch = records[0]
    global_tokens = 4 * 2 * 2 * 64  # micro_bsz × micro_num × world size × seq_len of the tiny preset
    assert launch["global_batch_tokens"] == global_tokens
    for r in records:
        if r["kind"] == "step":
            assert r["num_consumed_tokens"] == r["step"] * global_tokens


def test_step_records_carry_every_seed_002_figure(two_rank_run):
    out, _ = two_rank_run
    step = next(r for r in read_events(out / "events.jsonl") if r["kind"] == "step")
    required = set(eventschema.schema()["$defs"]["step"]["properties"])
    assert required <= set(step), required - set(step)
    assert set(step["per_source"]) == {"code", "recipes", "stories"}
    assert sum(s["tokens"] for s in step["per_source"].values()) > 0
    assert step["tokens_per_s"] == pytest.approx(2 * step["tgs"])


def test_every_sample_is_trained_once_across_ranks(two_rank_run):
    out, _ = two_rank_run
    ids_by_rank = {}
    for rank in (0, 1):
        lines = [json.loads(line) for line in (out / f"sample_ids.rank{rank}.jsonl").read_text().splitlines()]
        assert [line["step"] for line in lines] == list(range(1, 101))
        ids_by_rank[rank] = [i for line in lines for i in line["ids"]]
    everything = ids_by_rank[0] + ids_by_rank[1]
    assert len(everything) == len(set(everything)) == 100 * 16
    assert not set(ids_by_rank[0]) & set(ids_by_rank[1])


def test_summary_line_and_event_path_on_stdout(two_rank_run):
    out, proc = two_rank_run
    assert "step 100/100 loss" in proc.stdout
    assert f"events: {out}/events.jsonl" in proc.stdout


def test_two_ranks_train_like_one_process_on_the_same_global_batch(sample_data, tmp_path):
    """Two ranks × 2 micro-batches and one process × 4 see the same 16 samples a step; the
    gradient is the mean over all their targets either way, so the runs agree."""
    common = ("data.total_steps=6", "data.valid_every=0", "train.print_every=0")
    one = run_train(sample_data, tmp_path / "one", *common, "data.micro_num=4")
    two = run_train(sample_data, tmp_path / "two", *common, "data.micro_num=2", nproc=2)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    losses = [[r["loss"] for r in read_events(out / "events.jsonl") if r["kind"] == "step"]
              for out in (tmp_path / "one", tmp_path / "two")]
    assert len(losses[0]) == 6 and losses[0][0] == pytest.approx(losses[1][0], rel=1e-6)
    assert losses[1] == pytest.approx(losses[0], rel=2e-6)
