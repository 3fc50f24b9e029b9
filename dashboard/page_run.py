"""The Run page: every step figure of one run, by step, wall time or tokens, downsampled in the
store (M4), the loss smoothed on its full series; live runs refresh in place with what is new."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import streamlit as st
from sqlalchemy.engine import Engine

from dashboard import charts
from dashboard.data import RunView, ago_text, runs
from dashboard.series import ema, m4
from monitor.store import list_alerts, load_records
from monitor.store.read import (STEP_FIGURES, StepSeries, Window, latest_steps, raw_series, step_series,
                                step_sources)

MAX_POINTS = 2000
EVERY_POINT = 1 << 40
REFRESH_S = 2.0
X_TITLES = {"step": "step", "time": "wall time", "tokens": "tokens consumed"}
FIGURES = {"loss": "loss", "tokens_per_s": "tokens/s", "tgs": "tokens/gpu/s", "tflops": "TFLOPs", "mfu": "MFU",
           "lr": "learning rate", "grad_norm": "grad norm", "loss_scale": "loss scale",
           "inf_nan_skip_batches": "skipped (inf/nan) batches", "peak_mem_bytes": "peak memory (bytes)",
           "step_time": "step time (s)", "acc": "accuracy", "perplexity": "perplexity",
           "num_consumed_tokens": "tokens consumed"}
"""The charts, in page order; a figure the run never logged gets none."""
assert set(FIGURES) <= set(STEP_FIGURES)


@dataclass
class Drawn:
    """One chart's series as last fetched, so a refresh asks the store only for newer steps."""

    series: StepSeries
    smoothed: tuple[list[float], list[float]]
    ema_state: tuple[float, int]


@dataclass(frozen=True)
class View:
    x: str
    window: Window
    weight: float
    max_points: int = MAX_POINTS


def controls(view: RunView) -> View:
    """The x axis, the window (re-queried at full resolution inside it) and the smoothing."""
    left, middle, right = st.columns([1, 2, 1])
    x = left.radio("x axis", list(X_TITLES), format_func=X_TITLES.get, horizontal=True, key="run_x")
    kind = middle.radio("window", ["whole run", "last hours", "step range"], horizontal=True, key="run_window")
    window = Window()
    if kind == "last hours":
        hours = middle.number_input("last N hours", min_value=0.1, value=24.0, step=1.0, key="run_hours")
        window = Window(since_ts=view.summary.last_ts - hours * 3600)
    elif kind == "step range":
        a, b = middle.columns(2)
        first = a.number_input("from step", min_value=0, value=0, step=1, key="run_from")
        last = b.number_input("to step", min_value=0, value=0, step=1, key="run_to",
                              help="0: up to the newest step")
        window = Window(first_step=int(first), last_step=int(last) or None)
    weight = right.slider("loss smoothing", 0.0, 0.999, 0.6, 0.001, key="run_smoothing",
                          help="TensorBoard's debiased EMA, computed on every step before downsampling")
    # ?points=all draws every step, unbucketed: the benchmark's side-by-side
    every = st.query_params.get("points") == "all"
    return View(x, window, weight, EVERY_POINT if every else MAX_POINTS)


