"""RMSNorm and rotary position embeddings: the model's elementwise work, made cheap.

Eager on CPU, PyTorch's RMSNorm and the textbook rotary (`x·cos + cat(-x2, x1)·sin`) run as a
chain of small kernels, each reading and writing the whole activation, and their backward
doubles the chain (issue 17 measured them at half of a 4-layer model's elementwise time).
Here each has a hand-written autograd function with fewer passes: RMSNorm takes its
statistic with one fused reduction and saves the normalised input; rotary writes both halves
in place with the sine's sign folded in and no `cat`, and its backward is the same rotation
by the opposite angle. Under torch.compile the plain formulas are used instead, so that
inductor fuses them into the neighbouring kernels; on CUDA RMSNorm is PyTorch's fused kernel.
The maths is today's (tests/trainer/test_model.py holds both equal).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _eager() -> bool:
    return not torch.compiler.is_compiling()


class _RMSNormCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1])
        rstd = mean_square.add_(eps).rsqrt_()
        normed = x * rstd
        ctx.save_for_backward(normed, weight, rstd)
        return normed * weight

    @staticmethod
    def backward(ctx, grad):
        normed, weight, rstd = ctx.saved_tensors
        grad_normed = grad * weight
        # d/dx of x·rstd(x): rstd · (g − x̂ · mean(g · x̂))
        projection = torch.linalg.vecdot(grad_normed, normed, dim=-1).unsqueeze(-1).div_(-normed.shape[-1])
        grad_x = torch.addcmul(grad_normed, normed, projection).mul_(rstd)
        grad_weight = (grad * normed).flatten(0, -2).sum(0)
        return grad_x, grad_weight, None


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm (same parameters and state dict), with the cheaper eager path on CPU in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and _eager():
            return _RMSNormCPU.apply(x, self.weight, self.eps)
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position's angle per frequency, (seq_len, head_dim / 2): the rotation of
    the pair (x[i], x[i + head_dim/2]) — the rotate-half layout, as in Llama and InternLM."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(x1·cos − x2·sin, x2·cos + x1·sin), written into one new tensor without a cat."""
    x1, x2 = x.chunk(2, dim=-1)
    out = torch.empty_like(x)
    out1, out2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=out1).addcmul_(x2, sin, value=-1.0)
    torch.mul(x2, cos, out=out2).addcmul_(x1, sin)
    return out


class _Rotary(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, -sin), None, None  # a rotation's transpose turns the other way


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the last dimension of x (head_dim) by the angles in cos/sin (…, head_dim / 2),
    which broadcast against x's leading dimensions."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if _eager():
        return _Rotary.apply(x, cos, sin)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
