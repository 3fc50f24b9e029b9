"""Our trainer against nanoGPT at one shape, side by side in one process; and the memory of
per-document attention, dense mask against FlexAttention's block mask.

Shape: 4 layers, 4 heads, width 256, sequence 256, batch 8, byte vocabulary (264 rows), fp32,
one process, 2 threads. nanoGPT is a copy of its model shape written for this benchmark (so it
runs without a download): pre-norm blocks of LayerNorm without bias → causal SDPA → LayerNorm →
GELU MLP of 4× width, learned positions, the head tied to the token embedding, nanoGPT's
initialisation and AdamW grouping (the fused kernel only on CUDA, as nanoGPT chooses), timed as
nanoGPT's train.py times an iteration: the wall time between consecutive ends of an iteration
(next batch fetched between forward and backward, clip, step, zero_grad, `loss.item()`).
Our trainer is the real loop (`trainer.loop.train`, event log on), timed the same way: between
consecutive step records. Contenders alternate in rounds; medians of rounds and of per-round
ratios are reported.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LAYERS, HEADS, WIDTH, SEQ, BATCH, VOCAB = 4, 4, 256, 256, 8, 264
THREADS = 2


def nanogpt_model(compiled: bool):
    """nanoGPT's GPT at the benchmark's shape (bias=False, dropout 0), and its optimizer."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class LayerNorm(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(width))

        def forward(self, x):
            return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
            self.c_proj = nn.Linear(WIDTH, WIDTH, bias=False)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in self.c_attn(x).split(WIDTH, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = LayerNorm(WIDTH), SelfAttention(), LayerNorm(WIDTH)
            self.c_fc, self.c_proj = nn.Linear(WIDTH, 4 * WIDTH, bias=False), nn.Linear(4 * WIDTH, WIDTH, bias=False)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class NanoGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(VOCAB, WIDTH), nn.Embedding(SEQ, WIDTH)
            self.h = nn.ModuleList(Block() for _ in range(LAYERS))
            self.ln_f = LayerNorm(WIDTH)
            self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
            self.wte.weight = self.lm_head.weight  # weight tying
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * LAYERS))

        def forward(self, idx, targets):
            pos = torch.arange(0, idx.shape[1], dtype=torch.long, device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return logits, F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1), ignore_index=-1)

    torch.manual_seed(1337)
    model = NanoGPT()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95))  # nanoGPT asks for fused only on CUDA
    return (torch.compile(model) if compiled else model), optimizer


def nanogpt_iteration_seconds(tokens_path: Path, iterations: int, compiled: bool) -> list[float]:
    """nanoGPT's train.py loop on the token file: per-iteration wall times (dt)."""
    import torch

    model, optimizer = nanogpt_model(compiled)

    def get_batch():
        data = np.memmap(tokens_path, dtype=np.uint16, mode="r")  # recreated every batch, as nanoGPT does
        ix = torch.randint(len(data) - SEQ, (BATCH,))
        x = torch.stack([torch.from_numpy(data[i:i + SEQ].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + SEQ].astype(np.int64)) for i in ix])
        return x, y

    X, Y = get_batch()
    t0, times = time.time(), []
    for _ in range(iterations):
        for group in optimizer.param_groups:
            group["lr"] = 6e-4
        _, loss = model(X, Y)
        X, Y = get_batch()  # fetched between forward and backward
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t1 = time.time()
        times.append(t1 - t0)
        t0 = t1
        loss.item()  # log_interval = 1
    return times


def ours_step_seconds(data: Path, out: Path, steps: int, documents: bool, compiled: bool) -> list[float]:
    """Our trainer, in this process: wall time between consecutive step records."""
    from trainer.config import load_config
    from trainer.loop import train

    cfg = load_config("tiny", [
        f"data.path={data}", f"train.out_dir={out}", f"data.total_steps={steps}", "data.valid_every=0",
        f"model.hidden_size={WIDTH}", f"model.num_attention_heads={HEADS}", f"model.num_layers={LAYERS}",
        f"model.vocab_size={VOCAB}", f"data.seq_len={SEQ}", f"data.micro_bsz={BATCH}", "data.micro_num=1",
        f"data.pack_sample_into_one={'false' if documents else 'true'}", f"train.compile={str(compiled).lower()}",
        "train.print_every=0", "checkpoint.checkpoint_every=0"])
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        train(cfg)
    stamps = [r["ts"] for r in map(json.loads, (out / "events.jsonl").read_text().splitlines()) if r["kind"] == "step"]
    return list(np.diff(stamps))


def flops_per_token() -> tuple[float, float]:
    """(ours, nanoGPT's) training FLOPs per token, 6·N + 12·L·d·T, N without the input lookups."""
    from trainer.config import ModelConfig
    from trainer.model import flops_per_token as ours

    cfg = ModelConfig(hidden_size=WIDTH, num_attention_heads=HEADS, num_layers=LAYERS, vocab_size=VOCAB,
                      mlp_ratio=2.6666667)
    nano_n = LAYERS * (12 * WIDTH * WIDTH + 2 * WIDTH) + WIDTH + VOCAB * WIDTH  # blocks, ln_f, tied head
    return ours(cfg, SEQ), 6.0 * nano_n + 12.0 * LAYERS * WIDTH * SEQ


