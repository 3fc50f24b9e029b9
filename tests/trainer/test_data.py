"""Packed samples, document boundaries and the world-size-independent sampler."""

import numpy as np
import pytest

from trainer.config import DataConfig
from trainer.data import IGNORE, GlobalSampler, load
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
