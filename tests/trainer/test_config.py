"""Configs: presets load, overrides are typed, and every bad config is one line naming the problem."""

import subprocess

import pytest

from trainer_procs import PYTHON, REPO, env
from trainer.config import ConfigError, load_config
from trainer.model import count_params


def _cli(*args, cwd=REPO):
    return subprocess.run([PYTHON, "-m", "trainer", "train", *args], env=env(), cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def _assert_one_line_error(proc, *needles):
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_key_in_file(tmp_path, sample_data):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[data]\npath = "{sample_data}"\nsequence_length = 128\n')
    _assert_one_line_error(_cli("--config", str(cfg)), str(cfg), "unknown key data.sequence_length")


def test_unknown_group_in_override(sample_data):
    _assert_one_line_error(_cli("--config", "tiny", f"data.path={sample_data}", "optimiser.lr=1"),
                           "unknown group [optimiser]")


def test_wrong_type_in_override(sample_data):
    _assert_one_line_error(_cli("--config", "tiny", f"data.path={sample_data}", "data.micro_bsz=two"),
                           "data.micro_bsz", "expected an integer", "'two'")


def test_wrong_type_in_file(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[adam]\nlr = "fast"\n')
    _assert_one_line_error(_cli("--config", str(cfg)), "adam.lr", "expected a number")


def test_missing_data_path(tmp_path):
    missing = tmp_path / "nowhere"
    _assert_one_line_error(_cli("--config", "tiny", f"data.path={missing}"), "data.path", str(missing),
                           "does not exist")


def test_missing_config_file():
    _assert_one_line_error(_cli("--config", "no-such-preset"), "config file not found: no-such-preset", "tiny")


def test_data_batch_that_was_not_prepared(sample_data, tmp_path):
    proc = _cli("--config", "tiny", f"data.path={sample_data}", "data.batch=3", f"train.out_dir={tmp_path}")
    _assert_one_line_error(proc, "data.batch", "0..0")


def test_overrides_parse_toml_values():
    cfg = load_config("tiny", ["adam.lr=2e-3", "data.pack_sample_into_one=true", "model.dtype=bf16",
                               "train.out_dir=runs/x", "lr_scheduler.eta_min=0"])
    assert cfg.adam.lr == 2e-3 and cfg.data.pack_sample_into_one is True
    assert cfg.model.dtype == "bf16" and cfg.train.out_dir == "runs/x"
    assert isinstance(cfg.lr_scheduler.eta_min, float)


@pytest.mark.parametrize("override, needle", [
    ("model.dtype=fp8", "model.dtype"), ("data.seq_len=0", "data.seq_len"),
    ("model.num_attention_heads=3", "model.hidden_size"), ("datapath=x", "group.key=value"),
    ("data.total_steps=true", "data.total_steps"),
])
def test_invalid_values_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config("tiny", [override])


def test_digest_ignores_where_the_run_is_written_but_not_what_is_trained():
    base = load_config("tiny")
    assert load_config("tiny", ["train.out_dir=elsewhere", "debug.record_sample_ids=true"]).digest() == base.digest()
    assert load_config("tiny", ["adam.lr=1e-2"]).digest() != base.digest()


@pytest.mark.parametrize("preset, low, high", [("tiny", 0.05e6, 0.5e6), ("10m", 8e6, 12e6), ("20b", 19e9, 21e9)])
def test_presets_have_the_sizes_their_names_promise(preset, low, high):
    assert low <= count_params(load_config(preset).model)[0] <= high


def test_vocab_smaller_than_the_tokenizer(sample_data):
    _assert_one_line_error(_cli("--config", "tiny", f"data.path={sample_data}", "model.vocab_size=100"),
                           "model.vocab_size", "257")


def test_plan_prints_the_20b_arithmetic_without_data_or_training():
    proc = _cli("--config", "20b", "--plan", "--world-size", "16")
    assert proc.returncode == 0, proc.stderr
    cfg = load_config("20b")
    tokens = cfg.data.micro_bsz * cfg.data.micro_num * cfg.data.seq_len
    assert f"{count_params(cfg.model)[0]:,}" in proc.stdout
    assert f"{tokens:,} per device, {16 * tokens:,} over 16 device(s)" in proc.stdout


IMPOSSIBLE_VALUES = [
    ("adam.lr=-1e-3", "adam.lr: must be 0 or more"), ("adam.lr=nan", "adam.lr: must be a finite number"),
    ("adam.adam_beta1=1.0", "adam.adam_beta1: must be in [0, 1)"), ("adam.adam_beta2=-0.1", "adam.adam_beta2"),
    ("adam.adam_eps=0", "adam.adam_eps: must be greater than 0"), ("model.norm_eps=-1e-5", "model.norm_eps"),
    ("model.hidden_size=0", "model.hidden_size: must be at least 1"),
    ("model.num_attention_heads=0", "model.num_attention_heads"), ("data.micro_bsz=-2", "data.micro_bsz"),
    ("train.clip_grad_norm=-1", "train.clip_grad_norm: must be 0 or more"),
    ("checkpoint.checkpoint_every=-5", "checkpoint.checkpoint_every"),
    ("checkpoint.keep_checkpoint_max=-1", "checkpoint.keep_checkpoint_max"),
    ("lr_scheduler.warmup_ratio=1.5", "lr_scheduler.warmup_ratio: must be in [0, 1]"),
    ("lr_scheduler.warmup_ratio=-0.1", "lr_scheduler.warmup_ratio"),
    ("train.print_every=-1", "train.print_every"), ("grad_scaler.growth_factor=0.5", "grad_scaler.growth_factor"),
]


def test_values_that_cannot_be_right_are_one_line_errors_naming_the_key(sample_data, tmp_path):
    """Each through `python -m trainer train` as a process (all started at once: none reaches torch)."""
    procs = [(needle, subprocess.Popen([PYTHON, "-m", "trainer", "train", "--config", "tiny", f"data.path={sample_data}",
                                        f"train.out_dir={tmp_path / str(i)}", override], env=env(), cwd=REPO,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for i, (override, needle) in enumerate(IMPOSSIBLE_VALUES)]
    for needle, proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        _assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), needle)
    assert not any((tmp_path / str(i)).exists() for i in range(len(IMPOSSIBLE_VALUES)))  # nothing was started


def test_zero_means_off_where_the_docs_say_so():
    cfg = load_config("tiny", ["train.print_every=0", "train.clip_grad_norm=0", "checkpoint.checkpoint_every=0",
                               "adam.adam_beta1=0", "lr_scheduler.warmup_ratio=1", "adam.lr=0"])
    assert cfg.train.print_every == 0 and cfg.lr_scheduler.warmup_ratio == 1.0