CONTENDERS = {  # name: (ours?, per-document masking, compiled)
    "nanoGPT": (False, False, False),
    "ours, causal": (True, False, False),
    "ours, per-document": (True, True, False),
    "nanoGPT, compiled": (False, False, True),
    "ours, causal, compiled": (True, False, True),
}


def speed(data: Path, tmp: Path, quick: bool) -> str:
    import torch

    torch.set_num_threads(THREADS)
    warmup, measured, rounds = (2, 4, 1) if quick else (2, 4, 3)
    tokens_path = next((data / "batch_0" / "slice_0").glob("*.bin"))
    per_round: dict[str, list[float]] = {name: [] for name in CONTENDERS}  # tokens/s, median of the round
    for r in range(rounds):
        for name, (ours, documents, compiled) in CONTENDERS.items():
            if ours:
                times = ours_step_seconds(data, tmp / f"{name}{r}".replace(" ", "_").replace(",", ""),
                                          warmup + measured + 1, documents, compiled)
            else:
                times = nanogpt_iteration_seconds(tokens_path, warmup + measured + 1, compiled)
            per_round[name].append(BATCH * SEQ / statistics.median(times[warmup:]))
            print(f"round {r}: {name}: {per_round[name][-1]:.0f} tokens/s", file=sys.stderr, flush=True)
    ours_flops, nano_flops = flops_per_token()
    rows = []
    for name, rates in per_round.items():
        baseline = per_round["nanoGPT"]
        ratios = [a / b for a, b in zip(rates, baseline)]
        rows.append(f"| {name} | {statistics.median(rates):.0f} | {', '.join(f'{x:.0f}' for x in rates)} | "
                    f"**{statistics.median(ratios):.3f}×** ({min(ratios):.3f}–{max(ratios):.3f}) |")
    return (
        f"### Against nanoGPT ({LAYERS} layers, {HEADS} heads, width {WIDTH}, sequence {SEQ}, batch {BATCH}, "
        f"vocabulary {VOCAB}, fp32, 1 process, {THREADS} threads)\n\n"
        f"{rounds} rounds, contenders alternating within each; per round the median over {measured} iterations "
        f"after {warmup} warm-up ones (compiled contenders compile before them). FLOPs per token: ours "
        f"{ours_flops / 1e6:.3f} M, nanoGPT {nano_flops / 1e6:.3f} M ({100 * (ours_flops / nano_flops - 1):+.2f} %).\n\n"
        "| contender | tokens/s (median) | per round | ÷ nanoGPT (median of rounds, range) |\n"
        "|---|---:|---|---:|\n" + "\n".join(rows)
    )


MEMORY_PROBE = r"""
import re, sys, torch
from trainer.attention import attend, document_mask
torch.set_num_threads(2)
seq_len, flex = int(sys.argv[1]), sys.argv[2] == "flex"
B, H, D = 1, 4, 64
segments = torch.repeat_interleave(torch.arange(seq_len), 300)[:seq_len].view(1, seq_len)  # 300-token documents
q, k, v = (torch.randn(B, H, seq_len, D, requires_grad=not flex) for _ in range(3))

def status(field):
    return int(re.search(field + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) from the current RSS
before = status("VmRSS")
mask = document_mask(segments, flex=flex)
mask_bytes = (sum(t.numel() * t.element_size() for t in mask.as_tuple() if isinstance(t, torch.Tensor))
              + segments.numel() * segments.element_size()  # the document ids its mask function reads
              if flex else mask.numel() * mask.element_size())
if not flex:
    attend(q, k, v, mask).sum().backward()
print(mask_bytes, status("VmHWM") - before)
"""


def memory(quick: bool) -> str:
    """Per-document attention of one layer (batch 1, 4 heads of 64, 300-token documents): the
    mask's bytes for both paths, and on CPU the dense path's peak (mask + SDPA forward and
    backward) from the process's high-water mark. The block mask's kernel has no backward on
    CPU; its activations on a GPU are bench/gpu_check.sh's to measure."""
    rows = []
    for seq_len in (2048,) if quick else (2048, 8192):
        figures = {}
        for path in ("dense", "flex"):
            proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(seq_len), path], cwd=REPO,
                                  env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                                  check=True)
            figures[path] = [int(x) for x in proc.stdout.split()]
        (dense_mask, dense_peak), (flex_mask, _) = figures["dense"], figures["flex"]
        rows.append(f"| {seq_len} | {dense_mask / 2**20:.1f} MiB | {dense_peak / 2**20:.0f} MiB | "
                    f"{flex_mask / 2**10:.1f} KiB | {dense_mask / flex_mask:.0f}× |")
    return (
        "### Per-document attention memory (one layer, batch 1, 4 heads × 64, 300-token documents)\n\n"
        + inspect.cleandoc(memory.__doc__) + "\n\n"
        "| sequence | dense mask | dense: mask + forward + backward (CPU peak) | block mask + document ids | "
        "mask ratio |\n|---:|---:|---:|---:|---:|\n" + "\n".join(rows)
    )


def main(quick: bool) -> str:
    from bench.bench_trainer import _prepare

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        data = _prepare(tmp)
        sections = [speed(data, tmp, quick), memory(quick)]
    command = ".venv/bin/python -m bench" + (" --quick" if quick else "") + " vs_nanogpt"
    return f"## Trainer against nanoGPT\n\nCommand: `{command}`\n\n" + "\n\n".join(sections)
