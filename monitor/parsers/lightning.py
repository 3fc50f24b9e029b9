"""PyTorch Lightning: its progress bar's metrics (`lightning`) and `CSVLogger`'s `metrics.csv`
(`lightning_csv`).

Console (tqdm bar, one update per line or several joined by CR):

    Epoch 0:  97% 1651/1702 [13:00<00:24,  2.11it/s, loss=0.158, v_num=0, train_loss=0.149]

The bar counts the batches of the epoch (validation batches included), so the step is the count
of bar positions since the start, `step_source: progress_bar`: epoch × batches per epoch + the
position. `loss=` (Lightning < 2.0) is its running mean: `loss_smoothed`; other `name=value`
figures keep their name (`v_num`, the logger's version, is no figure). The bar's elapsed time
moves the file clock.

`metrics.csv` (one row per logging call; columns: the metric names, `epoch`, `step`):

    epoch,step,train_loss,val_loss,val_acc
    0,0,2.3,,
    0,0,,2.4,0.5

A row with a `val_*` figure is an `eval`, any other a `step`; the step is the `step` column.
"""

from __future__ import annotations

import re

from monitor.parsers import endings
from monitor.parsers.base import BadLine
from monitor.parsers.fields import loss_field, to_count, to_float
from monitor.parsers.text import TextParser, head_matches
from monitor.records import Record

_BAR_RE = re.compile(r"Epoch (\d+):\s+\d{1,3}%\|?[^|\d]*\|?\s*(\d+)/(\d+) \[(?:(\d+):)?(\d\d):(\d\d)<[^,\]]*,\s*[^,\]]*(?:, ([^\]]*))?\]")
_RESERVED = frozenset(("self", "kind", "step", "ts", "rank", "host"))


class LightningParser(TextParser):
    name = "lightning"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        return 0.9 if head_matches(head, re.compile(r"Epoch \d+:\s+\d{1,3}%.*\d+/\d+ \[.*(?:v_num|loss)=")) else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        if "Epoch " not in line:
            return None
        last_update: dict[tuple[str, str], re.Match[str]] = {}
        for match in _BAR_RE.finditer(line):  # updates joined by CR: a position's last one is current
            last_update[match.group(1, 2)] = match
        if not last_update:
            return None
        out: list[Record] = []
        for match in last_update.values():
            out += self._update(match, rank)
        return out + endings.detect(self, line, rank)  # a bar may have an ending glued to it

    def _update(self, match: re.Match[str], rank: int) -> list[Record]:
        epoch, position, total = (to_count(match.group(i)) for i in (1, 2, 3))
        hours, minutes, seconds = (int(g or 0) for g in match.group(4, 5, 6))
        self.advance_elapsed(hours * 3600 + minutes * 60 + seconds)
        fields: dict = {}
        for pair in (match.group(7) or "").split(","):
            key, found, value = pair.strip().partition("=")
            if not found or key == "v_num" or key in _RESERVED:
                continue
            try:
                if key == "loss":
                    fields.update(loss_field(value, "loss_smoothed"))
                else:
                    fields[key] = to_float(value)
            except BadLine:
                continue
        if not fields or position == 0:
            return []
        fields.update(epoch=float(epoch), step_source="progress_bar")
        if "train_loss" in fields and "loss" not in fields:
            fields["loss"] = fields.pop("train_loss")
        return self.step_fields(epoch * total + position, self.at(), fields, rank)


class LightningCSVParser(TextParser):
    name = "lightning_csv"

    @classmethod
    def sniff(cls, head: list[str]) -> float:
        first = head[0].strip().split(",") if head else []
        return 0.9 if "step" in first and "epoch" in first and len(first) >= 3 else 0.0

    def parse_line(self, line: str, rank: int) -> list[Record] | None:
        cells = line.split(",")
        fmt = self.s["fmt"]
        if "step" in cells and "epoch" in cells:
            fmt["columns"] = cells
            return []
        columns = fmt.get("columns")
        if not columns or not line.strip():
            return None
        if len(cells) != len(columns):
            raise BadLine(f"{len(cells)} cells where the header has {len(columns)} columns")
        row = {name: cell for name, cell in zip(columns, cells) if cell.strip()}
        if "step" not in row:
            return []
        step = to_count(str(int(float(row.pop("step")))))
        fields = {name if name not in _RESERVED else f"{name}_": to_float(value) for name, value in row.items()}
        if any(name.startswith("val_") or name.startswith("val/") for name in fields):
            if "val_loss" in fields and fields["val_loss"] is None:
                fields["val_loss_nonfinite"] = True
            return self.eval_record(step, self.at(), rank, **fields)
        if "train_loss" in fields and "loss" not in fields:
            fields["loss"] = fields.pop("train_loss")
        if "loss" in fields and fields["loss"] is None:
            fields["loss_nonfinite"] = True
        return self.step_fields(step, self.at(), fields, rank)
