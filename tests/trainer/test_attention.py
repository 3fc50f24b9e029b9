"""Per-document attention: FlexAttention's block mask and the dense mask give the same output.

FlexAttention has no backward on CPU in PyTorch 2.13, so the block-mask path (the one CUDA
trains with) is held to the dense one here in the forward pass: what is ours in it — the
mask function over document ids and the block mask built from it — is what this checks.
"""

import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask

from trainer.attention import attend, document_mask


def packed_segments(batch: int, seq_len: int, seed: int) -> torch.Tensor:
    """Document ids of packed rows: documents of random lengths, up to half a row (longer than a 128-token block at 384)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, seq_len // 2, (batch * seq_len,), generator=generator)
    ids = torch.repeat_interleave(torch.arange(len(lengths)), lengths)[:batch * seq_len]
    return ids.view(batch, seq_len)


@pytest.mark.parametrize("seq_len", [64, 384])
def test_block_mask_attention_equals_the_dense_mask(seq_len):
    torch.manual_seed(0)
    segments = packed_segments(3, seq_len, seed=seq_len)
    q, k, v = (torch.randn(3, 4, seq_len, 16) for _ in range(3))
    block_mask, dense = document_mask(segments, flex=True), document_mask(segments, flex=False)
    assert isinstance(block_mask, BlockMask) and dense.shape == (3, 1, seq_len, seq_len)
    assert segments.unique().numel() > 3 and (segments[:, 1:] != segments[:, :-1]).any()
    with torch.no_grad():
        flex, reference = attend(q, k, v, block_mask), attend(q, k, v, dense)
    assert torch.allclose(flex, reference, atol=1e-5, rtol=0)


def test_dense_mask_keeps_each_token_in_its_document():
    torch.manual_seed(0)
    segments = torch.tensor([[0, 0, 1, 1, 1, 2]])
    q, k, v = (torch.randn(1, 2, 6, 8) for _ in range(3))
    out = attend(q, k, v, document_mask(segments, flex=False))
    alone = attend(q[:, :, 2:5], k[:, :, 2:5], v[:, :, 2:5], None)  # document 1 by itself, causal
    assert torch.allclose(out[:, :, 2:5], alone, atol=1e-6)
    assert torch.allclose(out[:, :, 5], v[:, :, 5], atol=1e-6)  # a one-token document sees only itself
