"""DeepSpeed's engine log lines, printed by any trainer that runs on DeepSpeed.

    [2022-03-11 02:06:58,985] [INFO] [logging.py:69:log_dist] [Rank 0] step=40, skipped=2,
        lr=[5e-05], mom=[[0.9, 0.999]]                                   → step (lr, skipped_steps)
    [2022-03-11 02:06:58,985] [INFO] [timer.py:189:stop] 0/40, SamplesPerSec=83.48…,
        MemAllocated=0.26GB, MaxMemAllocated=9.02GB                      → the same step's figures
    steps: 200 loss: 5.5508 lm loss: 5.5103 moe loss: 0.0405 iter time (s): 0.936
        samples/sec: 136.706                                             → step (pipeline engine)
    -------------------------- DeepSpeed Flops Profiler --------------------------
    world size: 128 / iter latency: … / FLOPS per GPU = … / samples/second: …  → the profile

The `step=` line and the timer line that follows it make one record (held until the next line).
`skipped` is DeepSpeed's running count of updates skipped for fp16 overflow (`skipped_steps`).
The FLOPs profiler's summary gives the world size (so `tgs` can be derived) and its figures are
kept on the profiled step's record: `profiler_tflops` (per GPU), `profiler_step_time`,
`profiler_samples_per_s`, `n_params` on the launch.
"""

from __future__ import annotations

import re

from monitor.parsers import endings
from monitor.parsers.fields import loss_field, to_count, to_float
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_STEP_RE = re.compile(r"\[Rank \d+\] step=(\d+), skipped=(\d+), lr=\[([^\],]*)")
_TIMER_RE = re.compile(r"\[timer\.py:\d+:stop\] .*?(\d+)(?:, |/micro_step.*?global_step=\d+, )"
                       r"(?:RunningAvg)?SamplesPerSec=([\d.eE+-]+)(?:, CurrSamplesPerSec=([\d.eE+-]+))?"
                       r"(?:, MemAllocated=([\d.]+)GB, MaxMemAllocated=([\d.]+)GB)?")
_PIPE_RE = re.compile(r"steps: (\d+) loss: (\S+) (.*?)iter time \(s\): (\S+) samples/sec: ([\d.]+)")
_EXTRA_LOSS_RE = re.compile(r"([a-z_ ]+?) loss: (\S+) ")
_PROFILE_RE = re.compile(r"^(world size|params per (?:gpu|GPU)|iter latency|samples/second|FLOPS per GPU = [^:]*)"
                         r":\s+(\S+)\s*(\S*)")
_UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "ms": 1e-3, "us": 1e-6, "s": 1.0}


class DeepSpeedParser(TextParser):
    name = "deepspeed"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, _STEP_RE, re.compile(r"^steps: \d+ loss: \S+ .*iter time \(s\)")):
            return 0.9
        return 0.6 if head_matches(head, re.compile(r"\[logging\.py:\d+:log_dist\] \[Rank 0\] DeepSpeed")) else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        fmt = self.s["fmt"]
        if "[timer.py" in line and fmt.get("held") and (match := _TIMER_RE.search(line)):
            held = fmt["held"]
            held["fields"].update(samples_per_s=to_float(match.group(3) or match.group(2)))
            if match.group(5):
                held["fields"]["peak_mem_bytes"] = round(float(match.group(5)) * 2**30)
            return self._release()
        out = self._release()
        found = self._own(line, rank)
        if found is None:
            return out + endings.detect(self, line, rank) if out else None
        return out + found

    def flush(self) -> list[Record]:
        return self._release() + super().flush()

    def _own(self, line: str, rank: int) -> list[Record] | None:
        fmt = self.s["fmt"]
        if "step=" in line and (match := _STEP_RE.search(line)):
            fields = {"lr": to_float(match.group(3)) if match.group(3).strip() else None,
                      "skipped_steps": to_count(match.group(2)), **fmt.pop("profile", {})}
            fmt["held"] = {"step": to_count(match.group(1)), "ts": self.at(), "rank": rank, "fields": fields}
            return []
        if line.startswith("steps: ") and (match := _PIPE_RE.match(line)):
            step_time = to_float(match.group(4))
            fields = {**loss_field(match.group(2)), "step_time": step_time,
                      "samples_per_s": to_float(match.group(5)), **fmt.pop("profile", {})}
            for name, value in _EXTRA_LOSS_RE.findall(match.group(3)):
                fields[f"{name.strip().replace(' ', '_')}_loss"] = to_float(value)
            step = to_count(match.group(1))
            return self.step_fields(step, self.advance_steps(step, step_time), fields, rank)
        if match := _PROFILE_RE.match(line.strip()):
            return self._profile(match.group(1), match.group(2), match.group(3))
        return None

    def _profile(self, key: str, value: str, unit: str) -> list[Record]:
        profile = self.s["fmt"].setdefault("profile", {})
        try:
            number = float(value) * _UNITS.get(unit[:1] if unit not in _UNITS else unit, 1.0)
        except ValueError:
            return []
        if key == "world size":
            self.update_launch(world_size=int(number))
        elif key.startswith("params per"):
            self.update_launch(n_params=round(number))
        elif key == "iter latency":
            profile["profiler_step_time"] = number
        elif key == "samples/second":
            profile["profiler_samples_per_s"] = number
        elif key.startswith("FLOPS per GPU"):
            profile["profiler_tflops"] = number / 1e12
        return []

    def _release(self) -> list[Record]:
        held = self.s["fmt"].pop("held", None)
        if held is None:
            return []
        return self.step_fields(held["step"], held["ts"], held["fields"], held["rank"])
