"""Plotly figures of the pages. Plotly draws a few HTML tags in its text (<b>, <br>, links),
so every text from logs that a figure holds (run, attempt and source names, causes, alert
messages) goes through `text()` first: a log line holding HTML is drawn as written."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import plotly.graph_objects as go

from monitor.accounting import Ledger, parse_timezone

STATE_COLOURS = {"training": "#2ca02c", "stalled": "#bcbd22", "startup": "#17becf", "fault": "#d62728",
                 "waiting": "#ff7f0e", "manual": "#9467bd", "off_hours": "#7f7f7f", "maintenance": "#c7c7c7"}
PIE_LABELS = {"training": "training", "interrupted_or_waiting": "interrupted / waiting",
              "nobody_at_work": "nobody at work", "maintenance": "planned maintenance"}
PIE_COLOURS = {"training": "#2ca02c", "interrupted_or_waiting": "#d62728", "nobody_at_work": "#7f7f7f",
               "maintenance": "#c7c7c7"}


@dataclass
class Marks:
    """What is laid over a chart, in its x units: attempt starts, checkpoints, alerts, redone steps."""

    attempts: list[tuple[float, str]] = field(default_factory=list)
    checkpoints: list[float] = field(default_factory=list)
    alerts: list[tuple[float, str]] = field(default_factory=list)
    redone: list[tuple[float, float]] = field(default_factory=list)


def text(value: object) -> str:
    """Log text for a plotly label: its <, > and & as entities, which plotly shows literally."""
    return html.escape(str(value), quote=False)


def markdown_text(value: object) -> str:
    """Log text for a Streamlit header or caption (Markdown): every Markdown character escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", str(value))


def to_datetimes(xs, zone: str = "UTC") -> list[datetime]:
    tz = parse_timezone(zone) if zone else timezone.utc
    return [datetime.fromtimestamp(x, tz) for x in xs]


def line_chart(title: str, traces: list[dict], *, x_title: str, marks: Marks | None = None,
               revision: str = "", y_title: str = "", log_y: bool = False) -> go.Figure:
    """A chart of several lines ({name, x, y, dash?, mode?}); `revision` keeps the user's zoom
    across refreshes of the same chart (plotly's uirevision)."""
    figure = go.Figure()
    for trace in traces:
        # SVG, not WebGL: a browser without a GPU (headless, remote desktops) may have no WebGL,
        # and a downsampled line is a few thousand points at most
        figure.add_trace(go.Scatter(x=trace["x"], y=trace["y"], name=text(trace["name"]), mode=trace.get("mode", "lines"),
                                    line={"dash": trace.get("dash", "solid"), "width": trace.get("width", 1.2)},
                                    opacity=trace.get("opacity", 1.0)))
    if marks is not None:
        _add_marks(figure, marks)
    figure.update_layout(title={"text": title}, xaxis_title=x_title, yaxis_title=y_title, height=320,
                         margin={"l": 50, "r": 20, "t": 40, "b": 40}, uirevision=revision or title,
                         legend={"orientation": "h", "y": -0.25}, hovermode="x")
    if log_y:
        figure.update_yaxes(type="log")
    return figure


def _add_marks(figure: go.Figure, marks: Marks) -> None:
    for x0, x1 in marks.redone:
        figure.add_vrect(x0=x0, x1=x1, fillcolor="#ff7f0e", opacity=0.12, line_width=0)
    for x, label in marks.attempts:
        figure.add_vline(x=x, line={"color": "#555", "width": 1, "dash": "dot"})
    if marks.attempts:
        figure.add_trace(go.Scatter(x=[x for x, _ in marks.attempts], y=[1.0] * len(marks.attempts), yaxis="y2",
                                    mode="markers", marker={"symbol": "triangle-down", "color": "#555"},
                                    name="attempt start", hovertext=[text(label) for _, label in marks.attempts],
                                    hoverinfo="text+x"))
    if marks.checkpoints:
        figure.add_trace(go.Scatter(x=marks.checkpoints, y=[0.02] * len(marks.checkpoints), yaxis="y2", mode="markers",
                                    marker={"symbol": "line-ns-open", "size": 8, "color": "#1f77b4"},
                                    name="checkpoint", hoverinfo="x+name"))
    if marks.alerts:
        figure.add_trace(go.Scatter(x=[x for x, _ in marks.alerts], y=[0.95] * len(marks.alerts), yaxis="y2",
                                    mode="markers", marker={"symbol": "x", "color": "#d62728", "size": 9},
                                    name="alert", hovertext=[text(message) for _, message in marks.alerts], hoverinfo="text+x"))
    figure.update_layout(yaxis2={"overlaying": "y", "range": [0, 1.05], "visible": False, "fixedrange": True})


def pie_chart(ledger: Ledger) -> go.Figure:
    """The ling-1b team's pie: each slice's value in days written on it."""
    pie = ledger.pie_days
    keys = [k for k in PIE_LABELS if k in pie]
    figure = go.Figure(go.Pie(labels=[PIE_LABELS[k] for k in keys], values=[round(pie[k], 2) for k in keys],
                              marker={"colors": [PIE_COLOURS[k] for k in keys]}, sort=False,
                              texttemplate="%{label}<br>%{value:.2f} d", textinfo="text",
                              hovertemplate="%{label}: %{value:.2f} days (%{percent})<extra></extra>"))
    figure.update_layout(title={"text": f"{text(ledger.run)}: where the days went"}, height=420,
                         margin={"l": 20, "r": 20, "t": 50, "b": 20})
    return figure


def timeline_chart(ledger: Ledger) -> go.Figure:
    """Every state of every attempt as a bar in time, the cause and its evidence on hover."""
    zone = parse_timezone(ledger.timezone)
    rows_of = {}
    for row in ledger.rows:
        rows_of.setdefault(row.attempt, []).append(row)
    figure = go.Figure()
    for state in STATE_COLOURS:
        segments = [s for s in ledger.segments if s.state == state]
        if not segments:
            continue
        starts = [datetime.fromtimestamp(s.start, zone) for s in segments]
        figure.add_trace(go.Bar(
            base=starts, x=[(s.end - s.start) * 1000 for s in segments], orientation="h",
            y=[text(ledger.attempt_ids[s.attempt]) for s in segments], name=state,
            marker={"color": STATE_COLOURS[state]},
            customdata=[[text(_cause(rows_of.get(s.attempt, []), s.start)), (s.end - s.start) / 3600] for s in segments],
            hovertemplate=f"{state} from %{{base|%Y-%m-%d %H:%M}} for %{{customdata[1]:.2f}} h"
                          "<br>%{customdata[0]}<extra>%{y}</extra>"))
    figure.update_layout(barmode="overlay", title={"text": "States by attempt"}, xaxis={"type": "date"},
                         yaxis={"autorange": "reversed"}, height=max(300, 26 * len(ledger.attempt_ids) + 120),
                         margin={"l": 20, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.1})
    return figure


def _cause(rows, start: float) -> str:
    """The cause (with its evidence) of the ledger row holding this instant of the attempt."""
    for row in rows:
        if row.start <= start < row.start + max(row.duration, 1e-9):
            return row.cause or row.state
    return rows[-1].cause if rows else ""
