"""Per-node data slices (seed 000's layout) on two real `torchrun` "nodes" over loopback.

Each node reads only its own slice, the two slices hold different numbers of samples, and the
job is stopped, resumed, and run until the data runs out: both nodes must stop together
(nobody left waiting in a collective), and each slice's samples are trained on once each.
"""

import json

import pytest
from trainer_procs import prepare_sample, read_events, run_nodes, run_train

from trainer.config import DataConfig
from trainer.data import GlobalSampler, load

pytestmark = pytest.mark.slow

SEED = 1234  # the tiny preset's train.seed
SHARE = 4 * 2  # samples per step and slice: micro_bsz × micro_num × one rank per node


def test_two_nodes_each_train_on_their_own_slice_resume_and_stop_together(tmp_path):
    data = prepare_sample(tmp_path / "sliced", "--sample", "60", "--seed", "2", "--slices", "2")
    slice_samples = [load(DataConfig(path=str(data), slice=str(k), seq_len=64)).train.num_samples for k in (0, 1)]
    assert slice_samples[0] != slice_samples[1]  # the case that used to hang or mix data orders
    out = tmp_path / "run"
    common = ("data.valid_every=0", "train.print_every=0", "debug.record_sample_ids=true",
              "data.total_steps=100000", "checkpoint.checkpoint_every=1000")
    nodes = [(f"data.slice={k}",) for k in (0, 1)]
    for launch in (("debug.stop_at_step=2",), ("--resume", "auto")):
        for proc in run_nodes(data, out, *common, *launch, per_node=nodes):
            assert proc.returncode == 0, proc.stderr[-3000:]

    events = read_events(out / "events.jsonl")
    launches = [r for r in events if r["kind"] == "launch"]
    assert [(r["nodes"], r["data_slice"]) for r in launches] == [(2, "0; 1")] * 2
    resume = next(r for r in events if r["kind"] == "resume")
    assert resume["step"] == 2 and resume["restored"]["data_position"]
    steps = min(slice_samples) // SHARE  # the smaller slice ends the run for both nodes
    for node_log in ("events.jsonl", "events.rank1.jsonl"):  # each node's rank 0 records its node's end
        finish = [r for r in read_events(out / node_log) if r["kind"] == "finish"][-1]
        assert finish["reason"] == "data_exhausted" and finish["step"] == steps
        assert finish["data_left"] == {str(k): n - steps * SHARE for k, n in enumerate(slice_samples)}
    for rank, samples in enumerate(slice_samples):  # node k's rank trained on slice k's order, once each
        lines = [json.loads(line) for line in (out / f"sample_ids.rank{rank}.jsonl").read_text().splitlines()]
        assert [line["step"] for line in lines] == list(range(1, steps + 1))
        ids = [i for line in lines for i in line["ids"]]
        assert ids == GlobalSampler(samples, SEED).order[:steps * SHARE].tolist()


def test_a_slice_too_small_for_one_share_is_a_one_line_error(tmp_path):
    data = prepare_sample(tmp_path / "sliced", "--sample", "60", "--seed", "2", "--slices", "2")
    samples = load(DataConfig(path=str(data), slice="0,1", seq_len=64)).train.num_samples
    proc = run_train(data, tmp_path / "run", "data.slice=0,1", f"data.micro_bsz={samples + 1}", "data.micro_num=1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: data.path: {data} batch 0 slice 0,1 holds {samples} packed samples, "
        f"fewer than its share of one global batch ({samples + 1})")
