"""InternLM / InternEvo training logs (seed 002).

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
acc 0.0, loss nan) are left out. `nan` figures are null.
"""

from __future__ import annotations

import math
import re

from monitor.parsers.fields import loss_field, to_count, to_float, to_int
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_BOUND_RE = re.compile(r"process rank (\d+) is bound to host:(\S+) device: (\d+)")
_DIST_RE = re.compile(r"data parallel size: (\d+), pipeline parallel size: (\d+), tensor parallel size: (\d+)")
_METRICS_RE = re.compile(r"tgs \(tokens/gpu/second\)=|record_current_batch_training_metrics")
_DICT_RE = re.compile(r"\{[^{}]*\}")
_SOURCE_TOKENS_RE = re.compile(r" tokens/([^\s=]+)=(\S+)")
_DICT_ITEM_RE = re.compile(r"'([^']*)':\s*([^,}]+)")
_FLOATS = ("tflops", "tgs", "lr", "loss_scale", "fwd_bwd_time", "acc", "perplexity")
_INT64 = float(2**63)
_INTS = ("num_consumed_tokens", "inf_nan_skip_batches", "num_samples_in_batch", "largest_length")


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
        body = body.replace("tgs (tokens/gpu/second)=", "tgs=")
        if "{" in body:
            body = _DICT_RE.sub(_squeeze, body)
        step, fields = _token_fields(body)
        if step is None:
            return []
        fields["per_source"] = _per_source(body) if " tokens/" in body else {}
        host = (self.s["fmt"].get("hosts_by_rank") or {}).get(str(rank))
        return self.step_fields(step, self.at(), fields, rank, host)


def _token_fields(body: str) -> tuple[int | None, dict]:
    """(step, fields) of a metric line's body; step None: not a step. On the hot path of every
    InternLM backlog: one split, numbers read with `float` inline (the helpers only for what
    it refuses); the per-source tokens, most of a line, skipped here and read by `_per_source`."""
    values = {}
    for token in body.split() if " " in body else body.split(","):  # early InternLM: commas
        if "/" in token and token[:4] != "tgs/":
            continue
        key, _, raw = token.partition("=")
        values[key] = raw
    step = values.pop("step", None)
    if step is None or (step := to_int(step)) is None:
        return None, {}
    fields: dict = {}
    if (raw := values.pop("loss", None)) is not None:
        fields.update(loss_field(raw))
    for key in _FLOATS:
        if (raw := values.pop(key, None)) is not None:
            try:
                value = float(raw)
            except ValueError:
                value = to_float(raw)
            fields[key] = value if value is None or value - value == 0.0 else None
    for key in _INTS:
        if (raw := values.pop(key, None)) is not None:
            try:
                value = float(raw)
            except ValueError:
                value = None
            fields[key] = int(value) if value is not None and -_INT64 < value < _INT64 else to_int(raw)
    if (raw := values.pop("grad_norm", None)) is not None:
        fields.update(_grad_norm(raw))
    for key, raw in values.items():
        try:
            value = float(raw)
        except ValueError:
            value = _number_or_text(raw)
        fields[key[4:] if key[:4] == "tgs/" else key] = (
            value if type(value) is not float or value - value == 0.0 else None)
    return step, fields


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


def _squeeze(match: re.Match[str]) -> str:
    return match.group(0).replace(" ", "")


def _per_source(body: str) -> dict[str, dict]:
    """{source: {tokens, acc, loss}} for the sources that had tokens in this step. A few are
    looked up by string search; many (a hostile line, or seed 002's ~40) by one pass over all
    tokens."""
    sources = [(name, tokens) for name, tokens in _SOURCE_TOKENS_RE.findall(body) if tokens.strip("0.")]
    per_source = {}
    if len(sources) > 8:
        raw = dict(token.partition("=")[::2] for token in body.split() if token.startswith(("acc/", "loss/")))
        for name, tokens in sources:
            figures: dict = {"tokens": to_int(tokens)}
            if (value := raw.get(f"acc/{name}")) is not None:
                figures["acc"] = to_float(value)
            if (value := raw.get(f"loss/{name}")) is not None:
                figures["loss"] = to_float(value)
            per_source[name] = figures
        return per_source
    for name, tokens in sources:
        figures = {"tokens": to_int(tokens)}
        for figure in ("acc", "loss"):
            key = f" {figure}/{name}="
            if (at := body.find(key)) >= 0:
                start = at + len(key)
                end = body.find(" ", start)
                figures[figure] = to_float(body[start:end if end >= 0 else None])
        per_source[name] = figures
    return per_source


def _grad_norm(value: str) -> dict:
    if not value.startswith("{"):
        return {"grad_norm": to_float(value)}
    groups = {name: to_float(number) for name, number in _DICT_ITEM_RE.findall(value)}
    finite = [g for g in groups.values() if g is not None]
    total = math.sqrt(sum(g * g for g in finite)) if finite and len(finite) == len(groups) else None
    return {"grad_norm": total, "grad_norm_groups": groups}


def _number_or_text(value: str) -> float | str | None:
    try:
        return to_float(value)
    except ValueError:
        return value[:200]
