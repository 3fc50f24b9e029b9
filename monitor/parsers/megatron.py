"""NVIDIA Megatron-LM's training log (also Megatron-DeepSpeed and most forks).

Forks that print "this/average" pairs (`elapsed time per iteration (ms): 13372.8/13364.7`) are
read by their first figure, this line's.

    using world size: 8, data-parallel size: 1, …          → launch (world size)
    ------------------------ arguments ------------------------
      seq_length ...................................... 8192   → remembered: seq_length,
      …                                                           log_interval, train_iters
    -------------------- end of arguments ---------------------
     [2024-04-06 03:02:12] iteration   71/  100 | consumed samples: 9088 | elapsed time per
       iteration (ms): 5361.6 | throughput per GPU (TFLOP/s/GPU): 243.6 | learning rate: … |
       global batch size: 128 | lm loss: 1.818812E+00 | loss scale: 1.0 | grad norm: 1.300 |
       number of skipped iterations: 0 | number of nan iterations: 0 |   → step
     validation loss at iteration 4 | lm loss value: 1.102960E+01 | lm loss PPL: … |  → eval
     loading checkpoint from ./checkpoints/gpt-2 at iteration 3  → launch.resume_from
    [after training is done] datetime: …                    → finish, if the last iteration
                                                               reached the total
    exiting program after receiving SIGTERM.                → stop (SIGTERM)

`elapsed time per iteration` and `lm loss` are means over the `log_interval` iterations since the
previous line: `step_time` and `loss` hold them, and `loss_window` says over how many
iterations (when the arguments dump gave it); a line without its `[time]` is dated by the file
clock (text.py), advanced by step time × the iterations since the last line. Throughput: tokens_per_s = global batch size ×
seq_length / step time, tgs = that / world size (both need the arguments dump).
"""

from __future__ import annotations

import re

from monitor.parsers.fields import loss_field, to_count, to_float, to_int
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_ITER_RE = re.compile(r"iteration\s+(\d+)/\s*(\d+) \|(.*)")
_VALID_RE = re.compile(r"validation loss at iteration (\d+) \|(.*)")
_WORLD_RE = re.compile(r"using world size: (\d+)")
_ARG_RE = re.compile(r"  (\w+) \.{3,} ?(.*)")
_LOAD_RE = re.compile(r"loading checkpoint from (\S+) at iteration (\d+)")
_EXIT_RE = re.compile(r"exiting program (?:after receiving (SIG\w+)|after [\d.]+ minutes|at iteration \d+)")
_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf")
_ARGS = {"seq_length": int, "log_interval": int, "train_iters": int, "world_size": int,
         "global_batch_size": int, "wandb_exp_name": str}

# `key: value` of an iteration line → (field, converter); unknown keys keep a snake_case name.
_FIELDS = {
    "consumed samples": ("consumed_samples", to_int),
    "elapsed time per iteration (ms)": ("step_time", lambda v: _ms(v)),
    "throughput per GPU (TFLOP/s/GPU)": ("tflops", to_float),
    "tokens per GPU (tokens/s/GPU)": ("tgs", to_float),
    "learning rate": ("lr", to_float),
    "global batch size": ("global_batch_size", to_int),
    "loss scale": ("loss_scale", to_float),
    "grad norm": ("grad_norm", to_float),
    "number of skipped iterations": ("skipped_iterations", to_int),
    "number of nan iterations": ("nan_iterations", to_int),
}


def _ms(value: str) -> float | None:
    number = to_float(value)
    return None if number is None else number / 1000


