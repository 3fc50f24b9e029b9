"""MindSpore MindFormers' training log (`MFLossMonitor`), the trainer of the Ascend runs.

    2025-04-07 15:34:29,173 - [mindformers/core/callback/callback.py:529] - INFO - { Epoch:[  1/  2],
      step:[    2/   19], loss: 10.633, per_step_time: 1752ms, lr: 1e-05, overflow cond: False,
      loss_scale: 1.0, global_norm [10.579812], train_throughput_per_npu: 170.738T   → step
    print_output_info: Epoch:[  1/  1], step:[  116/  125], loss:[2.220/2.220], time:1951.612 ms,
      lr:[2.4499998e-06], overflow cond: False, loss_scale: 16384.0                (2023 versions)

`step:[s/n]` counts within the epoch: the record's step is (epoch − 1) × n + s. `per_step_time`
(or `time`) → `step_time`; `overflow cond` → `overflow` (a skipped update); `global_norm` →
`grad_norm`; `train_throughput_per_npu` (TFLOPS) → `tflops`; `loss:[a/b]` is this step's loss
and the epoch's mean: `loss` = a.
"""

from __future__ import annotations

import re

from monitor.parsers.fields import loss_field, to_count, to_float
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_LINE_RE = re.compile(r"Epoch:\[\s*(\d+)/\s*(\d+)\], step:\[\s*(\d+)/\s*(\d+)\], (.*)")
_PAIR_RE = re.compile(r"([a-z_ ]+?)(?::\s*| (?=\[))(\[[^\]]*\]|[^,]+)")


def _first(value: str) -> str:
    """`[2.220/2.220]` → `2.220`; a value with a space inside (`[1 31049]`, a garbled array) → ``."""
    content = value.strip().strip("[]").strip().split("/")[0].removesuffix("ms").strip()
    return "" if " " in content else content


class MindFormersParser(TextParser):
    name = "mindformers"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, re.compile(r"Epoch:\[\s*\d+/\s*\d+\], step:\[\s*\d+/\s*\d+\], loss")):
            return 0.95
        return 0.7 if head_matches(head, re.compile(r"mindformers/|- mindformers - ")) else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if "Epoch:[" not in line or not (match := _LINE_RE.search(line)):
            return None
        epoch, in_epoch, per_epoch = (to_count(match.group(i)) for i in (1, 3, 4))
        fields: dict = {"epoch": float(epoch)}
        for key, value in _PAIR_RE.findall(match.group(5)):
            key, raw = key.strip(), _first(value)
            if not raw:
                continue
            if key == "loss":
                fields.update(loss_field(raw))
            elif key in ("per_step_time", "time"):
                number = to_float(raw.removesuffix("ms"))
                fields["step_time"] = None if number is None else number / 1000
            elif key == "overflow cond":
                fields["overflow"] = raw == "True"
            elif key in ("lr", "loss_scale"):
                fields[key] = to_float(raw)
            elif key in ("global_norm", "global norm"):
                fields["grad_norm"] = _lenient(raw)
            elif key == "train_throughput_per_npu":
                fields["tflops"] = to_float(raw.removesuffix("T"))
        step = (max(epoch, 1) - 1) * per_epoch + in_epoch
        return self.step_fields(step, self.advance_steps(step, fields.get("step_time")), fields, rank)


def _lenient(raw: str) -> float | None:
    try:
        return to_float(raw)
    except ValueError:
        return None
