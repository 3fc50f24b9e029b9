"""KellerJordan/modded-nanogpt's train_gpt.py output (also its forks, e.g. parameter-golf).

    step:5050/20000 train_loss:2.0232 train_time:219627ms step_avg:43.49ms   → step
    step:5200/20000 val_loss:2.1501 val_bpb:1.2701 train_time:226207ms step_avg:43.50ms → eval
    step:0/1480 val_loss:7.7109 train_time:0ms step_avg:nanms                → eval (step 0)

`train_time` is the training time so far, validation excluded; `step_avg` is its mean per step
(`step_time_avg`, a running mean, so not `step_time`). `step_time` is the growth of `train_time`
over the steps since the previous line. No line has a time: the file clock moves on by the growth
of `train_time` (validation passes are not in it, so the clock runs behind by them).
"""

from __future__ import annotations

import re

from monitor.parsers.fields import loss_field, to_count, to_float
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_LINE_RE = re.compile(r"step:(\d+)/(\d+) (.*)")
_SNIFF_RE = re.compile(r"^step:\d+/\d+ (?:train_loss|val_loss|train_time):")


def _ms(value: str) -> float | None:
    number = to_float(value.removesuffix("ms"))
    return None if number is None else number / 1000


class ModdedNanoGPTParser(TextParser):
    name = "modded_nanogpt"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        return 0.95 if head_matches(head, _SNIFF_RE) else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if not line.startswith("step:") or not (match := _LINE_RE.match(line)):
            return None
        values = dict(part.partition(":")[::2] for part in match.group(3).split())
        step = to_count(match.group(1))
        train_time = _ms(values["train_time"]) if "train_time" in values else None
        fields = {"total_steps": to_count(match.group(2)), "total_training_time_s": train_time}
        if "step_avg" in values:
            fields["step_time_avg"] = _ms(values["step_avg"])
        if "val_loss" in values:
            fields.update(loss_field(values["val_loss"], "val_loss"))
            if "val_bpb" in values:
                fields["val_bpb"] = to_float(values["val_bpb"])
            self._remember(step, train_time)
            return self.eval_record(step, self.at(), rank, **fields)
        if "train_loss" in values:
            fields.update(loss_field(values["train_loss"]))
        fmt = self.s["fmt"]
        last_step, last_time = fmt.get("step"), fmt.get("train_time")
        if train_time is not None and last_time is not None and last_step is not None and step > last_step:
            fields["step_time"] = (train_time - last_time) / (step - last_step)
        self._remember(step, train_time)
        return self.step_fields(step, self.at(), fields, rank)

    def _remember(self, step: int, train_time: float | None) -> None:
        """The file clock moves on by the growth of `train_time`; the line is remembered for the
        next one's `step_time`."""
        fmt = self.s["fmt"]
        if train_time is not None:
            self.advance_elapsed(train_time)
            fmt["train_time"] = train_time
        fmt["step"] = step
