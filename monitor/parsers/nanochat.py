"""karpathy/nanochat's scripts/base_train output.

    Vocab size: 65,536                                   → launch (or the earlier
                                                            "Autodetected device type: cuda")
    GPU: NVIDIA H100 80GB HBM3 | Peak FLOPS (BF16): 9.89e+14  → launch.device, .peak_flops
    Tokens / micro-batch / rank: 8 x 2048 = 16,384       ┐ world size =
    Tokens / micro-batch: 131,072                        ┘ 131,072 / 16,384 = 8
    Estimated FLOPs per token: 1.207960e+10              → launch.flops_per_token
    Resuming optimization from step 4000                 → launch.resume_from
    step 00123/21400 (0.57%) | loss: 3.456789 | lrm: 1.00 | dt: 1571.88ms | tok/sec: 83,385 |
        mfu: 50.92 | total time: 0.00m                   → step
    Step 00250 | Validation bpb: 1.147239                → eval (val_bpb)
    Step 02000 | CORE metric: 0.1545                     → eval (core_metric)
    Peak memory usage: 19000.00MiB                       → finish (printed after the loop)

The printed `loss` is a debiased EMA of the training loss: it is stored as `loss_smoothed`
and `loss` stays null. `tok/sec` is global (the whole batch over dt); tgs = that / world size.
`mfu` (`bf16_mfu` in newer versions) is a percentage; newer versions print the data position
as `epoch: 1 pq: 0 rg: 3` (`data_epoch`, `data_file` the parquet file, `data_row_group`); nanochat prints 0.00 where it cannot
measure it (no known peak FLOPS, e.g. CPU/NPU), so 0.00 becomes null. `lrm` is the learning-
rate multiplier (`lr_multiplier`), not the learning rate. `print0` lines carry no timestamp:
a step is dated by the file clock (text.py) advanced by its `dt`; nanochat's `logging` lines
(`2025-10-25 16:07:01,123 - nanochat.checkpoint_manager - INFO - …`) and a stamp in the file
name anchor it. `total time` is the sum of `dt` after step 10, not a wall clock.
"""

from __future__ import annotations

import re

from monitor.parsers.fields import loss_field, to_count, to_float, to_int
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_STEP_RE = re.compile(r"step (\d+)(?:/(\d+))? \(([\d.]+)%\) \| (.*)")
_EVAL_RE = re.compile(r"Step (\d+) \| (Validation bpb|CORE metric): (\S+)")
_LAUNCH_RE = re.compile(r"(?:Autodetected device type|Vocab size): ")
_GPU_RE = re.compile(r"GPU: (.+?) \| Peak FLOPS \(BF16\): (\S+)")
_RANK_TOKENS_RE = re.compile(r"Tokens / micro-batch / rank: .* = ([\d,]+)")
_WORLD_TOKENS_RE = re.compile(r"Tokens / micro-batch: ([\d,]+)")
_FLOPS_RE = re.compile(r"Estimated FLOPs per token: (\S+)")
_PARAMS_RE = re.compile(r"Number of parameters: ([\d,]+)")
_RESUME_RE = re.compile(r"Resuming optimization from step (\d+)")
_RUN_RE = re.compile(r"Overriding: run = (.+)")
_PEAK_RE = re.compile(r"Peak memory usage: ([\d.]+)MiB")


def _seconds(value: str, unit: str) -> float | None:
    number = to_float(value.removesuffix(unit))
    return None if number is None else number * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


class NanochatParser(TextParser):
    name = "nanochat"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, re.compile(r"^step \d+(/\d+)? \([\d.]+%\) \| loss: ")):
            return 0.95
        return 0.8 if head_matches(head, _RANK_TOKENS_RE, _EVAL_RE) else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if line.startswith("step ") and (match := _STEP_RE.match(line)):
            return self._step(match, rank)
        if line.startswith("Step ") and (match := _EVAL_RE.match(line)):
            name = "val_bpb" if match.group(2) == "Validation bpb" else "core_metric"
            return self.eval_record(to_count(match.group(1)), self.at(), rank,
                                    **{name: to_float(match.group(3))})
        if _LAUNCH_RE.match(line):
            if line.startswith("Vocab") and self.s["pending_launch"] is not None:
                return []
            return self.open_launch(rank)
        if match := _GPU_RE.match(line):
            self.update_launch(device=match.group(1), peak_flops=to_float(match.group(2)))
        elif match := _RANK_TOKENS_RE.match(line):
            self.s["fmt"]["rank_tokens"] = to_int(match.group(1))
        elif match := _WORLD_TOKENS_RE.match(line):
            per_rank = self.s["fmt"].get("rank_tokens")
            world_tokens = to_int(match.group(1))
            if per_rank and world_tokens:
                self.update_launch(world_size=world_tokens // per_rank)
        elif match := _FLOPS_RE.match(line):
            self.update_launch(flops_per_token=to_float(match.group(1)))
        elif match := _PARAMS_RE.match(line):
            self.update_launch(n_params=to_int(match.group(1)))
        elif match := _RESUME_RE.match(line):
            self.update_launch(resume_from=f"step {match.group(1)}")
        elif match := _RUN_RE.match(line):
            self.adopt_run_id(match.group(1).strip().strip("'\""))
        elif match := _PEAK_RE.match(line):
            peak = to_float(match.group(1))
            return self.end_record("finish", self.at(), "total_steps", rank, reason="total_steps",
                                   peak_mem_bytes=None if peak is None else round(peak * 2**20))
        else:
            return None
        return []

    def _step(self, match: re.Match[str], rank: int) -> list[Record]:
        fields: dict = {}
        if match.group(2):
            fields["total_steps"] = to_count(match.group(2))
        for part in match.group(4).split(" | "):
            key, _, value = part.partition(": ")
            value = value.strip()
            if not value:
                continue
            if key == "loss":
                smoothed = loss_field(value, "loss_smoothed")
                fields.update(smoothed)
            elif key == "lrm":
                fields["lr_multiplier"] = to_float(value)
            elif key == "dt":
                fields["step_time"] = _seconds(value, "ms" if value.endswith("ms") else "s")
            elif key == "tok/sec":
                fields["tokens_per_s"] = to_float(value)
            elif key in ("mfu", "bf16_mfu"):
                mfu = to_float(value.rstrip("%"))
                fields["mfu"] = mfu / 100 if mfu else None
            elif key == "epoch":  # `epoch: 1 pq: 0 rg: 3`: the data position (parquet file, row group)
                words = value.split()
                fields["data_epoch"] = to_int(words[0])
                for name, number in zip(words[1::2], words[2::2]):
                    if name in ("pq:", "rg:"):
                        fields["data_file" if name == "pq:" else "data_row_group"] = to_int(number)
            elif key in ("total time", "eta") and value.endswith("m"):
                fields["total_training_time_s" if key == "total time" else "eta_s"] = _seconds(value, "m")
            elif key == "remaining" and value.endswith("s"):
                fields["remaining_s"] = _seconds(value, "s")
        step = to_count(match.group(1))
        return self.step_record(step, self.advance_steps(step, fields.get("step_time")), rank, **fields)
