"""Two runs side by side: every figure of `summarize`, the change, and the changes worth calling
out (the nanochat report's "previous run" table, where throughput fell 45 % unnoticed)."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.projections.summary import Figure, RunSummary

CALL_OUT = 0.10
"""a change of a directed figure by more than 10 % for the worse is called out"""


@dataclass(frozen=True)
class ComparisonRow:
    section: str
    label: str
    this: str
    other: str
    change: float | None
    """relative change of this run against the other, when both are numbers"""
    worse: bool
    """the change goes against the figure's direction by more than CALL_OUT"""

    def change_text(self) -> str:
        return "" if self.change is None else f"{self.change:+.1%}"

    def to_dict(self) -> dict:
        return {"section": self.section, "figure": self.label, "this": self.this, "other": self.other,
                "change": self.change, "worse": self.worse}


def _change(a: Figure | None, b: Figure | None) -> float | None:
    if a is None or b is None:
        return None
    if isinstance(a.value, (int, float)) and isinstance(b.value, (int, float)) and b.value:
        return (a.value - b.value) / abs(b.value)
    return None


def compare_runs(this: RunSummary, other: RunSummary) -> list[ComparisonRow]:
    """Every figure either run has, in the order this run lists them (then the other's own)."""
    labels = [f.label for f in this.figures] + [f.label for f in other.figures
                                                if this.figure(f.label) is None]
    rows = []
    for label in labels:
        a, b = this.figure(label), other.figure(label)
        known = a or b
        change = _change(a, b)
        worse = change is not None and known.better is not None and (
            change < -CALL_OUT if known.better == "higher" else change > CALL_OUT)
        rows.append(ComparisonRow(known.section, label, a.text() if a else "—", b.text() if b else "—", change, worse))
    return rows


def called_out(rows: list[ComparisonRow]) -> list[ComparisonRow]:
    return [row for row in rows if row.worse]
