"""meta-pytorch/torchtune recipes' metric logger lines (`StdoutLogger`, `DiskLogger`'s log file).

    Writing logs to /tmp/CodeLlama-7b-hf/logs/log_1723844072.txt        → launch
    Step 1 | loss:2.085338592529297 lr:2e-05 tokens_per_second_per_gpu:57.8  → step
    Step 0 | loss:1.7535516023635864 lr:2e-05 gpu_resources:13708965376     (early versions)

`tokens_per_second_per_gpu` is per device (`tgs`); `peak_memory_active`, `_alloc`, `_reserved`
(GiB) become `peak_mem_bytes` (the allocated figure) and keep their names; other figures keep
theirs. The lines carry no time: records follow the file clock (text.py).
"""

from __future__ import annotations

import re

from monitor.parsers.fields import loss_field, to_count, to_float
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_STEP_RE = re.compile(r"Step (\d+) \| (\S+:\S+(?: \S+:\S+)*)\s*$")
_LAUNCH_RE = re.compile(r"Writing logs to \S+|Running \w+Recipe\w* with resolved config")
_RENAMED = {"lr": "lr", "tokens_per_second_per_gpu": "tgs", "grad_norm": "grad_norm"}


class TorchtuneParser(TextParser):
    name = "torchtune"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, re.compile(r"^Step \d+ \| loss:\S+ lr:")):
            return 0.95
        return 0.8 if head_matches(head, re.compile(r"torchtune\.(?:utils|training)")) else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if line.startswith("Step ") and (match := _STEP_RE.match(line)):
            fields: dict = {}
            for pair in match.group(2).split():
                key, _, value = pair.partition(":")
                if key == "loss":
                    fields.update(loss_field(value))
                elif key and key not in ("step", "ts", "rank", "host", "kind", "self"):
                    fields[_RENAMED.get(key, key)] = to_float(value)
            if fields.get("peak_memory_alloc") is not None:
                fields["peak_mem_bytes"] = round(fields["peak_memory_alloc"] * 2**30)
            return self.step_fields(to_count(match.group(1)), self.at(), fields, rank)
        if _LAUNCH_RE.search(line) and self.s["pending_launch"] is None:
            return self.open_launch(rank)
        return None
