"""A prepared data folder (what `trainledger prepare` wrote), checked before training starts:
its `meta.json`, and every shard it lists for the batches and slices a run reads. Each problem
is a `ConfigError` whose one-line message names the file. Imported only once the config is
valid: a bad config fails before numpy is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from trainer.config import ConfigError


def read_meta(root: Path) -> dict[str, Any]:
    """The meta.json of a prepared data folder, checked for what the trainer reads from it;
    ConfigError naming the file when it is missing, not JSON or not what `prepare` writes."""
    path = root / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        problem = _meta_problem(meta)
    except FileNotFoundError:
        why = "does not exist" if not root.exists() else "has no meta.json (run `trainledger prepare` first)"
        raise ConfigError(f"data.path: {root} {why}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"unreadable: {exc}"
    if problem:
        raise ConfigError(f"{path}: {problem}; run `trainledger prepare` again")
    return meta


def _meta_problem(meta: Any) -> str | None:
    def count(value: Any) -> bool:
        return type(value) is int and value >= 0

    if not isinstance(meta, dict):
        return "not a JSON object"
    if not isinstance(meta.get("tokenizer"), dict) or not count(meta["tokenizer"].get("vocab_size")):
        return "no tokenizer.vocab_size"
    for key in ("batches", "slices"):
        if not count(meta.get(key)) or meta[key] < 1:
            return f"{key!r} is not a positive integer"
    if not isinstance(meta.get("sources"), list) or not all(isinstance(s, str) and s for s in meta["sources"]):
        return "'sources' is not a list of source names"
    tokens = meta.get("tokens")
    if not isinstance(tokens, dict) or not all(isinstance(part, dict) and all(count(n) for n in part.values())
                                               for part in tokens.values()):
        return "'tokens' is not a token count per shard folder and source"
    return None


def check_shards(root: Path, meta: dict, folders: list[Path]) -> None:
    """Every shard meta.json lists in these folders is there and whole, or ConfigError naming
    the file: a deleted `.bin` would otherwise train on without its source, and an odd-length
    one or a garbage `.len.npy` fail deep inside numpy."""
    for folder in folders:
        listed = meta["tokens"].get(folder.relative_to(root).as_posix())
        if listed is None:
            raise ConfigError(f"{root / 'meta.json'}: lists no shards for {folder}; run `trainledger prepare` again")
        for source, tokens in listed.items():
            bin_path, len_path = folder / f"{source}.bin", folder / f"{source}.len.npy"
            again = f"meta.json lists {tokens} tokens of {source!r} there; run `trainledger prepare` again"
            try:
                size = bin_path.stat().st_size
            except OSError as exc:
                raise ConfigError(f"{bin_path}: {exc.strerror.lower()} ({again})") from None
            if size != 2 * tokens:
                shape = "an odd length" if size % 2 else "empty" if size == 0 else "the wrong size"
                raise ConfigError(f"{bin_path}: {size} bytes, {shape} for {tokens} two-byte tokens ({again})")
            try:
                lengths = np.load(len_path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise ConfigError(f"{len_path}: not an array of document lengths ({exc}; {again})") from None
            if (lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths < 0).any()
                    or int(lengths.sum()) != tokens):
                raise ConfigError(f"{len_path}: document lengths that do not add up to the {tokens} tokens of "
                                  f"{bin_path.name} ({again})")