def _snake(key: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", key.lower()).strip("_")


class MegatronParser(TextParser):
    name = "megatron"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, re.compile(r"iteration\s+\d+/\s*\d+ \| consumed samples")):
            return 0.95
        if head_matches(head, _WORLD_RE, re.compile(r"^-+ arguments -+$")):
            return 0.8
        if head_matches(head, _VALID_RE, re.compile(r"saving checkpoint at iteration\s+\d+ to ")):
            return 0.7
        return 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if "iteration" in line:
            if match := _ITER_RE.search(line):
                return self._step(match, line, rank)
            if match := _VALID_RE.search(line):
                return self._eval(match, line, rank)
            if match := _LOAD_RE.search(line):
                self.update_launch(resume_from=match.group(1))
                return []
        fmt = self.s["fmt"]
        if fmt.get("in_args"):
            if "end of arguments" in line:
                fmt["in_args"] = False
            elif (match := _ARG_RE.match(line)) and match.group(1) in _ARGS:
                self._argument(match.group(1), match.group(2).strip())
            return []
        if line.startswith("using world size:") and (match := _WORLD_RE.match(line)):
            out = self.open_launch(rank)
            self.update_launch(world_size=to_count(match.group(1)))
            return out
        if line.startswith("---") and " arguments " in line:
            fmt["in_args"] = True
            return []
        if line.startswith("[after training is done]"):
            total, last = fmt.get("train_iters"), self.s["last_step"]
            if total and last is not None and last >= total:
                ts = self.at()
                return self.end_record("finish", ts, "total_steps", rank, reason="total_steps")
            return []
        if match := _EXIT_RE.search(line):
            reason = match.group(1) or ("exit_duration" if "minutes" in line else "exit_interval")
            ts = self.at()
            return self.end_record("stop", ts, reason, rank, reason=reason, message=line.strip()[:1000])
        return None

    def _argument(self, name: str, value: str) -> None:
        if _ARGS[name] is str:
            if name == "wandb_exp_name" and value and value != "None":
                self.adopt_run_id(value)
            return
        number = to_int(value) if value.lstrip("-").isdigit() else None
        self.s["fmt"][name] = number
        if name == "world_size" and number:
            self.update_launch(world_size=number)

    def _step(self, match: re.Match[str], line: str, rank: int) -> list[Record]:
        fields: dict = {}
        for part in match.group(3).split("|"):
            key, sep, value = part.partition(":")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                continue
            value = value.split("/", 1)[0].strip()  # forks print "now/average": the first is this line's
            if key == "lm loss":
                fields.update(loss_field(value))
            elif key in _FIELDS:
                name, convert = _FIELDS[key]
                fields[name] = convert(value)
            else:
                fields[_snake(key)] = to_float(value) if _looks_numeric(value) else value[:200]
        fmt = self.s["fmt"]
        fmt["train_iters"] = fmt.get("train_iters") or to_count(match.group(2))
        if (fmt.get("log_interval") or 0) > 1:
            fields["loss_window"] = fmt["log_interval"]
        batch, seq_len, step_time = fields.get("global_batch_size"), fmt.get("seq_length"), fields.get("step_time")
        if fields.get("tokens_per_s") is None and batch and seq_len and step_time:
            fields["tokens_per_s"] = batch * seq_len / step_time
        if self.s["world_size"] is None and fmt.get("world_size"):
            self.s["world_size"] = fmt["world_size"]
        step = to_count(match.group(1))
        return self.step_record(step, self.advance_steps(step, step_time), rank, **fields)

    def _eval(self, match: re.Match[str], line: str, rank: int) -> list[Record]:
        fields: dict = {}
        for part in match.group(2).split("|"):
            key, _, value = part.partition(":")
            key, value = key.strip(), value.strip()
            if key.endswith("loss value") and value:
                fields.update(loss_field(value, "val_loss") if key == "lm loss value"
                              else {_snake(key): to_float(value)})
            elif key.endswith("PPL") and value:
                fields["val_perplexity" if key == "lm loss PPL" else _snake(key)] = to_float(value)
        ts = self.at()
        return self.eval_record(to_count(match.group(1)), ts, rank, **fields)


def _looks_numeric(value: str) -> bool:
    return bool(_NUMBER_RE.fullmatch(value.replace(",", "")))
