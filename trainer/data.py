"""Reading prepared token shards: packed samples, the global sampler, batches.

A *packed sample* is a window of seq_len + 1 tokens cut from the concatenation of the
selected shards' documents (data batch(es), slice, every source): sample i starts at token
i × seq_len. Its rows carry, per token, the document it came from (for attention masks and
num_samples_in_batch) and the document's source (for per-source figures).

The `GlobalSampler` owns the data position. It is independent of the world size: one
seeded permutation of all packed samples and one cursor; each step takes the next
global_batch samples and rank r trains on its contiguous part of that chunk. Resuming
with another world size therefore neither repeats nor skips a sample.

With per-node slices (`data.slice`, each node reading only the slice(s) on its own disk)
the ranks of one node form a group (`DataGroups`): each group takes an equal share of every
step from its own slices' orders, and every group stops when the group with the fewest
samples left runs out, so no node leaves the loop while the others wait for it. Each slice
keeps its own cursor, so a resume on another node count continues every slice where it
stopped, whichever node reads it now, and names exactly what of a slice nobody reads is left.
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


class SliceSamples:
    """The packed samples of the slices on one node's disk, each slice its own samples (a sample
    never spans two slices): node-local id = the slice's offset among the node's slices + its
    index in the slice, so a node that takes over a lost node's slice trains the same samples."""

    def __init__(self, slices: dict[str, PackedDataset]):
        self.slices = slices
        self.offsets = np.cumsum([0] + [d.num_samples for d in slices.values()])
        self.num_samples = int(self.offsets[-1])

    def counts(self) -> dict[str, int]:
        return {label: d.num_samples for label, d in self.slices.items()}

    def locate(self, ids: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(slice label, index in the slice) of node-local sample ids."""
        which = np.searchsorted(self.offsets, ids, side="right") - 1
        labels = list(self.slices)
        return [labels[w] for w in which], ids - self.offsets[which]

    def batch(self, sample_ids: np.ndarray) -> Batch:
        labels, index = self.locate(sample_ids)
        parts = [self.slices[label].batch(index[[i for i, x in enumerate(labels) if x == label]])
                 for label in dict.fromkeys(labels)]
        if len(parts) == 1:
            return parts[0]
        cat = lambda name: torch.cat([getattr(b, name) for b in parts])  # noqa: E731
        return Batch(cat("inputs"), cat("targets"), None if parts[0].segments is None else cat("segments"),
                     cat("sources"), sum(b.num_documents for b in parts), max(b.largest_length for b in parts))


@dataclass(frozen=True)
class DataGroups:
    """Which ranks read the same data: all of them the whole batch, or each node its slice(s)."""

    groups: int
    """How many groups of ranks read data of their own (1, or one per node reading slices)."""
    index: int
    """This rank's place among the ranks of its group."""
    size: int
    """How many ranks its group has."""
    slices: dict[str, int] | None = None
    """Per-node slices: every slice read by some group → its packed samples; None: no slices."""
    held: tuple[tuple[str, ...], ...] = ()
    """Each group's slices, in group order (a node may hold several: a lost node's slice copied over)."""
    group: int = 0
    """This rank's group."""

    @classmethod
    def of(cls, reads: list[tuple[str | None, dict[str, int] | int]], rank: int) -> DataGroups:
        """From every rank's (data.slice or None, its slices' packed samples or the batch's), in rank order."""
        labels = [label for label, _ in reads]
        if all(label is None for label in labels):
            return cls(1, rank, len(reads))
        if None in labels:
            raise ConfigError(f"data.slice: set on ranks {_ranks(labels, lambda x: x is not None)} "
                              f"but not on ranks {_ranks(labels, lambda x: x is None)}")
        slices: dict[str, int] = {}
        owner: dict[str, str] = {}
        for label, counts in reads:
            for piece, samples in counts.items():
                if slices.setdefault(piece, samples) != samples:
                    raise ConfigError(f"data.slice: slice {piece} holds {slices[piece]} packed samples on some ranks "
                                      f"and {samples} on others (ranks {_ranks(labels, lambda x: x == label)}): "
                                      "are the copies on those nodes' disks whole?")
                if owner.setdefault(piece, label) != label:
                    raise ConfigError(f"data.slice: slice {piece} is read by the nodes of data.slice={owner[piece]} "
                                      f"and of data.slice={label}: its samples would be trained twice")
        ranks_per_group = {label: labels.count(label) for label in dict.fromkeys(labels)}
        if len(set(ranks_per_group.values())) > 1:
            raise ConfigError("data.slice: every slice needs as many ranks; ranks per slice: "
                              + ", ".join(f"{label}: {n}" for label, n in ranks_per_group.items()))
        order = list(ranks_per_group)
        held = tuple(tuple(dict(reads[labels.index(label)][1])) for label in order)
        members = [r for r, label in enumerate(labels) if label == labels[rank]]
        return cls(len(order), members.index(rank), len(members), slices, held, order.index(labels[rank]))


def _ranks(labels: list[str | None], which) -> str:
    return ",".join(str(r) for r, label in enumerate(labels) if which(label))


WHOLE = ""  # the pseudo-slice label of a batch read whole by every rank


class GlobalSampler:
    """Seeded orders of packed samples plus cursors; resumable at any world size and node count.

    Without slices: one order of the batch's samples and one cursor. With per-node slices each
    slice has its own seeded order and cursor; each step every group (node) takes its share from
    its slices in turn, and every rank computes every group's draw, so all know the same cursors
    and stop after the same step without a collective."""

    def __init__(self, num_samples: int, seed: int, groups: DataGroups | None = None, batch: str = ""):
        self.num_samples, self.seed, self.batch = num_samples, seed, batch
        self.slices = groups.slices if groups is not None else None
        self.counts = dict(self.slices) if self.slices else {WHOLE: num_samples}
        self.held = groups.held if self.slices else ((WHOLE,),)
        self.group = groups.group if self.slices else 0
        self.cursors = dict.fromkeys(self.counts, 0)
        self.skipped: list[dict] = []
        """After a resume on other slices: the saved slices no node reads now, and what was left of them."""
        self.started: list[str] = []
        """After a resume on other slices: the slices the saved position did not know (from their start)."""
        self._orders: dict[str, np.ndarray] = {}

    def order_of(self, label: str) -> np.ndarray:
        """One slice's seeded order (the same for a slice whichever node reads it)."""
        if label not in self._orders:
            self._orders[label] = np.random.default_rng(self.seed).permutation(self.counts[label])
        return self._orders[label]

    @property
    def order(self) -> np.ndarray:
        return self.order_of(WHOLE)

    @property
    def cursor(self) -> int:
        """The cursor of a batch read whole (tests set it directly)."""
        return self.cursors[WHOLE]

    @cursor.setter
    def cursor(self, value: int) -> None:
        self.cursors[WHOLE] = value

    def left(self, labels) -> int:
        return sum(self.counts[label] - self.cursors[label] for label in labels)

    def remaining(self) -> int:
        """Samples still to come for global batches, over every group (the smallest group's × groups)."""
        return min(self.left(labels) for labels in self.held) * len(self.held)

    def smallest(self) -> str:
        """The slices of the group with the fewest samples left (for messages)."""
        return ",".join(min(self.held, key=self.left))

    def take(self, global_batch: int, index: int, size: int) -> np.ndarray:
        """Advance by one step; return the (node-local) sample ids of the part that falls to rank
        `index` of the `size` ranks reading these samples (with no slices: the rank and world size)."""
        share = global_batch // len(self.held)
        if self.remaining() < global_batch:
            raise IndexError("data batch exhausted")
        mine = np.empty(0, dtype=np.int64)
        for group, labels in enumerate(self.held):
            drawn, offset, need = [], 0, share
            for label in labels:
                n = min(need, self.counts[label] - self.cursors[label])
                if n and group == self.group:
                    drawn.append(offset + self.order_of(label)[self.cursors[label]:self.cursors[label] + n])
                self.cursors[label] += n
                offset, need = offset + self.counts[label], need - n
            if group == self.group:
                mine = np.concatenate(drawn) if drawn else mine
        per_rank = share // size
        return mine[index * per_rank:(index + 1) * per_rank]

    def state_dict(self) -> dict:
        if not self.slices:
            return {"cursor": self.cursor, "seed": self.seed, "num_samples": self.num_samples}
        return {"seed": self.seed, "num_samples": self.num_samples, "batch": self.batch,
                "slices": dict(self.slices), "cursors": dict(self.cursors)}

    def load_state_dict(self, state: dict) -> None:
        """The same on every rank (rank 0's saved state names every slice). On other slices (another
        node count, a lost node's slice copied elsewhere): a slice read before continues at its
        cursor, a new one starts at its beginning, and one no node reads now is listed in
        `skipped` with the positions of its order left untrained."""
        saved = state.get("slices")
        if self.slices and not saved and len(self.slices) == 1 and "cursor" in state:
            saved = {label: state["num_samples"] for label in self.slices}  # one slice, saved as a whole batch
        if not self.slices or not saved:
            if self.slices or saved or state["seed"] != self.seed or state["num_samples"] != self.num_samples:
                raise ValueError(
                    f"data position belongs to another data order (seed {state['seed']}, {state['num_samples']} "
                    f"samples, slices {saved}; now seed {self.seed}, {self.num_samples} samples, slices {self.slices})")
            self.cursor = int(state["cursor"])
            return
        if state["seed"] != self.seed or state.get("batch", self.batch) != self.batch:
            raise ValueError(f"data position belongs to another data order (seed {state['seed']}, batch "
                             f"{state.get('batch')}; now seed {self.seed}, batch {self.batch})")
        cursors = state.get("cursors") or dict.fromkeys(saved, state["cursor"])
        changed = [label for label in self.slices if label in saved and saved[label] != self.slices[label]]
        if changed:
            raise ValueError("data position belongs to another data order: slice " + ", ".join(
                f"{label} held {saved[label]} packed samples, now {self.slices[label]}" for label in changed))
        self.started = [label for label in self.slices if label not in saved]
        for label in self.slices:
            self.cursors[label] = int(cursors[label]) if label in saved else 0
        self.skipped = [{"slice": label, "from": int(cursors[label]), "to": count,
                         "samples": count - int(cursors[label]), "why": f"no node of this launch reads slice {label}"}
                        for label, count in saved.items() if label not in self.slices and cursors[label] < count]

    def remap(self) -> dict:
        """What a resume on other slices changed, for the `resume` event (empty when nothing did)."""
        fields = {}
        if self.skipped:
            fields["data_skipped"] = self.skipped
        if self.started:
            fields["data_started"] = self.started
        return fields


@dataclass
class DataSet:
    """What the loop needs from the data: train and validation samples and source names."""

    meta: dict
    train: PackedDataset | SliceSamples
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
    sources = meta["sources"]

    def samples(slices_read: list[int]) -> PackedDataset:
        folders = [root / f"batch_{b}" / f"slice_{k}" for b in batches for k in slices_read]
        return PackedDataset(TokenShards(folders, sources, cfg.min_length), cfg.seq_len, cfg.pack_sample_into_one)

    train = SliceSamples({str(k): samples([k]) for k in slices}) if cfg.slice.strip() else samples(slices)
    valid = PackedDataset(TokenShards([root / "valid"], sources), cfg.seq_len, cfg.pack_sample_into_one)
    return DataSet(meta, train, valid, sources, ",".join(map(str, batches)),
                   ",".join(map(str, slices)) if cfg.slice.strip() else None)
