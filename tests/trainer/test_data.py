"""Packed samples, document boundaries, the world-size-independent sampler and per-node slices."""

import numpy as np
import pytest
import torch

from trainer.config import ConfigError, DataConfig
from trainer.data import IGNORE, DataGroups, GlobalSampler, load
from trainer.prepare import EOS, prepare


@pytest.fixture
def prepared(tmp_path):
    src = tmp_path / "docs.jsonl"
    import json
    src.write_text("".join(json.dumps({"text": "ab" * (i % 9 + 1)}) + "\n" for i in range(200)))
    out = tmp_path / "out"
    prepare([src], out, batches=2, slices=2, valid_ratio=0.1, seed=0)
    return out


def test_samples_tile_the_token_stream(prepared):
    data = load(DataConfig(path=str(prepared), batch="0", seq_len=16))
    stream = np.concatenate([np.fromfile(prepared / "batch_0" / f"slice_{k}" / "docs.bin", dtype=np.uint16)
                             for k in (0, 1)])
    assert data.train.num_samples == (len(stream) - 1) // 16
    batch = data.train.batch(np.array([0, 3]))
    assert batch.inputs[1].tolist() == stream[48:64].tolist()
    assert batch.targets.shape == batch.inputs.shape == batch.segments.shape == (2, 16)


def test_targets_across_a_document_boundary_are_ignored_unless_packed_into_one(prepared):
    separate = load(DataConfig(path=str(prepared), seq_len=32)).train.batch(np.arange(4))
    together = load(DataConfig(path=str(prepared), seq_len=32, pack_sample_into_one=True)).train.batch(np.arange(4))
    boundary = separate.inputs == EOS
    assert boundary.any()
    assert (separate.targets[boundary] == IGNORE).all()
    assert (together.targets != IGNORE).all() and together.segments is None
    assert separate.num_documents == 4 + int((separate.segments[:, 1:] != separate.segments[:, :-1]).sum())
    assert 1 <= separate.largest_length <= 32


def test_slice_selects_only_that_slice(prepared):
    whole = load(DataConfig(path=str(prepared), batch="1", seq_len=8)).train.num_samples
    parts = [load(DataConfig(path=str(prepared), batch="1", slice=str(k), seq_len=8)).train.num_samples
             for k in (0, 1)]
    assert abs(sum(parts) - whole) <= 1 and all(parts)


def test_a_node_reading_two_slices_reads_each_slice_s_own_samples(prepared):
    """A node that took over a lost node's slice: its samples are the two slices' samples, each
    whole (none spans the two), and a micro-batch may take from both."""
    one = {k: load(DataConfig(path=str(prepared), batch="1", slice=str(k), seq_len=8)).train for k in (0, 1)}
    both = load(DataConfig(path=str(prepared), batch="1", slice="1,0", seq_len=8)).train
    assert both.counts() == {"1": one[1].num_samples, "0": one[0].num_samples}
    ids = np.array([one[1].num_samples - 1, one[1].num_samples, one[1].num_samples + 2])  # across the seam
    assert both.locate(ids)[0] == ["1", "0", "0"] and both.locate(ids)[1].tolist() == [one[1].num_samples - 1, 0, 2]
    batch = both.batch(ids)
    parts = [one[1].batch(ids[:1]), one[0].batch(np.array([0, 2]))]
    assert torch.equal(batch.inputs, torch.cat([b.inputs for b in parts]))
    assert torch.equal(batch.targets, torch.cat([b.targets for b in parts]))
    assert batch.num_documents == sum(b.num_documents for b in parts)


def test_min_length_drops_short_documents(prepared):
    full = load(DataConfig(path=str(prepared), seq_len=8)).train
    kept = load(DataConfig(path=str(prepared), seq_len=8, min_length=10)).train
    assert (kept.shards.doc_len >= 10).all() and kept.num_samples < full.num_samples


def test_sampler_position_is_world_size_independent():
    """Train 3 steps on 4 ranks, resume on 2 ranks, then 3 ranks: no sample twice, none skipped."""
    micro = 2
    seen, state = [], None
    for world, steps in ((4, 3), (2, 5), (3, 4)):
        sampler = GlobalSampler(500, seed=9)
        if state is not None:
            sampler.load_state_dict(state)
        for _ in range(steps):
            cursor = sampler.cursor
            parts = []
            for rank in range(world):
                replica = GlobalSampler(500, seed=9)
                replica.load_state_dict({"cursor": cursor, "seed": 9, "num_samples": 500})
                parts.append(replica.take(micro * world, rank, world))
            sampler.take(micro * world, 0, world)
            seen += [i for part in parts for i in part]
        state = sampler.state_dict()
    assert len(seen) == len(set(seen)) == 2 * (4 * 3 + 2 * 5 + 3 * 4)
    assert sorted(seen) == sorted(GlobalSampler(500, seed=9).order[:len(seen)])


