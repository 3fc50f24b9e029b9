"""Reading prepared token shards: packed samples, the global sampler, batches.

A *packed sample* is a window of seq_len + 1 tokens cut from the concatenation of the
selected shards' documents (data batch(es), slice, every source): sample i starts at token
i × seq_len. Its rows carry, per token, the document it came from (for attention masks and
num_samples_in_batch) and the document's source (for per-source figures).

The `GlobalSampler` owns the data position. It is independent of the world size: one
seeded permutation of all packed samples and one cursor; each step takes the next
global_batch samples and rank r trains on its contiguous part of that chunk. Resuming
with another world size therefore neither repeats nor skips a sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.config import DataConfig, parse_batches

IGNORE = -100  # target ignored by the loss (a document boundary inside a packed row)


class TokenShards:
    """The documents of some shard folders, as one virtual token stream (memory-mapped)."""

    def __init__(self, folders: list[Path], sources: list[str], min_length: int = 0):
        self.sources = sources
        self.files, starts, lengths, doc_file, doc_source = [], [], [], [], []
        for folder in folders:
            for source_id, source in enumerate(sources):
                bin_path = folder / f"{source}.bin"
                if not bin_path.exists():
                    continue
                lens = np.load(folder / f"{source}.len.npy")
                keep = lens >= max(min_length, 1)
                starts.append((np.cumsum(lens) - lens)[keep])
                lengths.append(lens[keep])
                doc_file.append(np.full(keep.sum(), len(self.files), dtype=np.int32))
                doc_source.append(np.full(keep.sum(), source_id, dtype=np.int16))
                self.files.append(np.memmap(bin_path, dtype=np.uint16, mode="r"))
        cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)  # noqa: E731
        self.doc_start, self.doc_len = cat(starts, np.int64), cat(lengths, np.int64)
        self.doc_file, self.doc_source = cat(doc_file, np.int32), cat(doc_source, np.int16)
        self.cum = np.concatenate([[0], np.cumsum(self.doc_len)])

    @property
    def total_tokens(self) -> int:
        return int(self.cum[-1])

    def gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and document ids at virtual positions (any shape)."""
        doc = np.searchsorted(self.cum, positions, side="right") - 1
        offset = self.doc_start[doc] + (positions - self.cum[doc])
        tokens = np.empty(positions.shape, dtype=np.int64)
        file_of = self.doc_file[doc]
        for f in np.unique(file_of):
            where = file_of == f
            tokens[where] = self.files[f][offset[where]]
        return tokens, doc


@dataclass
class Batch:
    inputs: torch.Tensor  # (n, T) int64
    targets: torch.Tensor  # (n, T) int64, IGNORE at document boundaries unless packed into one
    segments: torch.Tensor | None  # (n, T) document ids, None when pack_sample_into_one
    sources: torch.Tensor  # (n, T) source id of each target
    num_documents: int  # document pieces in these rows (seed 002's num_samples_in_batch)
    largest_length: int  # longest document piece in these rows, tokens


class PackedDataset:
    def __init__(self, shards: TokenShards, seq_len: int, pack_sample_into_one: bool):
        self.shards, self.seq_len, self.pack_into_one = shards, seq_len, pack_sample_into_one
        self.num_samples = max(shards.total_tokens - 1, 0) // seq_len

    def batch(self, sample_ids: np.ndarray) -> Batch:
        positions = sample_ids[:, None] * self.seq_len + np.arange(self.seq_len + 1)
        tokens, doc = self.shards.gather(positions)
        inputs, targets, doc_in = tokens[:, :-1], tokens[:, 1:].copy(), doc[:, :-1]
        if not self.pack_into_one:
            targets[doc[:, 1:] != doc_in] = IGNORE
        changes = doc_in[:, 1:] != doc_in[:, :-1]
        largest = 0
        for row in changes:
            cuts = np.flatnonzero(row) + 1
            largest = max(largest, int(np.diff(np.concatenate([[0], cuts, [self.seq_len]])).max()))
        return Batch(
            inputs=torch.from_numpy(inputs),
            targets=torch.from_numpy(targets),
            segments=None if self.pack_into_one else torch.from_numpy(doc_in),
            sources=torch.from_numpy(self.shards.doc_source[doc_in].astype(np.int64)),
            num_documents=int(len(sample_ids) + changes.sum()),
            largest_length=largest,
        )


class GlobalSampler:
    """Seeded global order of packed samples plus a cursor; resumable at any world size."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples, self.seed = num_samples, seed
        self.order = np.random.default_rng(seed).permutation(num_samples)
        self.cursor = 0

    def remaining(self) -> int:
        return self.num_samples - self.cursor

    def take(self, global_batch: int, rank: int, world_size: int) -> np.ndarray:
        """Advance by one step's global batch; return the sample ids of this rank's part."""
        if self.remaining() < global_batch:
            raise IndexError("data batch exhausted")
        chunk = self.order[self.cursor:self.cursor + global_batch]
        self.cursor += global_batch
        per_rank = global_batch // world_size
        return chunk[rank * per_rank:(rank + 1) * per_rank]

    def state_dict(self) -> dict:
        return {"cursor": self.cursor, "seed": self.seed, "num_samples": self.num_samples}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or state["num_samples"] != self.num_samples:
            raise ValueError(
                f"data position belongs to another data order (seed {state['seed']}, "
                f"{state['num_samples']} samples; now seed {self.seed}, {self.num_samples} samples)")
        self.cursor = int(state["cursor"])


@dataclass
class DataSet:
    """What the loop needs from the data: train and validation samples and source names."""

    meta: dict
    train: PackedDataset
    valid: PackedDataset
    sources: list[str]
    batch_label: str
    slice_label: str | None


def load(cfg: DataConfig) -> DataSet:
    root = Path(cfg.path)
    meta = json.loads((root / "meta.json").read_text())
    batches = parse_batches(cfg.batch, meta["batches"])
    if cfg.slice.strip():
        slices = parse_batches(cfg.slice, meta["slices"], where="data.slice")
    else:
        slices = list(range(meta["slices"]))
    folders = [root / f"batch_{b}" / f"slice_{k}" for b in batches for k in slices]
    sources = meta["sources"]
    train = PackedDataset(TokenShards(folders, sources, cfg.min_length), cfg.seq_len, cfg.pack_sample_into_one)
    valid = PackedDataset(TokenShards([root / "valid"], sources), cfg.seq_len, cfg.pack_sample_into_one)
    return DataSet(meta, train, valid, sources, ",".join(map(str, batches)),
                   ",".join(map(str, slices)) if cfg.slice.strip() else None)
