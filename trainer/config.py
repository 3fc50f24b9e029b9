"""Training configuration: dataclasses, TOML files and `group.key=value` overrides.

The groups follow the InternLM 20B demo's config: model, data, grad_scaler, adam,
lr_scheduler, plus train (seed, dtype-independent loop settings), checkpoint and debug.
Every problem is a `ConfigError` whose one-line message names the file, the key or the path.
This module imports no torch so that a bad config fails in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """An expected, user-facing configuration problem (shown as one line, no traceback)."""


@dataclass
class ModelConfig:
    hidden_size: int = 64
    num_attention_heads: int = 4
    mlp_ratio: float = 8 / 3
    num_layers: int = 2
    vocab_size: int = 264
    norm_eps: float = 1e-5
    dtype: str = "fp32"  # fp32 | bf16 | fp16 (autocast; master weights stay fp32)


@dataclass
class DataConfig:
    path: str = "data/sample"  # a folder written by `trainledger prepare`
    batch: str = "0"  # data batch(es) to train on, e.g. "0" or "9,10"
    slice: str = ""  # "" = every slice of the batch; "3" = only the slice on this node's disk
    seq_len: int = 64
    micro_num: int = 2  # micro-batches accumulated into one optimizer step
    micro_bsz: int = 4  # packed samples of seq_len tokens per micro-batch
    pack_sample_into_one: bool = False  # True: attention crosses document boundaries
    min_length: int = 0  # documents shorter than this many tokens are dropped
    total_steps: int = 100
    valid_every: int = 0  # 0 = no evaluation
    valid_micro_num: int = 2


@dataclass
class GradScalerConfig:
    """fp16 loss scaling (as InternLM's); the scaler exists for every dtype but is off unless fp16."""

    initial_scale: float = 2.0**16
    min_scale: float = 1.0
    growth_interval: int = 1000
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    max_scale: float = 2.0**24
    hysteresis: int = 2  # overflows tolerated before the scale backs off


@dataclass
class AdamConfig:
    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.01


@dataclass
class LRSchedulerConfig:
    warmup_ratio: float = 0.01  # linear warm-up over this fraction of total_steps
    eta_min: float = 1e-5  # cosine decay ends here at total_steps


@dataclass
class TrainConfig:
    seed: int = 1234  # model init and the order of samples
    out_dir: str = "runs/default"  # events.jsonl, run id, checkpoints
    clip_grad_norm: float = 1.0  # 0 = no clipping (the norm is still measured)
    device: str = "auto"  # auto | cpu | cuda
    peak_flops: float = 0.0  # peak FLOP/s of one device for MFU; 0 = look it up / estimate
    events: bool = True  # write the event log (off only for the telemetry benchmark)
    print_every: int = 1  # one-line summary on stdout every N steps (0 = never)
    log_dir: str = ""  # this node's event log folder ("" = out_dir); checkpoints stay in out_dir
    collective_timeout_s: float = 0.0  # a collective waiting longer for a peer fails (0 = torch's default)
    report: bool = True  # at a finish, rank 0 writes report.md and report.html into out_dir (best effort)
    compile: bool = False  # torch.compile the model (compiled before the first step, timed as startup)


@dataclass
class CheckpointConfig:
    """Where a run saves and resumes (docs/checkpoints.md); none of it changes what is trained."""

    checkpoint_every: int = 0  # steps between checkpoints (and one at the end / on a signal); 0 = never
    keep_checkpoint_max: int = 3  # newest checkpoints kept; 0 = keep all
    async_save: bool = True  # the loop waits only while tensors are copied out; a thread writes
    resume: str = ""  # "" = fresh start, "auto" = newest whole checkpoint, or one checkpoint folder
    init_from: str = ""  # a checkpoint folder: its model weights only, fresh optimizer, from step 0
    load_optimizer: bool = True  # false: resume everything but the optimizer (recorded as a gap)


@dataclass
class DebugConfig:
    fail_at_step: int = -1  # raise an exception at this step (tests of the fault record)
    fail_rank: int = -1  # the rank that raises; -1 = every rank
    record_sample_ids: bool = False  # each rank writes the sample ids it trained on
    stop_at_step: int = -1  # stop after this step as on SIGTERM (checkpoint, `stop` record): resume tests
    hang_at_step: int = -1  # this launch's ranks freeze before this step, until killed: node-loss tests


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    grad_scaler: GradScalerConfig = field(default_factory=GradScalerConfig)
    adam: AdamConfig = field(default_factory=AdamConfig)
    lr_scheduler: LRSchedulerConfig = field(default_factory=LRSchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Identifies what is trained: everything except where it is written, checkpointing and debug knobs."""
        d = self.to_dict()
        d.pop("debug")
        d.pop("checkpoint")
        local = ("out_dir", "events", "print_every", "log_dir", "collective_timeout_s", "report", "compile")
        d["train"] = {k: v for k, v in d["train"].items() if k not in local}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def tokens_per_rank_step(self) -> int:
        return self.data.micro_bsz * self.data.micro_num * self.data.seq_len


def _group_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_type(where: str, value: Any, expected: Any) -> Any:
    """Return `value` coerced to `expected` (int → float only) or raise ConfigError."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # data.batch=3 means the batch "3"
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(expected, types.UnionType):
        if any(isinstance(value, t) for t in typing.get_args(expected)):
            return value
    elif isinstance(value, expected):
        return value
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(expected, str(expected))
    raise ConfigError(f"{where}: expected {name}, got {value!r}")


def _apply(cfg: Config, data: dict[str, Any], source: str) -> None:
    groups = {f.name: f for f in dataclasses.fields(Config)}
    for group, values in data.items():
        if group not in groups:
            raise ConfigError(f"{source}: unknown group [{group}] (known: {', '.join(groups)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{group}] must be a table of keys")
        target = getattr(cfg, group)
        hints = _group_types(type(target))
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(f"{source}: unknown key {group}.{key}")
            setattr(target, key, _check_type(f"{source}: {group}.{key}", value, hints[key]))


def _parse_value(text: str) -> Any:
    """TOML value syntax (`3`, `1e-3`, `true`, `"x"`); a bare word is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def resolve_config_path(name: str) -> Path:
    """A file path, or the name of a shipped preset (`tiny`, `10m`, `20b`)."""
    path = Path(name)
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{name}.toml"
    if preset.is_file():
        return preset
    known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
    raise ConfigError(f"config file not found: {name} (presets: {known})")


def load_config(name: str | None, overrides: list[str] = ()) -> Config:
    cfg = Config()
    if name is not None:
        path = resolve_config_path(name)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        _apply(cfg, data, str(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        group, dot, leaf = key.strip().partition(".")
        if not sep or not dot or not leaf:
            raise ConfigError(f"override {item!r}: expected group.key=value, e.g. data.total_steps=20")
        _apply(cfg, {group: {leaf: _parse_value(text.strip())}}, "override")
    validate(cfg)
    return cfg


_AT_LEAST_ONE = ("model.hidden_size", "model.num_attention_heads", "model.num_layers", "model.vocab_size",
                 "data.seq_len", "data.micro_num", "data.micro_bsz", "data.total_steps", "data.valid_micro_num",
                 "grad_scaler.growth_interval", "grad_scaler.hysteresis")
_POSITIVE = ("model.mlp_ratio", "model.norm_eps", "adam.adam_eps", "grad_scaler.initial_scale",
             "grad_scaler.min_scale", "grad_scaler.max_scale")
_NOT_NEGATIVE = ("adam.lr", "adam.weight_decay", "lr_scheduler.eta_min", "train.clip_grad_norm", "train.peak_flops",
                 "train.print_every", "data.valid_every", "data.min_length", "checkpoint.checkpoint_every",
                 "checkpoint.keep_checkpoint_max")
_FRACTIONS = {"adam.adam_beta1": "[0, 1)", "adam.adam_beta2": "[0, 1)", "lr_scheduler.warmup_ratio": "[0, 1]",
              "grad_scaler.backoff_factor": "(0, 1)"}


def _value(cfg: Config, key: str) -> Any:
    group, leaf = key.split(".")
    return getattr(getattr(cfg, group), leaf)


def _check_ranges(cfg: Config) -> None:
    """Values that cannot be right fail here, naming the key, instead of training into NaN
    (a negative lr, a beta of 1, an eps of 0) or failing deep inside torch."""
    for f in dataclasses.fields(Config):
        for key, value in dataclasses.asdict(getattr(cfg, f.name)).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name}.{key}: must be a finite number, got {value}")
    for key in _AT_LEAST_ONE:
        if _value(cfg, key) < 1:
            raise ConfigError(f"{key}: must be at least 1, got {_value(cfg, key)}")
    for key in _POSITIVE:
        if not _value(cfg, key) > 0:
            raise ConfigError(f"{key}: must be greater than 0, got {_value(cfg, key)}")
    for key in _NOT_NEGATIVE:
        if _value(cfg, key) < 0:
            raise ConfigError(f"{key}: must be 0 or more, got {_value(cfg, key)}")
    for key, interval in _FRACTIONS.items():
        value = _value(cfg, key)
        low_ok = value > 0 if interval[0] == "(" else value >= 0
        high_ok = value <= 1 if interval[-1] == "]" else value < 1
        if not (low_ok and high_ok):
            raise ConfigError(f"{key}: must be in {interval}, got {value}")
    scaler = cfg.grad_scaler
    if scaler.growth_factor <= 1:
        raise ConfigError(f"grad_scaler.growth_factor: must be greater than 1, got {scaler.growth_factor}")
    if scaler.min_scale > scaler.max_scale:
        raise ConfigError(f"grad_scaler.min_scale: {scaler.min_scale} is above grad_scaler.max_scale "
                          f"{scaler.max_scale}")


def validate(cfg: Config) -> None:
    m = cfg.model
    if m.dtype not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"model.dtype: expected fp32, bf16 or fp16, got {m.dtype!r}")
    _check_ranges(cfg)
    if m.hidden_size % m.num_attention_heads or (m.hidden_size // m.num_attention_heads) % 2:
        raise ConfigError("model.hidden_size must be a multiple of 2 × model.num_attention_heads")
    if cfg.train.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device: expected auto, cpu or cuda, got {cfg.train.device!r}")
    if cfg.checkpoint.resume and cfg.checkpoint.init_from:
        raise ConfigError("checkpoint.resume and checkpoint.init_from exclude each other: "
                          "resume continues a run, init_from starts a new one from its weights")


def parse_batches(text: str, available: int, where: str = "data.batch") -> list[int]:
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{where}: expected batch numbers like '0' or '9,10', got {text!r}") from None
    bad = [b for b in batches if not 0 <= b < available]
    if not batches or bad:
        raise ConfigError(f"{where}: {text!r} is not among the prepared batches 0..{available - 1}")
    return batches


def check_data_path(cfg: Config) -> Path:
    """The prepared data folder, batch and slice must exist and their shards be whole (checked
    before torch is imported and any process group starts)."""
    from trainer.prepared import check_shards, read_meta

    path = Path(cfg.data.path)
    meta = read_meta(path)
    vocab = meta["tokenizer"]["vocab_size"]
    if cfg.model.vocab_size < vocab:
        raise ConfigError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the data's tokenizer ({vocab})")
    batches = parse_batches(cfg.data.batch, meta["batches"])
    slices = list(range(meta["slices"]))
    if cfg.data.slice.strip():
        slices = parse_batches(cfg.data.slice, meta["slices"], where="data.slice")
    check_shards(path, meta, [path / f"batch_{b}" / f"slice_{k}" for b in batches for k in slices] + [path / "valid"])
    return path