def test_sampler_refuses_a_position_from_another_order():
    with pytest.raises(ValueError, match="another data order"):
        GlobalSampler(100, seed=1).load_state_dict(GlobalSampler(100, seed=2).state_dict())


def test_sampler_reports_exhaustion():
    sampler = GlobalSampler(10, seed=0)
    sampler.take(8, 0, 1)
    assert sampler.remaining() == 2
    with pytest.raises(IndexError):
        sampler.take(8, 0, 1)


# ---- per-node slices: ranks reading one slice form a group ------------------------------------

def test_ranks_reading_one_slice_form_a_group():
    reads = [("0", {"0": 50}), ("0", {"0": 50}), ("1", {"1": 37}), ("1", {"1": 37})]  # two nodes of two ranks
    assert [DataGroups.of(reads, rank) for rank in range(4)] == [
        DataGroups(2, index, 2, {"0": 50, "1": 37}, (("0",), ("1",)), group)
        for index, group in ((0, 0), (1, 0), (0, 1), (1, 1))]
    assert DataGroups.of([(None, 90)] * 3, 2) == DataGroups(1, 2, 3)
    assert DataGroups.of([("0,1", {"0": 50, "1": 37})] * 2, 1) == DataGroups(1, 1, 2, {"0": 50, "1": 37}, (("0", "1"),))


@pytest.mark.parametrize("reads, problem", [
    ([("0", {"0": 50}), (None, 90)], "set on ranks 0 but not on ranks 1"),
    ([("0", {"0": 50}), ("0", {"0": 50}), ("1", {"1": 37})],
     "every slice needs as many ranks; ranks per slice: 0: 2, 1: 1"),
    ([("0", {"0": 50}), ("0", {"0": 49}), ("1", {"1": 37}), ("1", {"1": 37})],
     "slice 0 holds 50 packed samples on some ranks and 49"),
    ([("0,1", {"0": 50, "1": 37}), ("1", {"1": 37})],
     "slice 1 is read by the nodes of data.slice=0,1 and of data.slice=1"),
])
def test_a_slice_layout_the_ranks_cannot_share_is_a_config_error(reads, problem):
    with pytest.raises(ConfigError, match=problem):
        DataGroups.of(reads, 0)


def _sliced_run(nodes: list[dict[str, int]], ranks_per_node: int, micro: int, steps: int | None, state=None):
    """Every rank's sampler over `steps` steps (None: until the data runs out), node k holding the
    slices `nodes[k]` (label → samples); the (slice, index) pairs each slice gave, the steps run
    and the data position at the end."""
    reads = [(",".join(held), held) for held in nodes for _ in range(ranks_per_node)]
    world = len(reads)
    samplers = []
    for rank in range(world):
        groups = DataGroups.of(reads, rank)
        sampler = GlobalSampler(0, 3, groups, batch="0")
        if state is not None:
            sampler.load_state_dict(state)
        samplers.append((groups, sampler))
    taken = {label: [] for held in nodes for label in held}
    done = 0
    while steps is None or done < steps:
        another_step = {sampler.remaining() >= micro * world for _, sampler in samplers}
        assert len(another_step) == 1  # every rank takes the same decision: none waits for the others
        if not another_step.pop():
            break
        for groups, sampler in samplers:
            ids = sampler.take(micro * world, groups.index, groups.size)
            offsets = np.cumsum([0] + list(nodes[groups.group].values()))
            for i in ids.tolist():  # node-local id → (slice, index in the slice)
                k = int(np.searchsorted(offsets, i, side="right")) - 1
                taken[list(nodes[groups.group])[k]].append(i - int(offsets[k]))
        done += 1
    return taken, done, samplers[0][1]


def test_each_slice_is_drawn_from_its_own_order_and_every_node_stops_at_the_same_step():
    nodes = [{"0": 50}, {"1": 37}]
    taken, steps, _ = _sliced_run(nodes, ranks_per_node=2, micro=2, steps=None)
    assert steps == 37 // 4  # a share of 4 per step and slice: the smaller slice ends the run for both
    for label, n in (("0", 50), ("1", 37)):
        assert len(taken[label]) == len(set(taken[label])) == 4 * steps
        assert taken[label] == GlobalSampler(n, 3).order[:4 * steps].tolist()


