"""Per-step figures: local sums, their reduction over ranks, throughput, MFU, summary line.

Every rank fills one float64 vector per step; a single `all_gather` brings all vectors to
every rank (it doubles as the stop-signal agreement), and rank 0 turns them into the
`step` record. Layout of the vector:

    [stop, documents, largest_length, loss_sum, correct, tokens, (loss_sum, correct, tokens) per source]

`tokens` counts the targets the loss is taken over (document-boundary targets are ignored
unless samples are packed into one), so `loss = loss_sum / tokens` and `acc = correct / tokens`.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from trainer.data import IGNORE

HEAD = 6  # stop, documents, largest_length, loss_sum, correct, tokens


def new_sums(n_sources: int, device: torch.device) -> torch.Tensor:
    return torch.zeros(HEAD + 3 * n_sources, dtype=torch.float64, device=device)


@torch.no_grad()
def add_micro_batch(sums: torch.Tensor, token_loss: torch.Tensor, logits: torch.Tensor,
                    targets: torch.Tensor, sources: torch.Tensor) -> None:
    """Accumulate one micro-batch's loss, accuracy and token counts, overall and per source."""
    valid = (targets != IGNORE).view(-1)
    loss = token_loss.view(-1)[valid].double()
    correct = (logits.argmax(-1).view(-1)[valid] == targets.view(-1)[valid]).double()
    src = sources.view(-1)[valid]
    n_sources = (sums.numel() - HEAD) // 3
    sums[3] += loss.sum()
    sums[4] += correct.sum()
    sums[5] += valid.sum()
    per_source = sums[HEAD:].view(n_sources, 3)
    per_source[:, 0] += torch.bincount(src, weights=loss, minlength=n_sources)
    per_source[:, 1] += torch.bincount(src, weights=correct, minlength=n_sources)
    per_source[:, 2] += torch.bincount(src, minlength=n_sources).double()


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1),
                           ignore_index=IGNORE, reduction="none")


def gather(sums: torch.Tensor, distributed: bool) -> torch.Tensor:
    """(world_size, len) — every rank's vector, on every rank."""
    if not distributed:
        return sums.unsqueeze(0)
    parts = [torch.empty_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, sums)
    return torch.stack(parts)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


@dataclass
class StepFigures:
    loss: float | None
    acc: float | None
    documents: int
    largest_length: int
    per_source: dict[str, dict]
    stop_requested: bool


def reduce_figures(gathered: torch.Tensor, sources: list[str]) -> StepFigures:
    gathered = gathered.cpu()
    total = gathered.sum(0)
    per_source = {}
    for i, name in enumerate(sources):
        loss_sum, correct, tokens = total[HEAD + 3 * i: HEAD + 3 * i + 3].tolist()
        per_source[name] = {"loss": _ratio(loss_sum, tokens), "acc": _ratio(correct, tokens), "tokens": int(tokens)}
    loss_sum, correct, tokens = total[3:6].tolist()
    return StepFigures(
        loss=_ratio(loss_sum, tokens), acc=_ratio(correct, tokens),
        documents=int(total[1]), largest_length=int(gathered[:, 2].max()),
        per_source=per_source, stop_requested=bool(gathered[:, 0].max() > 0),
    )


def peak_memory_bytes(device: torch.device) -> int:
    """GPU: peak allocated by torch on this device. CPU: peak resident set size of this process."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def throughput(tokens_per_rank: int, world_size: int, step_time: float, flops_per_token: float,
               peak_flops: float) -> dict[str, float | None]:
    """tgs = tokens per device per second; tokens_per_s = over all devices; tflops and MFU per device."""
    tgs = tokens_per_rank / step_time
    return {
        "tgs": tgs,
        "tokens_per_s": tgs * world_size,
        "tflops": flops_per_token * tgs / 1e12,
        "mfu": flops_per_token * tgs / peak_flops if peak_flops > 0 else None,
    }


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 700.0))


def summary_line(step: int, total_steps: int, r: dict) -> str:
    def num(key: str, fmt: str) -> str:
        return "-" if r.get(key) is None else format(r[key], fmt)

    mfu = "-" if r.get("mfu") is None else f"{100 * r['mfu']:.2f}%"
    return (f"step {step}/{total_steps} loss {num('loss', '.4f')} acc {num('acc', '.3f')} lr {num('lr', '.2e')} "
            f"gnorm {num('grad_norm', '.3f')} scale {num('loss_scale', '.0f')} tgs {num('tgs', '.0f')} "
            f"tok/s {num('tokens_per_s', '.0f')} mfu {mfu} step_time {num('step_time', '.3f')}s")
