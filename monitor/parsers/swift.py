"""modelscope/ms-swift's console: the Hugging Face Trainer's logged dicts, with swift's own keys.

    {'loss': 0.21932983, 'grad_norm': 0.57172734, 'learning_rate': 6.8e-07, 'memory(GiB)': 63.16,
     'train_speed(iter/s)': 0.011239, …, 'epoch': 0.89, 'global_step/max_steps': '78/176',
     'percentage': '44.32%', 'elapsed_time': '1h 54m 53s', 'remaining_time': '2h 24m 21s'} → step 78

The step is the dict's own `global_step/max_steps` (exact, unlike the plain Trainer's), `memory(GiB)`
(peak allocated) → `peak_mem_bytes`, `train_speed(iter/s)` → `steps_per_s`; `elapsed_time` moves the
file clock. Everything else is read as `hf_trainer` reads it (monitor/parsers/hf_trainer.py).
"""

from __future__ import annotations

import re
from typing import Any

from monitor.parsers.hf_trainer import HFTrainerParser
from monitor.parsers.text import head_matches
from monitor.records import Record

_ELAPSED_RE = re.compile(r"^(?:(\d+)d ?)?(?:(\d+)h ?)?(?:(\d+)m ?)?(?:(\d+)s)?$")


class SwiftParser(HFTrainerParser):
    name = "swift"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        return 0.95 if head_matches(head, re.compile(r"'global_step/max_steps': '\d+/\d+'")) else 0.0

    def _logged(self, logs: dict[str, Any], rank: int) -> list[Record]:
        progress = logs.pop("global_step/max_steps", None)
        if isinstance(progress, str) and progress.partition("/")[0].isdigit():
            logs["step"] = progress.partition("/")[0]
            logs["total_steps"] = progress.partition("/")[2]
        if isinstance(memory := logs.pop("memory(GiB)", None), (int, float, str)):
            try:
                logs["peak_mem_bytes"] = round(float(memory) * 2**30)
            except ValueError:
                pass
        if "train_speed(iter/s)" in logs:
            logs["steps_per_s"] = logs.pop("train_speed(iter/s)")
        elapsed = _ELAPSED_RE.match(str(logs.pop("elapsed_time", "")).strip())
        if elapsed is not None and any(elapsed.groups()):
            days, hours, minutes, seconds = (int(g or 0) for g in elapsed.groups())
            self.advance_elapsed(days * 86400 + hours * 3600 + minutes * 60 + seconds)
        for key in ("percentage", "remaining_time"):
            logs.pop(key, None)
        return super()._logged(logs, rank)
