"""hiyouga/LLaMA-Factory's `trainer_log.jsonl` (its console is the Hugging Face Trainer's: read
as `hf_trainer`).

    {"current_steps": 3200, "total_steps": 3235, "loss": 4.4671, "eval_loss": null, …,
     "learning_rate": 1.44e-08, "epoch": 0.99, "percentage": 98.92, "elapsed_time": "5:13:22",
     "remaining_time": "0:03:25"}                                     → step 3200
    {"current_steps": 3235, "total_steps": 3235, "loss": null, …}     → finish (training done)
    {"current_steps": 500, …, "eval_loss": 0.61, …}                   → eval

`learning_rate` (older) or `lr` → `lr`; `throughput` (tokens/s, newer versions) → `tokens_per_s`;
`total_tokens` → `num_consumed_tokens`; `elapsed_time` (`H:MM:SS`, `1 day, 4:06:56`) moves the
file clock, which dates the records (the file has no times). A line that is not JSON is bad.
"""

from __future__ import annotations

import re

import orjson

from monitor.parsers.base import BadLine
from monitor.parsers.fields import loss_field, to_count, to_float, to_int
from monitor.parsers.text import TextParser
from monitor.records import Record

_ELAPSED_RE = re.compile(r"(?:(\d+) days?, )?(\d+):(\d\d):(\d\d)$")
_RENAMED = {"learning_rate": "lr", "throughput": "tokens_per_s", "total_tokens": "num_consumed_tokens",
            "accuracy": "acc"}
_SKIPPED = {"current_steps", "total_steps", "loss", "eval_loss", "predict_loss", "percentage",
            "elapsed_time", "remaining_time", "epoch"}


def _seconds(text: object) -> float | None:
    match = _ELAPSED_RE.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


class LlamaFactoryParser(TextParser):
    name = "llamafactory"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        lines = [line.strip() for line in head if line.strip()]
        return 0.95 if lines and lines[0].startswith('{"current_steps":') else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if not line.startswith('{"current_steps"'):
            return None
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise BadLine("a trainer_log.jsonl line that is not JSON (cut off?)") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("current_steps"), int):
            raise BadLine("a trainer_log.jsonl line without an integer current_steps")
        step, total = to_count(str(entry["current_steps"])), entry.get("total_steps")
        if (elapsed := _seconds(entry.get("elapsed_time"))) is not None:
            self.advance_elapsed(elapsed)
        fields = {"total_steps": total if isinstance(total, int) else None,
                  "epoch": to_float(entry["epoch"]) if isinstance(entry.get("epoch"), (int, float)) else None}
        for key, value in entry.items():
            if key in _SKIPPED or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            name = _RENAMED.get(key, key)
            fields[name] = to_int(value) if name == "num_consumed_tokens" else to_float(value)
        if entry.get("eval_loss") is not None:
            return self.eval_record(step, self.at(), rank, **loss_field(str(entry["eval_loss"]), "val_loss"), **fields)
        if entry.get("loss") is not None:
            return self.step_fields(step, self.at(), {**loss_field(str(entry["loss"])), **fields}, rank)
        if isinstance(total, int) and step == total:
            return self.end_record("finish", self.at(), "total_steps", rank, step=step, reason="total_steps")
        return []