def _fetch(db: Engine, run: str, view: View) -> Drawn:
    """The series, fetched whole once, then only the steps after the last one drawn. Redone
    steps (a resume from an older checkpoint) or a tail past the point budget: fetched whole.
    One drawing is kept per session (another view replaces it), so a session's memory stays flat."""
    key = "run_drawn"
    kept_view, drawn = st.session_state.get(key, (None, None))
    if kept_view == (run, view) and drawn.series.last_step is not None:
        after = replace(view.window, first_step=max(drawn.series.last_step + 1, view.window.first_step or 0))
        new = step_series(db, run, list(FIGURES), x=view.x, window=after, max_points=view.max_points)
        drawn_points = len(drawn.series.points["loss"][0])
        if new.redone == drawn.series.redone and new.exact and drawn_points + new.rows <= 2 * view.max_points:
            if new.rows:
                for figure, (xs, ys) in new.points.items():
                    drawn.series.points[figure][0].extend(xs)
                    drawn.series.points[figure][1].extend(ys)
                drawn.series.rows += new.rows
                drawn.series.last_step = new.last_step
                _, new_x, new_loss = raw_series(db, run, "loss", x=view.x, window=after)
                smoothed, drawn.ema_state = ema(new_loss, view.weight, drawn.ema_state)
                drawn.smoothed[0].extend(new_x.tolist())
                drawn.smoothed[1].extend(smoothed.tolist())
            return drawn
    series = step_series(db, run, list(FIGURES), x=view.x, window=view.window, max_points=view.max_points)
    _, xs, loss = raw_series(db, run, "loss", x=view.x, window=view.window)
    smoothed, state = ema(loss, view.weight)
    drawn = Drawn(series, m4(xs, smoothed, view.max_points // 4), state)
    st.session_state[key] = ((run, view), drawn)
    return drawn


def _marks(db: Engine, run: str, x: str, series: StepSeries, zone: str) -> charts.Marks:
    """Attempt starts, checkpoints and alerts where the x axis places them; redone steps on a
    step axis (a tokens axis has no marks: records other than steps carry no token count)."""
    if x == "tokens":
        return charts.Marks()
    index = 2 if x == "step" else 1
    marks = charts.Marks(attempts=[(a[index], a[0]) for a in series.attempts if a[index] is not None])
    marks.checkpoints = [r.step if x == "step" else r.ts for r in load_records(db, run, kinds={"checkpoint"})
                         if x == "time" or r.step is not None]
    for alert in list_alerts(db, run, include_resolved=True):
        at = alert.ts if x == "time" else (alert.payload or {}).get("step")
        if at is not None:
            marks.alerts.append((at, f"{alert.kind}: {alert.message}"))
    if x == "step":
        marks.redone = [(r.from_step, r.to_step) for r in series.redone]
        return marks
    def when(xs):
        return charts.to_datetimes(xs, zone)
    return charts.Marks(attempts=list(zip(when([t for t, _ in marks.attempts]), [a for _, a in marks.attempts])),
                        checkpoints=when(marks.checkpoints),
                        alerts=list(zip(when([t for t, _ in marks.alerts]), [m for _, m in marks.alerts])))


def _xs(values, x: str, zone: str):
    return charts.to_datetimes(values, zone) if x == "time" else values


def charts_of(db: Engine, view: RunView, options: View, zone: str) -> None:
    """Every chart of the run; what is new since the last drawing is all that is fetched."""
    run = view.name
    drawn = _fetch(db, run, options)
    series = drawn.series
    marks = _marks(db, run, options.x, series, zone)
    revision = f"{run}|{options}"
    x_title = X_TITLES[options.x]
    st.caption(f"{series.rows:,} steps in the window" + ("" if series.exact else
               f", drawn as each bucket's first, last, minimum and maximum ({len(series.points['loss'][0]):,} points)")
               + (f"; {len(series.redone)} redone stretch(es) shaded: the newest attempt's values are drawn"
                  if series.redone and options.x == "step" else ""))
    loss_x, loss_y = series.points["loss"]
    traces = []
    if loss_x:
        traces = [{"name": "loss", "x": _xs(loss_x, options.x, zone), "y": loss_y, "opacity": 0.45},
                  {"name": f"loss, smoothed (EMA {options.weight:g})", "x": _xs(drawn.smoothed[0], options.x, zone),
                   "y": drawn.smoothed[1], "width": 2}]
    _, xs, trainer_smoothed = raw_series(db, run, ("loss_smoothed",), x=options.x, window=options.window)
    if len(trainer_smoothed):
        xs, ys = m4(xs, trainer_smoothed, options.max_points // 4)
        traces.append({"name": "loss (smoothed by the trainer)", "x": _xs(xs, options.x, zone), "y": ys, "width": 2})
    if traces:
        st.plotly_chart(charts.line_chart("loss", traces, x_title=x_title, marks=marks, revision=revision),
                        key=f"chart-loss-{run}")
    _evals(db, run, options.x, x_title, zone, revision)
    drawable = [f for f in FIGURES if f != "loss" and series.points[f][0]]
    columns = st.columns(2)
    for i, figure in enumerate(drawable):
        xs, ys = series.points[figure]
        chart = charts.line_chart(FIGURES[figure], [{"name": FIGURES[figure], "x": _xs(xs, options.x, zone), "y": ys}],
                                  x_title=x_title, marks=marks, revision=revision)
        columns[i % 2].plotly_chart(chart, key=f"chart-{figure}-{run}")
    _per_source(db, run, options, x_title, revision)
    missing = [FIGURES[f] for f in FIGURES if not series.points[f][0]]
    if missing and series.rows:
        st.caption(f"Not logged by this run: {', '.join(missing)}.")


def _evals(db: Engine, run: str, x: str, x_title: str, zone: str, revision: str) -> None:
    """Validation loss and bits per byte, from the run's eval records."""
    evals = load_records(db, run, kinds={"eval"})
    traces = []
    for name, label in (("val_loss", "validation loss"), ("val_bpb", "validation bits per byte")):
        points = [(r.step if x == "step" else r.ts, r.fields[name]) for r in evals
                  if isinstance(r.fields.get(name), (int, float)) and (x != "step" or r.step is not None)]
        if points:
            traces.append({"name": label, "x": _xs([p[0] for p in points], x, zone), "y": [p[1] for p in points],
                           "mode": "lines+markers"})
    if traces and x != "tokens":
        st.plotly_chart(charts.line_chart("validation", traces, x_title=x_title, revision=revision),
                        key=f"chart-validation-{run}")


def _per_source(db: Engine, run: str, options: View, x_title: str, revision: str) -> None:
    """Loss and tokens per data source, for trainers that log them per step (InternLM)."""
    sources = step_sources(db, run)
    if not sources or options.x == "time":
        return
    columns = st.columns(2)
    for column, figure in zip(columns, ("loss", "tokens")):
        traces = []
        for source in sources:
            _, xs, ys = raw_series(db, run, ("per_source", source, figure), x=options.x, window=options.window)
            xs, ys = m4(xs, ys, options.max_points // 4)
            traces.append({"name": source, "x": xs, "y": ys})
        column.plotly_chart(charts.line_chart(f"{figure} per source", traces, x_title=x_title, revision=revision),
                            key=f"chart-source-{figure}-{run}")


def page(db: Engine, view: RunView, zone: str) -> None:
    """The page; while the run is live its charts refresh every REFRESH_S seconds in place."""
    options = controls(view)

    @st.fragment(run_every=REFRESH_S if view.live else None)
    def live_part() -> None:
        now = next((v for v in runs(db) if v.name == view.name), view)  # the state as the watcher has it now
        _header(db, now)
        charts_of(db, now, options, zone)

    live_part()


def _header(db: Engine, view: RunView) -> None:
    latest = latest_steps(db, [view.name]).get(view.name)
    cells = st.columns(5)
    cells[0].metric("state", view.state or ("live" if view.live else "not followed"))
    cells[1].metric("step", f"{latest.step:,}" if latest else "—")
    cells[2].metric("tokens/s", f"{latest.tokens_per_s:,.0f}" if latest and latest.tokens_per_s else "—")
    cells[3].metric("MFU", f"{latest.mfu:.1%}" if latest and latest.mfu is not None else "—")
    ago = time.time() - latest.ts if latest else None
    cells[4].metric("last step", ago_text(ago) if ago is not None else "—")

