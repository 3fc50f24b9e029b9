"""The GPT: parameter arithmetic, FLOPs, rotary positions, per-document attention, and the
faster layers held equal to the model's maths before issue 17 (a reference copy below)."""

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.config import ModelConfig, load_config
from trainer.model import GPT, _positions_in_segment, count_params, flops_per_token, ffn_hidden


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


# --- The model's maths before issue 17, copied as it was (textbook RMSNorm through F.rms_norm,
# rotary with a cat over full-width tables, a dense document mask, the MLP token-major), run on
# the new model's weights.

def reference_rotary_tables(seq_len, head_dim, base=10000.0):
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def reference_rotary(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def reference_forward(model, tokens, segment_ids=None):
    cfg = model.cfg
    B, T = tokens.shape
    cos, sin = reference_rotary_tables(T, cfg.hidden_size // cfg.num_attention_heads)
    if segment_ids is None:
        mask = None
    else:
        positions = _positions_in_segment(segment_ids)
        cos, sin = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        mask = ((segment_ids[:, :, None] == segment_ids[:, None, :]) & causal).unsqueeze(1)

    def norm(module, x):
        return F.rms_norm(x, (cfg.hidden_size,), module.weight, cfg.norm_eps)

    x = model.embed(tokens)
    for block in model.blocks:
        h, n_head = norm(block.attn_norm, x), cfg.num_attention_heads
        q, k, v = block.attn.qkv(h).split(cfg.hidden_size, dim=2)
        q, k, v = (t.view(B, T, n_head, cfg.hidden_size // n_head).transpose(1, 2) for t in (q, k, v))
        q, k = reference_rotary(q, cos, sin), reference_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        x = x + block.attn.proj(y.transpose(1, 2).contiguous().view(B, T, cfg.hidden_size))
        h = norm(block.mlp_norm, x)
        x = x + block.mlp.down(F.silu(block.mlp.gate(h)) * block.mlp.up(h))
    return model.head(norm(model.norm, x))


def _loss_and_grads(model, forward, tokens, segments):
    model.zero_grad(set_to_none=True)
    logits = forward(tokens, segments)
    F.cross_entropy(logits.flatten(0, 1), tokens.roll(-1, dims=1).flatten()).backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("packed", [False, True], ids=["causal", "documents"])
def test_new_layers_equal_the_reference_maths(packed):
    """fp32, same weights and batch: logits (of order 1) within 1e-5 of the reference, and every
    parameter's gradient within 2e-5 of its largest element (measured: 4e-7 and 4e-6)."""
    torch.manual_seed(3)
    cfg = ModelConfig(hidden_size=96, num_attention_heads=4, num_layers=3)
    model = GPT(cfg, seq_len=48)
    with torch.no_grad():  # like trained weights: norms not all ones, attention not uniform
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif "qkv" in name:
                p.mul_(10.0)
    tokens = torch.randint(0, 256, (3, 48))
    segments = torch.cumsum(torch.rand(3, 48) < 0.1, dim=1) if packed else None
    new_logits, new_grads = _loss_and_grads(model, model, tokens, segments)
    ref_logits, ref_grads = _loss_and_grads(model, lambda t, s: reference_forward(model, t, s), tokens, segments)
    assert (new_logits - ref_logits).abs().max() < 1e-5
    for name, ref in ref_grads.items():
        assert torch.allclose(new_grads[name], ref, rtol=0, atol=2e-5 * float(ref.abs().max())), name
    assert not math.isclose(float(new_logits.std()), 0.0)
