"""InternLM / InternEvo training logs (the InternLM 20B demo's format).

    2023-11-10 11:45:20,248 INFO parallel_context.py:555 in set_device -- process rank 0 is
        bound to host:HOST-10-140-60-69 device: 0        → launch (hosts; world = highest rank + 1)
    … Distributed environment is initialized, data parallel size: 4, pipeline parallel size: 1,
        tensor parallel size: 4                           → launch.world_size = 4 × 1 × 4
    2023-11-10T11:46:16.409+08:00 INFO [training_internlm.py, line 600, in
        record_current_batch_training_metrics] - pid=117775 : tflops=30.53 step=0 loss=11.54
        tgs (tokens/gpu/second)=246.32 tgs/tgs_SMA=246.32 … lr=4e-07 loss_scale=65536.0
        grad_norm={'0_default': 87.31, '1_fp32': 0.0} … acc/<source>=0.0 tokens/<source>=60571
        loss/<source>=11.55 …                             → step

Also read: InternEvo's `… INFO pipeline.py:770 in record_current_batch_training_metrics --
tflops=… step=642 loss=… real_tgs=… …` and early InternLM's comma-separated
`tflops=93.48,step=9,loss=7.50,tgs (tokens/gpu/second)=2104.89,…,grad_norm=20.60,…`.

Field mapping: `tgs (tokens/gpu/second)` → tgs (instantaneous; tokens_per_s = tgs × world size);
the averaged `tgs/…` figures keep their own names (`tgs_SMA`, `tgs_avg`, `last_tgs_10`, …) and
are never stored as tgs. `grad_norm` is a dict per parameter group: grad_norm is their combined
L2 norm sqrt(Σ g²) and `grad_norm_groups` keeps the dict. `acc/S`, `tokens/S`, `loss/S` become
per_source[S] = {acc, tokens, loss}; sources with no tokens in the step (printed as tokens 0,
acc 0.0, loss nan) are left out. `nan` figures are null. The body's reading:
monitor/parsers/internlm_fields.py.
"""

from __future__ import annotations

import re

from monitor.parsers.fields import to_count
from monitor.parsers.internlm_fields import body_values, step_fields
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_BOUND_RE = re.compile(r"process rank (\d+) is bound to host:(\S+) device: (\d+)")
_DIST_RE = re.compile(r"data parallel size: (\d+), pipeline parallel size: (\d+), tensor parallel size: (\d+)")
_METRICS_RE = re.compile(r"tgs \(tokens/gpu/second\)=|record_current_batch_training_metrics")


class InternLMParser(TextParser):
    name = "internlm"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, _BOUND_RE, _METRICS_RE):
            return 0.95
        return 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if "step=" in line and "loss=" in line and (start := _body_start(line)) >= 0:
            return self._step(line[start:].lstrip(" \t,"), rank)
        if "is bound to host:" in line and (match := _BOUND_RE.search(line)):
            return self._bound(to_count(match.group(1)), match.group(2), rank)
        if match := _DIST_RE.search(line):
            dp, pp, tp = (to_count(g) for g in match.groups())
            self.update_launch(world_size=dp * pp * tp)
            self.s["fmt"]["world_from_parallel"] = True
            return []
        return None

    def _bound(self, bound_rank: int, host: str, rank: int) -> list[Record]:
        fmt = self.s["fmt"]
        out: list[Record] = []
        hosts_by_rank = fmt.get("hosts_by_rank") or {}
        if str(bound_rank) in hosts_by_rank or (self.s["pending_launch"] is None and not hosts_by_rank):
            out = self.open_launch(rank)
            hosts_by_rank = {}
            fmt["world_from_parallel"] = False
        hosts_by_rank[str(bound_rank)] = host
        fmt["hosts_by_rank"] = hosts_by_rank
        hosts = list(dict.fromkeys(hosts_by_rank[r] for r in sorted(hosts_by_rank, key=int)))
        update = {"hosts": hosts}
        if not fmt.get("world_from_parallel"):
            update["world_size"] = max(map(int, hosts_by_rank)) + 1
        self.update_launch(**update)
        return out

    def _step(self, body: str, rank: int) -> list[Record]:
        step, fields = step_fields(body_values(body.replace("tgs (tokens/gpu/second)=", "tgs=")))
        if step is None:
            return []
        host = (self.s["fmt"].get("hosts_by_rank") or {}).get(str(rank))
        return self.step_fields(step, self.at(), fields, rank, host)


def _body_start(line: str) -> int:
    r"""Where the metrics start: the first `tflops=` or `step=` at the line's start or after a
    space or comma (the match start of `(?:^|[\s,])(?:tflops|step)=`), or -1."""
    best = -1
    for key in ("tflops=", "step="):
        at = line.find(key)
        while at > 0 and line[at - 1] != "," and not line[at - 1].isspace():
            at = line.find(key, at + 1)
        if at >= 0 and (best < 0 or at - 1 < best):
            best = max(at - 1, 0)
    return best