def test_a_sliced_data_position_resumes_exactly_on_the_same_slices():
    nodes = [{"0": 50}, {"1": 37}]
    whole, _, _ = _sliced_run(nodes, 2, 2, steps=7)
    first, _, sampler = _sliced_run(nodes, 2, 2, steps=3)
    state = sampler.state_dict()
    assert state["slices"] == {"0": 50, "1": 37} and state["cursors"] == {"0": 12, "1": 12}
    rest, _, resumed = _sliced_run(nodes, 2, 2, steps=4, state=state)
    assert {label: first[label] + rest[label] for label in whole} == whole
    assert resumed.remap() == {}
    with pytest.raises(ValueError, match="another data order"):
        GlobalSampler(50, 3).load_state_dict(state)
    other_batch = GlobalSampler(0, 3, DataGroups.of([("0", {"0": 50})], 0), batch="1")
    with pytest.raises(ValueError, match="another data order"):
        other_batch.load_state_dict(state)
    one_slice = GlobalSampler(0, 3, DataGroups.of([("1", {"1": 37})], 0), batch="0")
    one_slice.load_state_dict({"cursor": 8, "seed": 3, "num_samples": 37})  # saved before slices had cursors
    assert one_slice.cursors == {"1": 8}
    with pytest.raises(ValueError, match="slice 1 held 37 packed samples, now 36"):
        GlobalSampler(0, 3, DataGroups.of([("1", {"1": 36})], 0), batch="0").load_state_dict(state)


def test_a_resume_on_fewer_nodes_trains_every_sample_of_the_slices_it_reads_once():
    """Three nodes, then two: node 0 takes over the lost node's slice (copied to its disk)."""
    first, _, sampler = _sliced_run([{"0": 40}, {"1": 37}, {"2": 45}], 1, 4, steps=3)
    rest, steps, resumed = _sliced_run([{"0": 40, "2": 45}, {"1": 37}], 1, 4, steps=None, state=sampler.state_dict())
    assert resumed.remap() == {}
    for label, n in (("0", 40), ("1", 37), ("2", 45)):
        trained = first[label] + rest[label]
        assert len(trained) == len(set(trained))  # never twice
        assert trained == GlobalSampler(n, 3).order[:len(trained)].tolist()  # each slice continued in its order
    assert len(rest["1"]) == 37 - 12 - (37 - 12) % 4  # the smaller node ran out first
    assert resumed.left(["0", "2"]) == 40 + 45 - 24 - 4 * steps  # a share of 4 per step and node


def test_a_resume_that_no_longer_reads_a_slice_names_every_sample_it_skips():
    first, _, sampler = _sliced_run([{"0": 40}, {"1": 37}], 1, 4, steps=2)
    rest, _, resumed = _sliced_run([{"0": 40}, {"3": 30}], 1, 4, steps=1, state=sampler.state_dict())
    assert resumed.remap() == {"data_skipped": [{"slice": "1", "from": 8, "to": 37, "samples": 29,
                                                 "why": "no node of this launch reads slice 1"}],
                               "data_started": ["3"]}
    assert first["0"] + rest["0"] == GlobalSampler(40, 3).order[:12].tolist()
    assert rest["3"] == GlobalSampler(30, 3).order[:4].tolist()  # a slice it never read: from its start


def _corrupt_odd_bin(root):
    path = root / "batch_0" / "slice_0" / "stories.bin"
    path.write_bytes(path.read_bytes()[:-1])
    return path


def _corrupt_empty_bin(root):
    path = root / "batch_0" / "slice_0" / "code.bin"
    path.write_bytes(b"")
    return path


def _delete_bin(root):
    path = root / "batch_0" / "slice_0" / "recipes.bin"
    path.unlink()
    return path


def _garbage_lengths(root):
    path = root / "batch_0" / "slice_0" / "stories.len.npy"
    path.write_bytes(b"\x93NUMPY garbage, not an array header\n")
    return path


def _lengths_of_another_shard(root):
    path = root / "valid" / "code.len.npy"
    np.save(path, np.array([1, 2, 3], dtype=np.int64))
    return path


def _broken_meta(root):
    path = root / "meta.json"
    path.write_text(path.read_text()[:40])
    return path


def _meta_without_sources(root):
    import json

    path = root / "meta.json"
    meta = json.loads(path.read_text())
    meta["sources"] = "stories"
    path.write_text(json.dumps(meta))
    return path


CORRUPTIONS = [_corrupt_odd_bin, _corrupt_empty_bin, _delete_bin, _garbage_lengths, _lengths_of_another_shard,
               _broken_meta, _meta_without_sources]


def test_a_corrupt_or_missing_shard_is_a_one_line_error_naming_the_file(tmp_path):
    """Each through `python -m trainer train` as one process (all started at once); under
    torchrun each rank prints the same line and torchrun adds its own ChildFailedError report."""
    import shutil
    import subprocess

    from trainer_procs import REPO, env, prepare_sample, train_cmd

    clean = prepare_sample(tmp_path / "clean")
    runs = []
    for corrupt in CORRUPTIONS:
        root = tmp_path / corrupt.__name__
        shutil.copytree(clean, root)
        bad = corrupt(root)
        proc = subprocess.Popen(train_cmd(root, tmp_path / f"out{corrupt.__name__}", "data.total_steps=2"),
                                env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs.append((corrupt.__name__, bad, proc))
    for name, bad, proc in runs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 2 and "Traceback" not in stderr + stdout, (name, stderr)
        (error,) = stderr.strip().splitlines()
        assert error.startswith(f"error: {bad}: "), (name, error)
