"""`trainledger prepare`: text / JSONL / parquet files → memory-mapped token shards.

Layout of the output folder (read by trainer/data.py):

    meta.json                                tokenizer, sources, batches, slices, counts
    sample.json                              only with --sample: what was drawn, and how
    batch_{b}/slice_{k}/{source}.bin         uint16 tokens, each document ends with EOS
    batch_{b}/slice_{k}/{source}.len.npy     int64 document lengths (tokens, EOS included)
    valid/{source}.bin, valid/{source}.len.npy   the held-out validation documents

Documents are shuffled once (seeded), a held-out fraction goes to `valid/`, the rest is cut
into `batches` data batches and each batch into `slices` per-node slices, the way seed
000's team spread 9 TB over local disks: a node that trains on batch b with slice k needs
only `batch_b/slice_k/` on its own disk. Every shard is tagged with its source (the input
file's stem) so per-source loss, accuracy and tokens can be reported.

The tokenizer is byte-level (UTF-8 bytes 0–255, EOS = 256): no download, no training,
and bits per byte follow directly from the loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EOS = 256
VOCAB_SIZE = 257
SUFFIXES = (".txt", ".jsonl", ".parquet")


class PrepareError(ValueError):
    """An expected input problem, shown as one line naming the file (and line)."""


@dataclass
class Document:
    source: str
    index: int  # position within its source, as read
    text: str


def encode(text: str) -> np.ndarray:
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
    return np.append(data, np.uint16(EOS))


def decode(tokens) -> str:
    return bytes(int(t) for t in tokens if t < 256).decode("utf-8", errors="replace")


def _input_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if not path.exists():
            raise PrepareError(f"{path}: no such file or folder")
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.suffix in SUFFIXES:
            files.append(path)
        else:
            raise PrepareError(f"{path}: unsupported file type (use {', '.join(SUFFIXES)})")
    if not files:
        raise PrepareError(f"no {'/'.join(SUFFIXES)} files in {', '.join(map(str, paths))}")
    return files


def _utf8(path: Path) -> str:
    """The file's text; PrepareError naming the file, line and byte offset of invalid UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PrepareError(f"{path}:{line}: invalid UTF-8 at byte offset {exc.start} "
                           f"({data[exc.start:exc.end]!r}); convert the file to UTF-8") from None


def _jsonl_text(path: Path, lineno: int, line: str, text_field: str) -> str:
    try:
        text = json.loads(line)[text_field]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise PrepareError(f"{path}:{lineno}: not a JSON object with a {text_field!r} string") from None
    if not isinstance(text, str):
        raise PrepareError(f"{path}:{lineno}: {text_field!r} is not a string")
    return text


def _texts(path: Path, text_field: str):
    if path.suffix == ".txt":  # documents are separated by blank lines
        for block in _utf8(path).split("\n\n"):
            if block.strip():
                yield block.strip()
    elif path.suffix == ".jsonl":
        for lineno, line in enumerate(_utf8(path).split("\n"), 1):
            if line.strip():
                yield _jsonl_text(path, lineno, line, text_field)
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise PrepareError(f"{path}: reading parquet needs pyarrow (pip install 'trainledger[parquet]')") from None
        table = pq.read_table(path)
        if text_field not in table.column_names:
            raise PrepareError(f"{path}: no column {text_field!r} (columns: {', '.join(table.column_names)})")
        yield from (t for t in table.column(text_field).to_pylist() if t)


def read_documents(paths: list[Path], text_field: str = "text") -> list[Document]:
    docs, counts = [], {}
    for path in _input_files(paths):
        source = path.stem
        for text in _texts(path, text_field):
            docs.append(Document(source, counts.get(source, 0), text))
            counts[source] = counts.get(source, 0) + 1
    return docs


def _mix(docs: list[Document], edges: np.ndarray) -> dict:
    lengths = np.array([len(d.text.encode()) for d in docs])
    sources = sorted({d.source for d in docs})
    return {
        "documents": len(docs),
        "by_source": {s: sum(d.source == s for d in docs) for s in sources},
        "by_length_bucket": np.bincount(np.searchsorted(edges, lengths, side="right"), minlength=len(edges) + 1).tolist(),
        "mean_bytes": float(lengths.mean()) if len(docs) else 0.0,
    }


