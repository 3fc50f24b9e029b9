"""Causal self-attention over packed rows: plain causal, or kept inside each document.

A packed row holds several documents; a token may attend only to earlier tokens of its own
document. The mask is built once per forward and shared by every layer, in one of two forms:

- on CUDA, a FlexAttention `BlockMask` (O(T) in the document ids plus O((T/128)²) block
  indices): FlexAttention runs as a fused kernel (inside the compiled model, or compiled on
  its own for an eager one) that skips the blocks between documents and never materialises
  a T×T matrix;
- on CPU, a dense (B, 1, T, T) boolean mask for SDPA's flash kernel: PyTorch 2.13 has no
  FlexAttention backward on CPU ("FlexAttention does not support backward on CPU"), with or
  without compile. At sequence 2,048 this mask is B × 4 MiB; see docs/benchmarks.md.

bench/bench_vs_nanogpt.py measures both paths' memory; tests/trainer/test_attention.py holds
them equal.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

DocumentMask = BlockMask | torch.Tensor | None  # None: plain causal attention


def use_flex(device: torch.device) -> bool:
    """FlexAttention where it trains: CUDA (on CPU it has no backward)."""
    return device.type == "cuda"


def document_mask(segment_ids: torch.Tensor | None, flex: bool) -> DocumentMask:
    """The per-document causal mask of segment_ids (B, T), in the form `attend` takes."""
    if segment_ids is None:
        return None
    B, T = segment_ids.shape
    if flex:
        def same_document_causal(b, h, q_index, kv_index):
            return (segment_ids[b, q_index] == segment_ids[b, kv_index]) & (q_index >= kv_index)

        compile_mask = segment_ids.device.type == "cuda" and not torch.compiler.is_compiling()
        return create_block_mask(same_document_causal, B, None, T, T, device=segment_ids.device,
                                 _compile=compile_mask)
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    return ((segment_ids[:, :, None] == segment_ids[:, None, :]) & causal).unsqueeze(1)


@functools.cache
def _compiled_flex_attention():
    """FlexAttention compiled on its own, for an eager model on CUDA (compiled once per process)."""
    return torch.compile(flex_attention, dynamic=False)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: DocumentMask) -> torch.Tensor:
    """q, k, v (B, H, T, head_dim) → (B, H, T, head_dim), causal and kept inside `mask`'s documents."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if isinstance(mask, BlockMask):
        kernel = flex_attention if torch.compiler.is_compiling() else _compiled_flex_attention()
        return kernel(q, k, v, block_mask=mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
