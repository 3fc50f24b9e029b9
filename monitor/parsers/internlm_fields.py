"""An InternLM metric line's body (`tflops=… step=… loss=… grad_norm={…} acc/S=… …`) → fields.

Two readers give the same typed values, as JSON would read the printed text: an integer stays
an int, other numbers are floats, `nan` and `inf` are None, anything else text, and grad_norm's
`{'group': value, …}` a dict:
- `json_values` reads a body of plain numbers in one C call (orjson): the hot path of every
  InternLM backlog, a million lines at a time;
- `token_values` reads any other body token by token: early InternLM's commas, `inf`, a
  repeated key, a text value.
`body_values` picks; `step_fields` makes the step's fields of either. That both readers agree is
a property test (tests/monitor/test_internlm_readers.py).
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import orjson

from monitor.parsers.base import BadLine
from monitor.parsers.fields import to_float, to_int

_DICT_RE = re.compile(r"\{[^{}]*\}")
_DICT_ITEM_RE = re.compile(r"'([^']*)':\s*([^,}]+)")
_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
"""JSON's integer literal."""
_INT64 = 2**63
_UINT64 = 2**64
_INTS = ("num_consumed_tokens", "inf_nan_skip_batches", "num_samples_in_batch", "largest_length")
_NUMBERS = frozenset(("step", "loss", "grad_norm", "tflops", "tgs", "lr", "loss_scale", "fwd_bwd_time",
                      "acc", "perplexity", *_INTS))
_SOURCE_FIGURES = frozenset(("acc", "tokens", "loss"))
_TEXT_CHARS = 200


def body_values(body: str) -> dict[str, Any]:
    values = json_values(body)
    return token_values(body) if values is None else values


def json_values(body: str) -> dict[str, Any] | None:
    """The body read as JSON, or None when it is not plain `key=number` pairs (and one dict).
    Every top-level key is then a space-separated token's, as `token_values` reads them (a
    repeated key: the last value, in both)."""
    # text JSON would read otherwise than the tokens: quotes, escapes, lists, literals, tabs, and
    # `==` (its second `=` would open a string)
    if (" " not in body or '"' in body or "\\" in body or "[" in body or "\t" in body or "==" in body
            or "null" in body or "true" in body or "false" in body):
        return None
    start = body.find("{")
    if start < 0:
        if "}" in body or "'" in body or ":" in body:
            return None
        text = body
    else:  # one dict, its quotes and colons its own: no key but the `key=` ones at the top
        end = body.find("}") + 1
        if (end <= start or body.find("{", start + 1) >= 0 or body.find("}", end) >= 0
                or body.find("=", start, end) >= 0 or body.find("'", 0, start) >= 0 or body.find("'", end) >= 0
                or body.find(":", 0, start) >= 0 or body.find(":", end) >= 0):
            return None
        text = body[:start] + body[start:end].replace(" ", "").replace("'", '"') + body[end:]
    if "=nan" in text:
        text = (text + " ").replace("=nan ", "=null ")[:-1]
    try:
        values = orjson.loads('{"' + text.replace(" ", ',"').replace("=", '":') + "}")
    except orjson.JSONDecodeError:
        return None
    return values if (start >= 0) == (type(values.get("grad_norm")) is dict) else None


def token_values(body: str) -> dict[str, Any]:
    if "{" in body:
        body = _DICT_RE.sub(_squeeze, body)
    values: dict[str, Any] = {}
    for token in body.split() if " " in body else body.split(","):  # early InternLM: commas
        key, _, raw = token.partition("=")
        if key == "grad_norm" and raw.startswith("{"):
            values[key] = {name: _typed(number) for name, number in _DICT_ITEM_RE.findall(raw)}
        else:
            values[key] = _typed(raw)
    for key, value in values.items():
        if type(value) is str and (key in _NUMBERS or key.partition("/")[0] in _SOURCE_FIGURES):
            raise BadLine(f"{key}: not a number: {value[:40]!r}")
    return values


def _typed(raw: str) -> int | float | str | None:
    """A printed value as JSON reads a number (orjson: an integer beyond 64 bits is a float);
    thousands separators allowed; not a number: the text."""
    if len(raw) <= 21 and _INT_RE.fullmatch(raw):  # longer: beyond 64 bits, read as a float
        number = int(raw)
        return number if -_INT64 <= number < _UINT64 else float(number)
    try:
        return to_float(raw)
    except BadLine:
        return raw[:_TEXT_CHARS]


def _squeeze(match: re.Match[str]) -> str:
    return match.group(0).replace(" ", "")


def step_fields(values: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """(step, fields) of a body's values, which become the fields; step None: not a step line.
    `loss_nonfinite` flags a printed nan/inf loss (a diverged run is not a missing figure);
    grad_norm is the groups' combined L2 norm, `grad_norm_groups` the groups; `tgs/X` is X;
    `acc/S`, `tokens/S`, `loss/S` are per_source[S], for the sources with tokens this step."""
    step = values.pop("step", None)
    if type(step) is not int:
        if step is None or (step := to_int(step)) is None:
            return None, {}
    fields = values
    if "loss" in fields and fields["loss"] is None:
        fields["loss_nonfinite"] = True
    for key in _INTS:
        if type(fields.get(key)) is float:
            fields[key] = to_int(fields[key])
    if type(groups := fields.get("grad_norm")) is dict:
        fields["grad_norm"], fields["grad_norm_groups"] = _combined_norm(groups), groups
    layout = _LAYOUTS.get(keys := tuple(fields)) or _layout(keys)
    slashed = {key: fields.pop(key) for key in layout.slashed}
    fields["per_source"] = per_source = {}
    for source, tokens, acc, loss in layout.sources:  # the 20B demo prints all 33, most with no tokens
        if (value := slashed[tokens]) != 0:
            figures = per_source[source] = {"tokens": value}
            if acc:
                figures["acc"] = slashed[acc]
            if loss:
                figures["loss"] = slashed[loss]
    for key, name in layout.averages:
        fields.setdefault(name, slashed[key])  # an average never overwrites the instantaneous tgs
    return step, fields


class _Layout(NamedTuple):
    """What `step_fields` does with a body's keys, worked out once per key sequence (a log
    prints the same keys on every step line)."""

    slashed: tuple[str, ...]
    sources: tuple[tuple[str, str, str | None, str | None], ...]
    """(source, its `tokens/` key, its `acc/` and `loss/` keys where printed)"""
    averages: tuple[tuple[str, str], ...]
    """(`tgs/X`, X)"""


_LAYOUTS: dict[tuple[str, ...], _Layout] = {}
_MAX_LAYOUTS = 256


def _layout(keys: tuple[str, ...]) -> _Layout:
    slashed = tuple(key for key in keys if "/" in key)
    sources = tuple((key[7:], key, *(name if (name := f"{figure}{key[6:]}") in slashed else None
                                      for figure in ("acc", "loss")))
                    for key in slashed if key[:7] == "tokens/")
    layout = _Layout(slashed, sources, tuple((key, key[4:]) for key in slashed if key[:4] == "tgs/"))
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[keys] = layout
    return layout


def _combined_norm(groups: dict[str, Any]) -> float | None:
    """sqrt(Σ g²) over the groups; None when one is not finite."""
    total = 0.0
    for norm in groups.values():
        if norm is None:
            return None
        if type(norm) is not float and type(norm) is not int:
            raise BadLine(f"grad_norm: not a number: {str(norm)[:40]!r}")
        total += norm * norm
    return math.sqrt(total) if groups else None