def sample_documents(docs: list[Document], n: int, seed: int, smart: bool) -> tuple[list[Document], dict]:
    """Draw n documents reproducibly (as the ChatLM-mini-Chinese acceleration guide does). Uniform, or "smart": stratified by source
    and length quartile with proportional allocation, so the sample keeps the corpus's mix."""
    if n < 1:
        raise PrepareError(f"--sample: must be at least 1, got {n}")
    n = min(n, len(docs))
    rng = np.random.default_rng(seed)
    lengths = np.array([len(d.text.encode()) for d in docs])
    edges = np.quantile(lengths, [0.25, 0.5, 0.75]) if len(docs) else np.array([])
    if not smart:
        chosen = np.sort(rng.choice(len(docs), size=n, replace=False))
    else:
        buckets = np.searchsorted(edges, lengths, side="right")
        strata: dict[tuple[str, int], list[int]] = {}
        for i, d in enumerate(docs):
            strata.setdefault((d.source, int(buckets[i])), []).append(i)
        keys = sorted(strata)
        quota = np.array([n * len(strata[k]) / len(docs) for k in keys])
        take = np.floor(quota).astype(int)
        for j in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:  # largest remainders
            take[j] += 1
        chosen = np.sort(np.concatenate([rng.choice(strata[k], size=t, replace=False) for k, t in zip(keys, take)]))
    drawn = [docs[i] for i in chosen]
    record = {
        "seed": seed, "method": "smart" if smart else "uniform", "requested": n, "drawn": len(drawn),
        "length_bucket_edges_bytes": edges.tolist(),
        "corpus": _mix(docs, edges), "sample": _mix(drawn, edges),
        "documents": [[d.source, d.index] for d in drawn],
    }
    return drawn, record


def _write_shards(folder: Path, docs: list[Document]) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    tokens_by_source = {}
    for source in sorted({d.source for d in docs}):
        pieces = [encode(d.text) for d in docs if d.source == source]
        np.concatenate(pieces).tofile(folder / f"{source}.bin")
        np.save(folder / f"{source}.len.npy", np.array([len(p) for p in pieces], dtype=np.int64))
        tokens_by_source[source] = int(sum(len(p) for p in pieces))
    return tokens_by_source


def prepare(inputs: list[Path], out: Path, *, batches: int = 1, slices: int = 1, valid_ratio: float = 0.05,
            seed: int = 0, sample: int | None = None, smart: bool = False, text_field: str = "text") -> dict:
    if batches < 1 or slices < 1:
        raise PrepareError("--batches and --slices must be at least 1")
    if not 0 <= valid_ratio < 1:
        raise PrepareError(f"--valid-ratio: must be in [0, 1), got {valid_ratio}")
    if out.exists() and any(out.iterdir()):
        raise PrepareError(f"{out}: folder exists and is not empty (choose another --out)")
    docs = read_documents(inputs, text_field)
    sample_record = None
    if sample is not None:
        docs, sample_record = sample_documents(docs, sample, seed, smart)
    order = np.random.default_rng(seed).permutation(len(docs))
    n_valid = int(round(valid_ratio * len(docs)))
    if valid_ratio > 0 and len(docs) > 1:
        n_valid = max(n_valid, 1)
    valid, train = [docs[i] for i in order[:n_valid]], [docs[i] for i in order[n_valid:]]
    if len(train) < batches * slices:
        raise PrepareError(f"{len(train)} training documents cannot fill {batches} batches × {slices} slices")
    out.mkdir(parents=True, exist_ok=True)
    tokens = {}
    for b in range(batches):
        part = train[b * len(train) // batches:(b + 1) * len(train) // batches]
        for k in range(slices):
            tokens[f"batch_{b}/slice_{k}"] = _write_shards(out / f"batch_{b}" / f"slice_{k}", part[k::slices])
    tokens["valid"] = _write_shards(out / "valid", valid)
    meta = {
        "format": 1,
        "tokenizer": {"kind": "bytes", "vocab_size": VOCAB_SIZE, "eos": EOS},
        "sources": sorted({d.source for d in docs}),
        "batches": batches, "slices": slices, "seed": seed, "valid_ratio": valid_ratio,
        "documents": {"train": len(train), "valid": len(valid)},
        "tokens": tokens,
        "sample": None if sample_record is None else "sample.json",
    }
    if sample_record is not None:
        (out / "sample.json").write_text(json.dumps(sample_record, indent=1))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta
