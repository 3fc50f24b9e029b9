"""Reading prepared token shards: packed samples, the global sampler, batches.

A *packed sample* is a window of seq_len + 1 tokens cut from the concatenation of the
selected shards' documents (data batch(es), slice, every source): sample i starts at token
i × seq_len. Its rows carry, per token, the document it came from (for attention masks and
num_samples_in_batch) and the document's source (for per-source figures).

The `GlobalSampler` owns the data position. It is independent of the world size: one
seeded permutation of all packed samples and one cursor; each step takes the next
global_batch samples and rank r trains on its contiguous part of that chunk. Resuming
with another world size therefore neither repeats nor skips a sample.

With per-node slices (`data.slice`, each node reading only the slice on its own disk) the
ranks reading one slice form a group (`DataGroups`): each group takes an equal share of
every step from its own slice's order, at the same cursor, and every group stops when the
smallest slice runs out, so no node leaves the loop while the others wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.config import ConfigError, DataConfig, parse_batches
from trainer.prepared import read_meta

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
    num_documents: int  # document pieces in these rows (InternLM's num_samples_in_batch)
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


@dataclass(frozen=True)
class DataGroups:
    """Which ranks read the same data: all of them the whole batch, or each node its slice."""

    groups: int
    """How many groups of ranks read data of their own (1, or one per slice)."""
    index: int
    """This rank's place among the ranks of its group."""
    size: int
    """How many ranks its group has."""
    slices: dict[str, int] | None = None
    """Per-node slices: each slice's label → its packed samples; None: no slices."""

    @classmethod
    def of(cls, reads: list[tuple[str | None, int]], rank: int) -> DataGroups:
        """From every rank's (slice label or None, packed samples it holds), in rank order."""
        labels = [label for label, _ in reads]
        if all(label is None for label in labels):
            return cls(1, rank, len(reads))
        if None in labels:
            raise ConfigError(f"data.slice: set on ranks {_ranks(labels, lambda x: x is not None)} "
                              f"but not on ranks {_ranks(labels, lambda x: x is None)}")
        slices: dict[str, int] = {}
        for label, samples in reads:
            if slices.setdefault(label, samples) != samples:
                raise ConfigError(f"data.slice: slice {label} holds {slices[label]} packed samples on some ranks and "
                                  f"{samples} on others (ranks {_ranks(labels, lambda x: x == label)}): "
                                  "are the copies on those nodes' disks whole?")
        ranks_per_slice = {label: labels.count(label) for label in slices}
        if len(set(ranks_per_slice.values())) > 1:
            raise ConfigError("data.slice: every slice needs as many ranks; ranks per slice: "
                              + ", ".join(f"{label}: {n}" for label, n in ranks_per_slice.items()))
        if len(slices) == 1:  # every rank reads the same slice: as if it were the whole batch
            return cls(1, rank, len(reads))
        members = [r for r, label in enumerate(labels) if label == labels[rank]]
        return cls(len(slices), members.index(rank), len(members), slices)


def _ranks(labels: list[str | None], which) -> str:
    return ",".join(str(r) for r, label in enumerate(labels) if which(label))


class GlobalSampler:
    """Seeded order of packed samples plus a cursor; resumable at any world size. With
    `groups` > 1 each group draws its share of a step from its own samples (`slices`)."""

    def __init__(self, num_samples: int, seed: int, groups: int = 1, slices: dict[str, int] | None = None):
        self.num_samples, self.seed, self.groups, self.slices = num_samples, seed, groups, slices
        self.limit = min(slices.values()) if slices else num_samples
        """Where every group's cursor stops: the smallest group's sample count."""
        self.order = np.random.default_rng(seed).permutation(num_samples)
        self.cursor = 0

    def remaining(self) -> int:
        """Samples still to come for global batches, over every group."""
        return (self.limit - self.cursor) * self.groups

    def take(self, global_batch: int, index: int, size: int) -> np.ndarray:
        """Advance by one step; return the sample ids of the part that falls to rank `index` of
        the `size` ranks reading these samples (with no slices: the rank and the world size)."""
        share = global_batch // self.groups
        if self.limit - self.cursor < share:
            raise IndexError("data batch exhausted")
        chunk = self.order[self.cursor:self.cursor + share]
        self.cursor += share
        per_rank = share // size
        return chunk[index * per_rank:(index + 1) * per_rank]

    def state_dict(self) -> dict:
        state = {"cursor": self.cursor, "seed": self.seed, "num_samples": self.num_samples}
        if self.slices:
            state["slices"] = dict(self.slices)
        return state

    def load_state_dict(self, state: dict) -> None:
        """The same on every rank: the state saved by rank 0 names every slice's sample count."""
        if self.slices or state.get("slices"):
            if state["seed"] != self.seed or state.get("slices") != self.slices:
                raise ValueError(f"data position belongs to another data order (seed {state['seed']}, slices "
                                 f"{state.get('slices')}; now seed {self.seed}, slices {self.slices})")
        elif state["seed"] != self.seed or state["num_samples"] != self.num_samples:
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
    meta = read_meta(root)
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
