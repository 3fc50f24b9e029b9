"""The GPT: parameter arithmetic, FLOPs, rotary positions and per-document attention."""

import pytest
import torch

from trainer.config import ModelConfig, load_config
from trainer.model import GPT, PEAK_FLOPS, _positions_in_segment, count_params, flops_per_token, ffn_hidden


@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig(hidden_size=96, num_attention_heads=6, num_layers=3,
                                                            mlp_ratio=3.5, vocab_size=300)])
def test_count_params_matches_the_built_model(cfg):
    model = GPT(cfg, seq_len=16)
    total, no_embedding = count_params(cfg)
    assert total == sum(p.numel() for p in model.parameters())
    assert total - no_embedding == model.embed.weight.numel()


def test_flops_per_token_is_6n_plus_attention():
    cfg = load_config("20b")
    n = count_params(cfg.model)[1]
    attention = 12 * cfg.model.num_layers * cfg.model.hidden_size * cfg.data.seq_len
    assert flops_per_token(cfg.model, cfg.data.seq_len) == 6 * n + attention
    assert ffn_hidden(cfg.model) == int(cfg.model.hidden_size * 8 / 3)


def test_positions_restart_in_each_segment():
    segments = torch.tensor([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 5, 5]])
    assert _positions_in_segment(segments).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]


def test_attention_stays_inside_a_document():
    torch.manual_seed(0)
    model = GPT(ModelConfig(), seq_len=12).eval()
    tokens = torch.randint(0, 256, (1, 12))
    segments = torch.tensor([[0] * 5 + [1] * 7])
    changed = tokens.clone()
    changed[0, :5] = (changed[0, :5] + 1) % 256  # alter only the first document
    with torch.no_grad():
        a, b = model(tokens, segments), model(changed, segments)
        alone = model(tokens[:, 5:])  # the second document on its own, positions from 0
    assert torch.allclose(a[0, 5:], b[0, 5:], atol=1e-5)
    assert not torch.allclose(a[0, :5], b[0, :5])
    assert torch.allclose(a[0, 5:], alone[0], atol=1e-5)


def test_peak_table_has_a_figure_per_training_dtype():
    for table in PEAK_FLOPS.values():
        assert set(table) == {"fp32", "bf16", "fp16"}
