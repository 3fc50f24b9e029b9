"""A decoder-only GPT in one readable file (nanoGPT style), plus its FLOPs arithmetic.

Pre-norm blocks of RMSNorm → causal self-attention with rotary position embeddings →
RMSNorm → SwiGLU MLP whose hidden width is int(mlp_ratio × hidden_size). The input
embedding and the output head are separate matrices (as in InternLM and Llama).
Packed rows may hold several documents: `segment_ids` keeps attention inside a document
and restarts rotary positions at each document's first token.

FLOPs per token (training = forward + backward), the formula MFU uses (PaLM appendix B,
as nanoGPT and nanochat use it):

    flops_per_token = 6 · N + 12 · L · d · T

N = parameters that take part in a matmul per token: every parameter except the input
embedding table (a lookup) — the output head is included, norms are counted too (tiny).
L = layers, d = hidden size, T = seq_len; the attention term counts the full T×T score
matrix, without halving for the causal mask. MFU = flops_per_token × tokens/s per device
÷ peak FLOP/s of one device (PEAK_FLOPS below; the CPU figure is estimated or set with
train.peak_flops).
"""

from __future__ import annotations

import math
import os
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.config import ModelConfig

# Peak dense FLOP/s of one device for the training dtype (vendor datasheets, no sparsity).
# Matched against torch.cuda.get_device_name() by substring, first match wins.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "H100 PCIe": {"bf16": 756e12, "fp16": 756e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
    "A800": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp16": 362e12, "fp32": 91.6e12},
    "RTX 5090": {"bf16": 209.5e12, "fp16": 209.5e12, "fp32": 104.8e12},
    "RTX 4090": {"bf16": 165.2e12, "fp16": 165.2e12, "fp32": 82.6e12},
    "V100": {"bf16": 0.0, "fp16": 125e12, "fp32": 15.7e12},
}


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


def cpu_peak_flops(threads: int | None = None) -> float:
    """Rough fp32 peak of the cores this process uses: threads × GHz × FLOPs per cycle.

    FLOPs per cycle per core: 64 with AVX-512 FMA, 32 with AVX2 FMA (two FMA units),
    otherwise 8. Set train.peak_flops when you know better.
    """
    threads = threads or torch.get_num_threads()
    ghz, flags = 2.5, ""
    try:
        text = open("/proc/cpuinfo").read()
        mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", text)
        ghz = float(mhz.group(1)) / 1000 if mhz else ghz
        found = re.search(r"^flags\s*:(.*)$", text, re.M)
        flags = found.group(1) if found else ""
    except OSError:
        pass
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 8
    return threads * ghz * 1e9 * per_cycle


def peak_flops(device: torch.device, dtype: str, override: float = 0.0) -> float:
    if override > 0:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, table in PEAK_FLOPS.items():
            if key in name:
                return table[dtype]
        return 0.0  # unknown GPU: MFU is reported as null until train.peak_flops is set
    return cpu_peak_flops()


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.num_attention_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=False)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = ffn_hidden(cfg)
        self.gate = nn.Linear(cfg.hidden_size, hidden, bias=False)
        self.up = nn.Linear(cfg.hidden_size, hidden, bias=False)
        self.down = nn.Linear(hidden, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
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
        self.norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.norm_eps)
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
        if segment_ids is None:
            cos, sin, mask = self.cos[:T], self.sin[:T], None
        else:
            positions = _positions_in_segment(segment_ids)
            cos, sin = self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)
            causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
            mask = (segment_ids[:, :, None] == segment_ids[:, None, :]) & causal
            mask = mask.unsqueeze(1)
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


def select_device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads/process)"
