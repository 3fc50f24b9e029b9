"""Parser throughput: metric lines per second for each format, beside a floor measured on the
same lines in the same run (orjson.loads for JSONL, str.split for the text formats).

The lines are real fixture lines (tests/fixtures/logs) with the step number counted up, so
every line makes one record through the whole path (clean, timestamp, attempt rules, Record).
"""

from __future__ import annotations

import re
import time
from datetime import timezone
from pathlib import Path

import orjson

from monitor.parsers import by_name

LOGS = Path(__file__).parents[1] / "tests" / "fixtures" / "logs"


def _line(path: str, contains: str) -> str:
    return next(line for line in (LOGS / path).read_bytes().decode().split("\n") if contains in line)


def _templates() -> dict[str, tuple[str, str]]:
    """format → (a real metric line with `{step}` where its step number was, how it counts)."""
    jsonl = _line("jsonl/trainer_tiny_2ranks.jsonl", '"kind":"step"').replace('"step":1,', '"step":{step},')
    internlm = _line("internlm/seed002_20b_demo.log", " step=5 ").replace(" step=5 ", " step={step} ")
    megatron = re.sub(r"iteration\s+1/\s+20", "iteration {step}/ 99999999",
                      _line("megatron/mi300x_time_limit.log", "iteration        1/"))
    nanogpt = _line("nanogpt/shakespeare_char.log", "iter 10:").replace("iter 10:", "iter {step}:")
    nanochat = _line("nanochat/run1000_d32_8xh100.log", "step 00004").replace("step 00004/71680", "step {step}/99999999")
    torchtitan = _line("torchtitan/colour_codes_crlf.log", "step: 14").replace("step: 14", "step: {step}")
    hf = ("\r  5%|▌         | {step}/99999999 [00:30<09:30,  1.67it/s]"
          + _line("hf_trainer/videollama2_logged_dicts.log", "'loss': 1.5214"))
    return {"jsonl": jsonl, "internlm": internlm, "megatron": megatron, "nanogpt": nanogpt,
            "nanochat": nanochat, "torchtitan": torchtitan, "hf_trainer": hf, **_new_templates()}


def _new_templates() -> dict[str, str]:
    """The formats of issue 16, the same way."""
    mindformers = re.sub(r"step:\[\s+2/\s+19\]", "step:[{step}/99999999]",
                         _line("mindformers/llama2_13b_msrun_worker0.log", "step:[    2/"))
    return {
        "modded_nanogpt": _line("modded_nanogpt/parameter_golf_issue839.log", "step:5050/").replace("step:5050/", "step:{step}/"),
        "torchtune": _line("torchtune/codellama_pr1358.log", "Step 2 |").replace("Step 2 |", "Step {step} |"),
        "mindformers": mindformers,
        "deepspeed": _line("deepspeed/pipeline_steps_moe.log", "steps: 200").replace("steps: 200", "steps: {step}"),
        "llamafactory": _line("llamafactory/trainer_log_issue774.jsonl", '"current_steps": 3200').replace(
            '"current_steps": 3200', '"current_steps": {step}'),
        "swift": _line("swift/dpo_issue4146.log", "'78/176'").replace("'78/176'", "'{step}/99999999'"),
        "lightning": _line("lightning/progress_bar_issue3866.log", "1651/1702").replace("1651/1702", "{step}/99999999"),
    }


def _declared_versus_hand_written(count: int) -> str:
    """torchtune's step line read by a declared format and by its hand-written parser, side by side."""
    from monitor.parsers.declared import load_formats_file

    template = _new_templates()["torchtune"]
    [declared] = [c for c in load_formats_file(str(LOGS / "declared" / "formats.toml"), register=False)
                  if c.name == "torchtune_declared"]
    rows, times = [], {}
    for name, parser_class in (("torchtune (hand-written)", by_name("torchtune")), ("torchtune_declared", declared)):
        best = min(_rate_class(parser_class, template, count)[0] for _ in range(2))
        times[name] = best
        rows.append(f"| {name} | {best / count * 1e6:.1f} |")
    ratio = times["torchtune_declared"] / times["torchtune (hand-written)"]
    return "\n".join(["", "Declared format against the hand-written parser of the same format (torchtune's step "
                       f"line, best of two runs each): declared / hand-written = **{ratio:.2f}×** (target ≤ 2×).", "",
                       "| parser | µs per line |", "|---|---:|", *rows])


def _rate(name: str, template: str, count: int) -> tuple[float, float, int]:
    return _rate_class(by_name(name), template, count)


def _rate_class(parser_class, template: str, count: int) -> tuple[float, float, int]:
    lines = [template.replace("{step}", str(step)) for step in range(1, count + 1)]
    name = parser_class.name
    options = {} if name == "jsonl" else {"clock": lambda: 0.0, "tz": timezone.utc}
    parser = parser_class(run="bench", attempt_prefix="bench", **options)
    start = time.perf_counter()
    records = 0
    for line in lines:
        records += len(parser.feed(line))
    records += len(parser.flush())
    parsed = time.perf_counter() - start
    floor = orjson.loads if name in ("jsonl", "llamafactory") else str.split
    start = time.perf_counter()
    for line in lines:
        floor(line)
    return parsed, time.perf_counter() - start, records


def main(quick: bool) -> str:
    count = 20_000 if quick else 200_000
    rows = []
    for name, template in _templates().items():
        parsed, floor, records = _rate(name, template, count)
        assert records >= count, f"{name}: {records} records from {count} lines"
        rows.append(f"| {name} | {len(template):,} | {parsed / count * 1e6:.1f} | {count / parsed:,.0f} "
                    f"| {floor / count * 1e6:.2f} | {parsed / floor:.0f}× |")
    floor_name = "orjson.loads (jsonl) / str.split (text)"
    return "\n".join([
        "## Parsers", "",
        f"Command: `.venv/bin/python -m bench parsers` ({'--quick, ' if quick else ''}{count:,} metric lines per format,"
        " real fixture lines with the step counted up; one record per line).", "",
        f"| format | line length (chars) | µs per line | lines/s | floor: {floor_name}, µs | parse / floor |",
        "|---|---:|---:|---:|---:|---:|", *rows, _declared_versus_hand_written(count)])
