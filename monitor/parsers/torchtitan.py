"""pytorch/torchtitan's training log (colour codes and `[rankN]:` prefixes are stripped first).

    [titan] 2025-02-13 11:33:11,198 - root - INFO - Starting job: Llama 3 8B training  → launch
    … CUDA capacity: NVIDIA H200 with 139.83GiB memory          → launch.device
    … Peak FLOPS used for computing MFU: 9.890e+14              → launch.peak_flops
    … Building 1-D device mesh with ['dp_shard'], [8]           → launch.world_size (product)
    … Building device mesh with parallelism: pp=1, dp_replicate=1, dp_shard=7, cp=1, tp=1, ep=1
                                                               → world_size = pp×dp×cp×tp (newer)
    … Model llama3 8B size: 8,030,261,248 total parameters     → launch.n_params
    … Loading the checkpoint from ./outputs/checkpoint/step-10. → launch.resume_from
    … step: 10  loss:  9.8821  grad_norm: 1.23  memory: 49.59GiB(35.46%)  tps: 7,026
          tflops: 324.5  mfu: 41.15%                           → step
    … validate step: 10  loss: 2.345 …                         → eval
    … Training completed                                       → finish

`tps` is torchtitan's tokens per second per device (→ tgs); tokens_per_s = tps × world size.
`memory` is the peak reserved memory since the last log line (→ peak_mem_bytes).
`mfu: N/A` (or a missing figure) is null, and so is a negative loss: with pipeline parallelism the
ranks without the last stage print -1.0 or -2.0 in its place. Older versions print `wps` instead of `tps`. The loss
is the mean over data-parallel ranks of that step. Several ranks often print the same step line;
only the first counts.
"""

from __future__ import annotations

import re

from monitor.parsers.fields import loss_field, to_count, to_float, to_int
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_MESSAGE_RE = re.compile(r"(?:\[titan\] )?(?:\S+ \S+ - \S+ - [A-Z]+ - )?(.*)")
_STEP_RE = re.compile(r"(validate )?step:\s*(\d+)\s+loss:\s*(\S+)(.*)")
_FIGURE_RE = re.compile(r"(grad_norm|memory|tps|wps|tflops|mfu):\s*(\S+)")
_MEMORY_RE = re.compile(r"([\d.]+)GiB\(([\d.]+)%\)")
_START_RE = re.compile(r"Starting job: (.*)")
_DEVICE_RE = re.compile(r"(?:CUDA|GPU) capacity: (.+?)(?: \(\d+\))? with ([\d.]+)GiB memory")
_PEAK_RE = re.compile(r"Peak FLOPS used for computing MFU: (\S+)")
_MESH_RE = re.compile(r"Building \d+-D device mesh with \[.*?\], \[([\d, ]+)\]")
_PARALLELISM_RE = re.compile(r"Building device mesh with parallelism: (.*)")
_DEGREE_RE = re.compile(r"\b(pp|dp_replicate|dp_shard|cp|tp)=(\d+)")
"""Expert parallelism borrows its devices from these dimensions: it is not a factor."""
_SIZE_RE = re.compile(r"size: ([\d,]+) total parameters")
_LOAD_RE = re.compile(r"Loading the checkpoint (?:from )?(\S+?)\.?$")


class TorchtitanParser(TextParser):
    name = "torchtitan"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, re.compile(r"step:\s*\d+\s+loss:\s*\S+\s+(grad_norm|memory):")):
            return 0.95
        if head_matches(head, re.compile(r"^\[titan\] "), re.compile(r" - root - INFO - Starting job: ")):
            return 0.85
        return 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        message = _MESSAGE_RE.match(line).group(1)
        if "step:" in message and (match := _STEP_RE.match(message)):
            return self._step(match, rank)
        if match := _START_RE.match(message):
            return self.open_launch(rank, job=match.group(1).strip())
        if match := _DEVICE_RE.match(message):
            self.update_launch(device=match.group(1), device_memory_bytes=round(float(match.group(2)) * 2**30))
        elif match := _PEAK_RE.match(message):
            self.update_launch(peak_flops=to_float(match.group(1)))
        elif match := _MESH_RE.match(message):
            world = 1
            for size in match.group(1).replace(" ", "").split(","):
                world *= to_count(size) if size else 1
            self.update_launch(world_size=world)
        elif match := _PARALLELISM_RE.match(message):
            world = 1
            for _, degree in _DEGREE_RE.findall(match.group(1)):
                world *= to_count(degree)
            self.update_launch(world_size=world)
        elif (match := _SIZE_RE.search(message)) and message.startswith("Model "):
            self.update_launch(n_params=to_int(match.group(1)))
        elif match := _LOAD_RE.match(message):
            self.update_launch(resume_from=match.group(1))
        elif message == "Training completed":
            return self.end_record("finish", self.at(), "total_steps", rank, reason="total_steps")
        else:
            return None
        return []

    def _step(self, match: re.Match[str], rank: int) -> list[Record]:
        fields: dict = {}
        for name, value in _FIGURE_RE.findall(match.group(4)):
            if name == "memory":
                if memory := _MEMORY_RE.match(value):
                    fields["peak_mem_bytes"] = round(float(memory.group(1)) * 2**30)
                    fields["peak_mem_pct"] = float(memory.group(2))
            elif name == "mfu":
                mfu = None if value.startswith("N/A") else to_float(value.rstrip("%"))
                fields["mfu"] = None if mfu is None else mfu / 100
            elif name == "grad_norm":
                fields["grad_norm"] = to_float(value)
            else:
                fields["tgs" if name in ("tps", "wps") else name] = to_float(value)
        step = to_count(match.group(2))
        if match.group(1):
            return self.eval_record(step, self.at(), rank, **loss_field(match.group(3), "val_loss"),
                                    **{k: v for k, v in fields.items() if k != "tgs"})
        loss = loss_field(match.group(3))
        if loss["loss"] is not None and loss["loss"] < 0:  # ranks without the last PP stage print -1/-2
            loss = {"loss": None}
        return self.step_record(step, self.at(), rank, **loss, **fields)
