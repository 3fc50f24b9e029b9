"""Hugging Face `transformers.Trainer`: its console output, and its `trainer_state.json`.

Console (`hf_trainer`):

    ***** Running training *****                           → launch
      Num Epochs = 3 / Instantaneous batch size per device = 4 /
      Total train batch size (w. parallel, distributed & accumulation) = 32 /
      Gradient Accumulation steps = 8                      → world size = 32 / (4 × 8)
      Total optimization steps = 906                       → total_steps
      Continuing training from global step 500            → launch.resume_from
     5%|▌         | 50/906 [00:30<09:30,  1.67it/s]        → the current step (progress bar)
    {'loss': 2.1, 'grad_norm': 1.3, 'learning_rate': 5e-05, 'epoch': 0.5}   → step
    {'eval_loss': 2.3, 'eval_runtime': 1.2, …, 'epoch': 1.0}              → eval
    Training completed. …  {'train_runtime': '98.37', …}   → finish

The logged dicts carry no step number. It is taken from the training progress bar (a bar
whose total is the banner's "Total optimization steps"), else from the epoch × steps per epoch,
else counted; `step_source` says which when it is not exact. Values may be strings
(transformers 5 prints `'train_runtime': '98.37'`). No console line has a timestamp, except
logger lines: the dicts are dated by the file clock (text.py), advanced by the training bar's
elapsed time. The progress bar's `\\r` and its syslog form `#015` are handled.

`trainer_state.json` (`hf_trainer_state`) is one JSON document, not a log: rewritten whole at
the end of training and written anew into every `checkpoint-N/` folder, each version repeating
the history before it. `HFTrainerStateParser.parse_document(text)` returns the records of the
`log_history` entries newer than those already returned (the state keeps the last step per
kind); fed line by line, as the intake does, it collects the lines up to the closing `}` first.
A new version (a rewrite, the next checkpoint's copy) starts from the previous one's state
(`carried_over`), so the history is stored once.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from monitor.parsers.base import BadLine, Parser
from monitor.parsers.fields import loss_field, to_count, to_float, to_int
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_BANNER_RE = re.compile(r"\*{5} Running training \*{5}")
_DICT_RE = re.compile(r"\{'[^{}]*\}")
_BAR_RE = re.compile(r"(\d{1,3})%(?:\|[^|]{0,1000}\||\s)\s*(\d+)/(\d+)\s*\[(?:(?:(\d{1,6}):)?(\d\d):(\d\d)<)?")
_BANNER_FIELDS = (
    ("num_epochs", re.compile(r"Num Epochs = ([\d,]+)")),
    ("per_device", re.compile(r"Instantaneous batch size per (?:device|GPU) = ([\d,]+)")),
    ("total_batch", re.compile(r"Total train batch size \(w\. parallel, distributed & accumulation\) = ([\d,]+)")),
    ("accumulation", re.compile(r"Gradient Accumulation steps = ([\d,]+)")),
    ("total_steps", re.compile(r"Total optimization steps = ([\d,]+)")),
    ("n_params", re.compile(r"Number of trainable parameters = ([\d,]+)")),
)
_CONTINUE_RE = re.compile(r"Continuing training from global step (\d+)")
_COMPLETED = "Training completed. Do not forget to share your model"
_MAX_DICT_CHARS = 20_000
_RENAMED = {"learning_rate": "lr", "num_input_tokens_seen": "num_consumed_tokens",
            "num_tokens": "num_consumed_tokens", "mean_token_accuracy": "acc"}


_AXOLOTL_PEAK = "memory/max_allocated (GiB)"
"""Axolotl adds its memory figures to the Trainer's dicts: the peak allocated is `peak_mem_bytes` too."""

_ITEM_RE = re.compile(r"""\s*'((?:[^'\\]|\\.)*)'\s*:\s*('(?:[^'\\]|\\.)*'|[-+.\w]+)\s*(?:,|$)""")
_WORDS = {"True": True, "False": False, "None": None}


