"""Help with a file of no known format (`trainledger status`, `trainledger formats test`): its
first lines (escaped), the closest known format, and a `[[formats]]` table to start from."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from monitor.escape import printable

HEAD_SHOWN = 5

EXAMPLES = {
    "internlm": "step=5 loss=10.25 tgs (tokens/gpu/second)=412.34 lr=4e-05 loss_scale=65536.0 grad_norm=20.6",
    "megatron": " iteration       10/  100 | consumed samples: 1280 | elapsed time per iteration (ms): 5361.6 | lm loss: 1.8E+00 |",
    "hf_trainer": "{'loss': 2.1, 'grad_norm': 1.3, 'learning_rate': 5e-05, 'epoch': 0.5}",
    "nanogpt": "iter 100: loss 4.1234, time 123.45ms, mfu 12.34%",
    "nanochat": "step 00123/21400 (0.57%) | loss: 3.456789 | lrm: 1.00 | dt: 1571.88ms | tok/sec: 83,385 | mfu: 50.92",
    "torchtitan": "step: 14  loss:  3.24405  grad_norm:  0.8319  memory:  9.46GiB(64.99%)  tps: 7,282  tflops: 0.52  mfu: 0.17%",
    "modded_nanogpt": "step:5050/20000 train_loss:2.0232 train_time:219627ms step_avg:43.49ms",
    "torchtune": "Step 1 | loss:2.085338592529297 lr:2e-05 tokens_per_second_per_gpu:57.8",
    "mindformers": "{ Epoch:[  1/  2], step:[    2/   19], loss: 10.633, per_step_time: 1752ms, lr: 1e-05, overflow cond: False",
    "deepspeed": "[Rank 0] step=40, skipped=2, lr=[5e-05], mom=[[0.9, 0.999]]",
    "llamafactory": '{"current_steps": 3200, "total_steps": 3235, "loss": 4.4671, "learning_rate": 1.4e-08, "epoch": 0.99}',
    "swift": "{'loss': 0.219, 'grad_norm': 0.57, 'learning_rate': 6.8e-07, 'global_step/max_steps': '78/176'}",
    "lightning": "Epoch 0:  97% 1651/1702 [13:00<00:24,  2.11it/s, loss=0.158, v_num=0, train_loss=0.149]",
    "jsonl": '{"v":1,"kind":"step","run":"r","attempt":"a#1","ts":1700000000.0,"step":1,"loss":2.3}',
}
"""A typical step line of each built-in format, to say which one an unknown file is closest to."""

_PAIR_RE = re.compile(r"([A-Za-z_][\w/ ()]*?)\s*([:=])\s*\[?([-+]?\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?)")
_STEP_KEYS = ("global_step", "step", "iteration", "iter", "steps")


def metric_line(lines: list[str]) -> str | None:
    """The head line that looks most like a step line: the most `key: number` pairs."""
    best, best_pairs = None, 0
    for line in lines:
        pairs = len(_PAIR_RE.findall(line[:2000]))
        if pairs > best_pairs:
            best, best_pairs = line, pairs
    return best


def closest_format(line: str) -> tuple[str, float]:
    """(the built-in format whose step line is most like this one, similarity 0..1)."""
    scores = {name: SequenceMatcher(None, line[:300], example).ratio() for name, example in EXAMPLES.items()}
    name = max(scores, key=scores.__getitem__)
    return name, scores[name]


def declaration(line: str) -> str:
    """A `[[formats]]` table to start from, guessed from one step line."""
    pairs = _PAIR_RE.findall(line)
    separator = max((":", "="), key=lambda s: sum(1 for _, sep, _ in pairs if sep == s))
    keys = [key.strip() for key, _, _ in pairs]
    step = next((k for k in keys if k.lower() in _STEP_KEYS), keys[0] if keys else "step")
    between = re.findall(r"\d(\s*[,|]\s*|\s{2,}|\s)[A-Za-z_]", line)
    pair_separator = between[0].strip() or " " if between else ","
    fields = "\n".join(f'{name} = "{key}"' for key in keys
                       for name in [{"learning_rate": "lr", "lr": "lr", "loss": "loss"}.get(key.lower())] if name)
    return "\n".join([
        "[[formats]]",
        'name = "my_trainer"',
        f"recognise = '{re.escape(step + separator)}'  # a regex found in the file's first lines",
        f'key_value = {{ separator = "{separator}", pairs = "{pair_separator}" }}',
        f'step = "{step}"  # the key holding the step (a guess: check it)',
        "[formats.fields]",
        fields or '# loss = "the key holding the loss"',
    ])


def advice(path: str, head: list[str]) -> str:
    """What `status` and `formats test` print about a file of no known format."""
    shown = [printable(line[:160]) for line in head if line.strip()][:HEAD_SHOWN]
    out = [f"{printable(path)}: no known format. Its first lines:"]
    out += [f"  {line}" for line in shown] or ["  (empty)"]
    line = metric_line(head)
    if line is None:
        out.append("No line looks like a step line yet (no `key: number` pairs).")
        return "\n".join(out)
    name, score = closest_format(line)
    out.append(f"Closest known format: {name} ({score:.0%} alike); if it is that, pass --format {name}.")
    out.append("Otherwise declare it in a TOML file passed with --formats FILE (docs/parsers.md, "
               "'Formats declared without code'), then check it with `trainledger formats test FILE --formats FILE`:")
    out += [f"  {row}" for row in declaration(printable(line)).split("\n")]
    return "\n".join(out)


def report_unknown(console, sources) -> None:
    """For `trainledger status`: the advice for every followed file of no known format."""
    from monitor.sources import head_lines

    for source in sources:
        if source.status != "unknown_format":
            continue
        try:
            with open(source.path, "rb") as handle:
                head, _ = head_lines(handle.fileno())
        except OSError:
            continue
        console.print(advice(source.path, head), markup=False, highlight=False, soft_wrap=True)
