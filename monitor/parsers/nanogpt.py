"""karpathy/nanoGPT's train.py output.

    tokens per iteration will be: 491,520          → launch (tokens per step remembered)
    Overriding: wandb_run_name = gpt2-124M          → the run id (if before any record)
    Resuming training from out                      → launch.resume_from
    step 250: train loss 1.5440, val loss 1.7220    → eval (val_loss, train_loss)
    iter 100: loss 4.1234, time 123.45ms, mfu 12.34% → step

`mfu` is nanoGPT's running (EMA-smoothed) MFU, stored as `mfu_smoothed`; `-100.00%` is its
"not measured yet" sentinel and becomes null. `time` is the wall time of that one iteration.
Global throughput is tokens-per-iteration / time; nanoGPT never prints its world size, so the
per-GPU figure stays null. The lines carry no timestamp (a leading one added by a tool such
as `ts` is used when present): a step is dated by the file clock (text.py), advanced by `time`
for the printed iteration and the iterations since the last printed one.
"""

from __future__ import annotations

import re

from monitor.parsers.fields import loss_field, to_count, to_float, to_int
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_ITER_RE = re.compile(r"(?:^|\s)iter (\d+): loss ([^,\s]+), time ([^,\s]+?)ms(?:, mfu ([^,\s%]+)%)?")
_EVAL_RE = re.compile(r"(?:^|\s)step (\d+): train loss ([^,\s]+), val loss (\S+)")
_TOKENS_RE = re.compile(r"^tokens per iteration will be: ([\d,]+)")
_RUN_RE = re.compile(r"^Overriding: wandb_run_name = (.+)")
_RESUME_RE = re.compile(r"^Resuming training from (.+)")
_PARAMS_RE = re.compile(r"^number of parameters: ([\d.]+)M")
MFU_SENTINEL = -100.0


class NanoGPTParser(TextParser):
    name = "nanogpt"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, _ITER_RE, _EVAL_RE):
            return 0.95
        return 0.8 if head_matches(head, _TOKENS_RE) else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if " iter " in line or line.startswith("iter "):
            if match := _ITER_RE.search(line):
                return self._step(match, line, rank)
        if "val loss" in line and (match := _EVAL_RE.search(line)):
            ts = self.at()
            return self.eval_record(to_count(match.group(1)), ts, rank, val_loss=to_float(match.group(3)),
                                    train_loss=to_float(match.group(2)))
        if match := _TOKENS_RE.match(line):
            tokens = to_int(match.group(1))
            self.s["fmt"]["tokens_per_iter"] = tokens
            return self.open_launch(rank, tokens_per_step=tokens)
        if match := _RESUME_RE.match(line):
            self.update_launch(resume_from=match.group(1).strip())
            return []
        if match := _PARAMS_RE.match(line):
            self.update_launch(n_params=round(float(match.group(1)) * 1e6))
            return []
        if match := _RUN_RE.match(line):
            self.adopt_run_id(match.group(1).strip().strip("'\""))
            return []
        return None

    def _step(self, match: re.Match[str], line: str, rank: int) -> list[Record]:
        step_time = to_float(match.group(3))
        step_time = None if step_time is None else step_time / 1000
        mfu = to_float(match.group(4)) if match.group(4) else None
        fmt = self.s["fmt"]
        tokens = fmt.get("tokens_per_iter")
        step = to_count(match.group(1))
        # the iterations between two printed ones are ordinary: the slower printed figure is
        # the one that compiled or evaluated (nanoGPT's time includes an evaluation before it)
        previous, fmt["step_time"] = fmt.get("step_time"), step_time
        ordinary = min(step_time, previous) if step_time is not None and previous is not None else step_time
        return self.step_record(
            step, self.advance_steps(step, step_time, ordinary), rank,
            **loss_field(match.group(2)),
            step_time=step_time,
            mfu_smoothed=None if mfu is None or mfu == MFU_SENTINEL else mfu / 100,
            tokens_per_s=tokens / step_time if tokens and step_time else None,
        )
