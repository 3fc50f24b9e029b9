"""A decoder-only GPT in one readable file (nanoGPT style), plus its FLOPs arithmetic.

Pre-norm blocks of RMSNorm → causal self-attention with rotary position embeddings →
RMSNorm → SwiGLU MLP whose hidden width is int(mlp_ratio × hidden_size). The input
embedding and the output head are separate matrices (as in InternLM and Llama).
Packed rows may hold several documents: `segment_ids` keeps attention inside a document
(trainer/attention.py) and restarts rotary positions at each document's first token.
RMSNorm and rotary are in trainer/layers.py.

FLOPs per token (training = forward + backward), the formula MFU uses (PaLM appendix B,
as nanoGPT and nanochat use it):

    flops_per_token = 6 · N + 12 · L · d · T

N = parameters that take part in a matmul per token: every parameter except the input
embedding table (a lookup) — the output head is included, norms are counted too (tiny).
L = layers, d = hidden size, T = seq_len; the attention term counts the full T×T score
matrix, without halving for the causal mask. MFU = flops_per_token × tokens/s per device
÷ peak FLOP/s of one device (trainer/hardware.py; the CPU figure is estimated or set with
train.peak_flops).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.attention import DocumentMask, attend, document_mask, use_flex
from trainer.config import ModelConfig
from trainer.layers import RMSNorm, apply_rotary, rotary_tables


def ffn_hidden(cfg: ModelConfig) -> int:
    return int(cfg.mlp_ratio * cfg.hidden_size)


def count_params(cfg: ModelConfig) -> tuple[int, int]:
    """(all parameters, parameters without the input embedding), without building the model."""
    d, f, v = cfg.hidden_size, ffn_hidden(cfg), cfg.vocab_size
    per_layer = 4 * d * d + 3 * d * f + 2 * d  # qkv + out projection, SwiGLU, two norms
    body = cfg.num_layers * per_layer + d + d * v  # blocks, final norm, output head
    return body + v * d, body


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    _, n = count_params(cfg)
    return 6.0 * n + 12.0 * cfg.num_layers * cfg.hidden_size * seq_len


MODEL_STATE_BYTES_PER_PARAM = 16  # fp32 weights 4 + fp32 grads 4 + AdamW moments 8 (DDP: on every device)


def arithmetic(cfg: ModelConfig, seq_len: int, tokens_per_device_step: int) -> dict[str, float]:
    """Size, FLOPs and model-state memory of one configuration, without building it."""
    total, _ = count_params(cfg)
    per_token = flops_per_token(cfg, seq_len)
    return {
        "params": total,
        "flops_per_token": per_token,
        "flops_per_device_step": per_token * tokens_per_device_step,
        "model_state_bytes": total * MODEL_STATE_BYTES_PER_PARAM,
    }


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.num_attention_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=False)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: DocumentMask) -> torch.Tensor:
        B, T, C = x.shape
        # split/unbind, not indexing: their backward joins the gradients (one cat) where an
        # index's backward zero-fills a whole qkv-sized tensor per piece
        qk, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).split([2, 1], dim=2)
        q, k = apply_rotary(qk, cos, sin).unbind(2)  # q and k rotated together: one pass, not two
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.squeeze(2).transpose(1, 2)
        y = attend(q, k, v, mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = ffn_hidden(cfg)
        self.gate = nn.Linear(cfg.hidden_size, hidden, bias=False)
        self.up = nn.Linear(cfg.hidden_size, hidden, bias=False)
        self.down = nn.Linear(hidden, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """down(silu(gate(x)) · up(x)), computed feature-major (W·xᵀ, hidden × tokens): the same
        products, but CPU BLAS runs an output width that is no multiple of 16 (8/3 × 256 = 682)
        1.7× faster in this layout; the MLP's forward and backward take 85 ms instead of 100."""
        tokens = x.reshape(-1, x.shape[-1]).t()
        hidden = F.silu(self.gate.weight @ tokens) * (self.up.weight @ tokens)
        return F.linear(hidden.t(), self.down.weight).view(x.shape)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, seq_len: int):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        cos, sin = rotary_tables(seq_len, cfg.hidden_size // cfg.num_attention_heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("proj.weight", "down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.num_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, tokens: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T) → logits (B, T, vocab). segment_ids (B, T): document of each token."""
        B, T = tokens.shape
        if segment_ids is None:  # tables broadcast over (B, T, q/k, heads, head_dim / 2)
            cos, sin = self.cos[:T, None, None], self.sin[:T, None, None]
        else:
            positions = _positions_in_segment(segment_ids)
            cos, sin = self.cos[positions][:, :, None, None], self.sin[positions][:, :, None, None]
        mask = document_mask(segment_ids, use_flex(tokens.device))
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.head(self.norm(x))


def _positions_in_segment(segment_ids: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, … restarting wherever the segment id changes along the row."""
    B, T = segment_ids.shape
    index = torch.arange(T, device=segment_ids.device).expand(B, T)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    start_index = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - start_index