def logged_dict(text: str) -> dict[str, Any]:
    """A dict printed by the Trainer (Python repr), read safely; BadLine when unreadable.
    The usual flat `{'key': number or 'string'}` is read directly (also `nan`, which Python's
    own literal parser refuses); anything else goes through `ast.literal_eval`."""
    if len(text) > _MAX_DICT_CHARS:
        raise BadLine(f"logged dict of {len(text):,} characters is too long")
    body, position, values = text[1:-1], 0, {}
    while position < len(body) and (match := _ITEM_RE.match(body, position)):
        raw = match.group(2)
        values[match.group(1)] = raw[1:-1] if raw[0] == "'" else _WORDS.get(raw, raw)
        position = match.end()
    if position >= len(body.rstrip()):
        return values
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise BadLine(f"unreadable logged dict: {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise BadLine("logged value is not a dict")
    return {str(k): v for k, v in value.items()}


def _figures(logs: dict[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    """Numbers (also ones printed as strings; nan/inf → null) under the schema's names where
    it has one; values that are not numbers are left out."""
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if key in skip or key == "step":
            continue
        name = _RENAMED.get(key, key)
        try:
            out[name] = to_int(value) if name == "num_consumed_tokens" else to_float(value)
        except BadLine:
            continue
    peak = out.get(_AXOLOTL_PEAK)
    if peak is not None:
        out["peak_mem_bytes"] = round(peak * 2**30)
    return out


def _printed_step(value: Any) -> int | None:
    """A dict's own `step` (some trainers log it), as printed: a number or its digits."""
    if isinstance(value, str) and value.isdigit():
        return to_count(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class HFTrainerParser(TextParser):
    name = "hf_trainer"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        if head_matches(head, _BANNER_RE, re.compile(r"\{'(loss|eval_loss|train_runtime)': ")):
            swift = head_matches(head, re.compile(r"'global_step/max_steps': "))  # ms-swift's (swift.py)
            return 0.0 if swift else 0.9
        return 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        fmt = self.s["fmt"]
        if "%" in line and "/" in line:
            self._progress(line)
        if "{'" in line and (match := _DICT_RE.search(line)):
            return self._logged(logged_dict(match.group(0)), rank)
        if _BANNER_RE.search(line):
            return self.open_launch(rank)
        if " = " in line:
            for name, pattern in _BANNER_FIELDS:
                if match := pattern.search(line):
                    fmt[name] = to_int(match.group(1))
                    self._banner_facts()
                    return []
            if match := _CONTINUE_RE.search(line):
                fmt["resume_step"] = to_count(match.group(1))
                self.update_launch(resume_from=f"global step {match.group(1)}")
                return []
        if _COMPLETED in line:
            fmt["completed_at"] = self.at()
            return []
        return None

    def flush(self) -> list[Record]:
        return super().flush() + self._finish({})

    def _banner_facts(self) -> None:
        fmt = self.s["fmt"]
        if fmt.get("n_params"):
            self.update_launch(n_params=fmt["n_params"])
        per_device, accumulation, total = fmt.get("per_device"), fmt.get("accumulation"), fmt.get("total_batch")
        if per_device and accumulation and total and total % (per_device * accumulation) == 0:
            self.update_launch(world_size=total // (per_device * accumulation))

    def _progress(self, line: str) -> None:
        """The training bar's step, and its elapsed time (tqdm's `[MM:SS<` or `[H:MM:SS<`),
        which moves the file's clock."""
        total_steps = self.s["fmt"].get("total_steps")
        elapsed = None
        for match in _BAR_RE.finditer(line):
            if total_steps is None or to_count(match.group(3)) == total_steps:
                self.s["fmt"]["bar_step"] = to_count(match.group(2))
                if match.group(5) is not None:
                    hours, minutes, seconds = (int(g or 0) for g in match.group(4, 5, 6))
                    elapsed = hours * 3600 + minutes * 60 + seconds
        if elapsed is not None:
            self.advance_elapsed(elapsed)

    def _current_step(self) -> tuple[int, str | None]:
        fmt, last = self.s["fmt"], self.s["last_step"]
        if fmt.get("bar_step") is not None:
            step, source = fmt["bar_step"], "progress_bar"
        elif fmt.get("epoch") is not None and fmt.get("total_steps") and fmt.get("num_epochs"):
            step, source = round(fmt["epoch"] * fmt["total_steps"] / fmt["num_epochs"]), "epoch"
        else:
            step, source = (last if last is not None else fmt.get("resume_step") or 0) + 1, "count"
        if last is not None and step <= last:
            step, source = last + 1, "count"
        return step, source

    def _logged(self, logs: dict[str, Any], rank: int) -> list[Record]:
        fmt = self.s["fmt"]
        if "train_runtime" in logs:
            return self._finish(_figures(logs, ()))
        fmt["epoch"] = _figures({"epoch": logs["epoch"]}, ()).get("epoch") if "epoch" in logs else None
        exact = _printed_step(logs.get("step"))
        if "eval_loss" in logs:
            fields = _figures(logs, ("eval_loss",))
            if exact is None:
                exact = self.s["last_step"] or 0
                fields["step_source"] = "last_step"
            return self.eval_record(exact, self.at(), rank,
                                    **loss_field(str(logs["eval_loss"]), "val_loss"), **fields)
        if "loss" not in logs:
            return []
        step, source = (exact, None) if exact is not None else self._current_step()
        fields = _figures(logs, ("loss",))
        if source:
            fields["step_source"] = source
        return self.step_record(step, self.at(), rank, **loss_field(str(logs["loss"])), **fields)

    def _finish(self, figures: dict[str, Any]) -> list[Record]:
        completed = self.s["fmt"].pop("completed_at", None)
        if completed is None and not figures:
            return []
        ts = self.at() if figures else completed
        step = self.s["last_step"] if self.s["last_step"] is not None else self.s["fmt"].get("bar_step")
        return self.end_record("finish", ts, "total_steps", step=step, reason="total_steps", **figures)


class HFTrainerStateParser(Parser):
    """`trainer_state.json`, read whole (see the module docstring)."""

    name = "hf_trainer_state"
    MAX_DOCUMENT_CHARS = 64 << 20

    def __init__(self, *, run: str, attempt_prefix: str, host: str = "",
                 clock: Callable[[], float] | None = None) -> None:
        """`clock` dates the records (the document has no times): default, now."""
        super().__init__(run=run, attempt_prefix=attempt_prefix, host=host)
        self.clock = clock or time.time
        self.state: dict[str, Any] = self._fresh()

    @staticmethod
    def _fresh() -> dict[str, Any]:
        """`last`: the last step returned per record kind; `lines`: a document being fed."""
        return {"attempt": 1, "last": {}, "lines": [], "chars": 0}

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        lines = [line.strip() for line in head if line.strip()]
        if lines[:1] == ["{"] and any(line.startswith(('"global_step":', '"log_history":')) for line in lines[:80]):
            return 0.95
        return 0.0

    def get_state(self) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(self.state))

    def set_state(self, state: dict[str, Any]) -> None:
        self.state = {**self._fresh(), **orjson.loads(orjson.dumps(state))}

    @classmethod
    def carried_over(cls, state: dict[str, Any]) -> dict[str, Any]:
        """A new version of the document goes on from what the last one returned."""
        return {**cls._fresh(), "attempt": state.get("attempt", 1), "last": dict(state.get("last") or {})}

    def feed(self, line: str) -> list[Record]:
        state = self.state
        state["chars"] += len(line) + 1
        if state["chars"] > self.MAX_DOCUMENT_CHARS:
            state.update(lines=[], chars=0)
            raise BadLine(f"trainer_state.json larger than {self.MAX_DOCUMENT_CHARS:,} characters")
        state["lines"].append(line)
        if line.rstrip() != "}":
            return []
        text = "\n".join(state["lines"])
        state.update(lines=[], chars=0)
        return self.parse_document(text)

    def parse_document(self, text: str | bytes) -> list[Record]:
        """Records of the entries newer than those already returned; BadLine if this is not a
        trainer state. A global step below the last one seen means training started over."""
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadLine(f"trainer_state.json is not JSON (still being written?): {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("log_history"), list):
            raise BadLine("not a trainer_state.json: no log_history list")
        state, last = self.state, self.state["last"]
        global_step = document.get("global_step")
        if isinstance(global_step, int) and last and global_step < max(last.values()):
            state["attempt"] += 1
            last.clear()
        records: list[Record] = []
        ts = self.clock()
        attempt = f"{self.attempt_prefix}#{state['attempt']}"
        for entry in document["log_history"]:
            step = entry.get("step") if isinstance(entry, dict) else None
            if not isinstance(step, int) or isinstance(step, bool):
                continue
            kind, fields = self._entry(entry)
            if kind is None or (kind in last and step <= last[kind]):
                continue
            last[kind] = step
            records.append(Record(kind=kind, run=self.run, attempt=attempt, ts=ts, host=self.host,
                                  step=step, fields=fields))
        return records

    @staticmethod
    def _entry(entry: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        if "train_runtime" in entry:
            return "finish", {"reason": "total_steps", **_figures(entry, ())}
        if "eval_loss" in entry:
            return "eval", {**loss_field(str(entry["eval_loss"]), "val_loss"), **_figures(entry, ("eval_loss",))}
        if "loss" in entry:
            return "step", {**loss_field(str(entry["loss"])), **_figures(entry, ("loss",))}
        return None, {}
