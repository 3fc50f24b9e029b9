"""Every page under Streamlit's AppTest, on the sample store and on an empty one: no exception,
and the figures the page is for, checked against the store and the accounting."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard_support import HOSTILE, HTML_RUN, LING, app_test, plotly_figures
from monitor.accounting import compute_ledger
from monitor.store import list_runs, load_records, open_store
from monitor.store.read import raw_series, step_series

PAGES = ("runs", "run", "downtime", "compare", "whatif", "alerts")


@pytest.mark.parametrize("page", PAGES)
def test_each_page_of_an_empty_store_says_what_it_will_show(empty_store, page, monkeypatch):
    at = app_test(empty_store, page, monkeypatch=monkeypatch)
    assert not at.exception
    assert not plotly_figures(at)
    assert [info.value for info in at.info], "an empty page says why it is empty"


def _tensorboard_ema(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing, step by step as its frontend writes it."""
    out, last = [], 0.0
    for i, value in enumerate(values):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight ** (i + 1)))
    return np.array(out)


def _titled(at) -> dict[str, dict]:
    return {figure["layout"]["title"]["text"]: figure for figure in plotly_figures(at)}


def _trace(figure: dict, name: str) -> dict:
    return next(t for t in figure["data"] if t.get("name") == name)


def test_runs_page_lists_every_run_with_the_ledgers_figures(sample_store, monkeypatch):
    at = app_test(sample_store, "runs", monkeypatch=monkeypatch)
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert {LING, HTML_RUN, "dual_gpu_stable_success", "internlm_20b/logs"} <= set(table.index)
    engine = open_store(sample_store, read_only=True)
    ledger = compute_ledger(load_records(engine, LING))
    assert table.loc[LING, "goodput"] == pytest.approx(ledger.goodput)
    assert table.loc[LING, "ETTR"] == pytest.approx(ledger.ettr)
    assert table.loc[LING, "step"] == 567240
    assert table.loc[HTML_RUN, "state"] == "fault"


def test_runs_page_shows_the_finish_the_watcher_projects(tmp_path, monkeypatch):
    from datetime import datetime, timezone
    from pathlib import Path

    from monitor.intake import Intake
    from monitor.models import LiveEta
    from monitor.sources import Targets
    from monitor.store import save_live_etas

    store = str(tmp_path / "store.db")
    engine = open_store(store)
    Intake(engine).ingest(Targets([str(Path(__file__).parents[1] / "fixtures" / "logs" / "jsonl")]))
    runs = sorted(r.name for r in list_runs(engine))
    assert len(runs) >= 2
    p50 = 1_796_000_000.0
    save_live_etas(engine, [
        LiveEta(run=runs[0], done_steps=200, total_steps=1000, step_time_s=1.5, finish_p10=p50 - 600,
                finish_p50=p50, finish_p90=p50 + 900, updated=p50 - 3600),
        LiveEta(run=runs[1], done_steps=1000, total_steps=1000, step_time_s=1.5, finish_p10=p50, finish_p50=p50,
                finish_p90=p50, finished=True, updated=p50)])
    engine.dispose()
    at = app_test(store, "runs", monkeypatch=monkeypatch)
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[runs[0], "ETA (P50)"] == datetime.fromtimestamp(p50, timezone.utc).strftime("%Y-%m-%d %H:%M")
    assert table.loc[runs[1], "ETA (P50)"] == "finished"
    assert set(table.drop(index=runs[:2])["ETA (P50)"]) <= {""}  # no projection kept: blank


def test_run_page_draws_every_extreme_of_the_loss_and_its_smoothing(sample_store, monkeypatch):
    at = app_test(sample_store, "run", LING, monkeypatch=monkeypatch)
    assert not at.exception
    charts = _titled(at)
    assert {"loss", "tokens/s", "tokens/gpu/s", "learning rate"} <= set(charts)
    engine = open_store(sample_store, read_only=True)
    _, _, loss = raw_series(engine, LING, "loss")
    drawn = _trace(charts["loss"], "loss")["y"]
    assert len(loss) > len(drawn) > 100  # downsampled, with every bucket's extremes
    assert (max(drawn), min(drawn)) == (loss.max(), loss.min())
    smoothed = _trace(charts["loss"], "loss, smoothed (EMA 0.6)")["y"]
    assert smoothed[0] == loss[0]  # debiased: the start is not pulled towards zero
    every_step = _tensorboard_ema(loss, 0.6)
    assert all(np.isclose(every_step, y, rtol=1e-9).any() for y in smoothed)  # of every step, not of buckets
    series = step_series(engine, LING, ["loss"])
    assert len(charts["loss"]["layout"]["shapes"]) >= len(series.redone) > 0  # redone stretches shaded
    starts = _trace(charts["loss"], "attempt start")
    assert len(starts["x"]) == sum(1 for _a, _t, first in series.attempts if first is not None)
    assert [m.value for m in at.metric][1] == "567,240"


def test_run_page_of_nanochat_draws_its_smoothed_loss_as_smoothed_and_its_validation(sample_store, monkeypatch):
    at = app_test(sample_store, "run", "dual_gpu_stable_success", monkeypatch=monkeypatch)
    assert not at.exception
    charts = _titled(at)
    names = [t["name"] for t in charts["loss"]["data"]]
    assert "loss (smoothed by the trainer)" in names and "loss" not in names
    evals = load_records(open_store(sample_store, read_only=True), "dual_gpu_stable_success", kinds={"eval"})
    assert _trace(charts["validation"], "validation bits per byte")["y"] == [
        r.fields["val_bpb"] for r in evals if r.fields.get("val_bpb") is not None]


def test_run_page_of_internlm_draws_loss_and_tokens_per_source(sample_store, monkeypatch):
    at = app_test(sample_store, "run", "internlm_20b/logs", monkeypatch=monkeypatch)
    assert not at.exception
    charts = _titled(at)
    assert len(_trace(charts["tokens per source"], ".git")["y"]) == 300
    assert "MFU" not in charts  # not logged, so not drawn
    assert "MFU" in at.caption[-1].value


def test_downtime_page_draws_the_pie_in_days_and_the_ledger(sample_store, monkeypatch):
    at = app_test(sample_store, "downtime", LING, monkeypatch=monkeypatch)
    assert not at.exception
    pie = next(f for f in plotly_figures(at) if f["data"][0]["type"] == "pie")["data"][0]
    assert dict(zip(pie["labels"], pie["values"])) == {"training": 26.41, "interrupted / waiting": 6.6,
                                                       "nobody at work": 1.54}
    assert "%{value:.2f} d" in pie["texttemplate"]
    engine = open_store(sample_store, read_only=True)
    ledger = compute_ledger(load_records(engine, LING))
    rows = at.table[1].value
    assert len(rows) == len(ledger.rows)
    assert list(rows["state"]) == [r.state for r in ledger.rows]
    timeline = next(f for f in plotly_figures(at) if f["layout"]["title"]["text"] == "States by attempt")
    assert sum(len(t["y"]) for t in timeline["data"]) == len(ledger.segments)
    assert {m.label: m.value for m in at.metric} == {"goodput": f"{ledger.goodput:.1%}", "ETTR": f"{ledger.ettr:.1%}"}


def test_log_text_with_html_is_shown_as_text(sample_store, monkeypatch):
    at = app_test(sample_store, "downtime", HTML_RUN, monkeypatch=monkeypatch)
    assert not at.exception
    causes = list(at.table[1].value["cause"])
    assert any(HOSTILE in cause for cause in causes)


def test_compare_page_overlays_two_runs(sample_store, monkeypatch):
    at = app_test(sample_store, "compare", monkeypatch=monkeypatch)
    assert not at.exception
    at.multiselect[0].set_value([LING, "internlm_20b/logs"]).run()
    chart = plotly_figures(at)[0]
    assert [t["name"] for t in chart["data"]] == [LING, "internlm_20b/logs"]
    assert list(at.dataframe[0].value.columns) == [LING, "internlm_20b/logs"]


NANOCHAT = "dual_gpu_stable_success"


def test_whatif_projects_the_run_as_measured_and_a_change(sample_store, monkeypatch):
    at = app_test(sample_store, "whatif", NANOCHAT, monkeypatch=monkeypatch)
    assert not at.exception
    terms = at.dataframe[0].value
    assert "step time" in set(terms["term"])
    rows = at.dataframe[1].value
    assert list(rows["name"]) == ["baseline"] and rows["speedup"][0] == pytest.approx(1.0)
    at.number_input[2].set_value(2).run()  # epochs: twice the compute, half the speed
    rows = at.dataframe[1].value
    assert list(rows["name"]) == ["baseline", "what if"]
    assert rows["compute_hours"][1] == pytest.approx(2 * rows["compute_hours"][0])
    assert rows["speedup"][1] == pytest.approx(0.5, rel=1e-3)


def test_whatif_of_a_run_that_does_not_say_its_total_asks_for_it(sample_store, monkeypatch):
    at = app_test(sample_store, "whatif", LING, monkeypatch=monkeypatch)
    assert not at.exception
    assert any("total steps" in info.value for info in at.info)
    at.number_input[0].set_value(1_000_000).run()
    assert not at.exception and at.dataframe[1].value["steps_per_epoch"][0] == 1_000_000


def test_the_alerts_page_lists_the_runs_alerts_open_first(sample_store, tmp_path, monkeypatch):
    import shutil

    from monitor.models import Alert
    from monitor.store import raise_alert, resolve_alert

    store = str(tmp_path / "alerts.db")
    shutil.copy(sample_store, store)
    engine = open_store(store)
    old = raise_alert(engine, Alert(run=LING, ts=1_716_100_000.0, kind="stalled", message="no step for 5 min"))
    resolve_alert(engine, old.id, 1_716_100_600.0)
    raise_alert(engine, Alert(run=LING, ts=1_716_000_000.0, kind="fault", severity="critical",
                              message="<script>x</script> NCCL timeout"))
    engine.dispose()
    at = app_test(store, "alerts", LING, monkeypatch=monkeypatch)
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["cause"]) == ["fault", "stalled"] and list(table["status"]) == ["open", "resolved"]
    assert table["message"].iloc[0] == "<script>x</script> NCCL timeout"  # text, as the log said it


def test_the_dashboard_classifies_with_the_configuration_files_policy(sample_store, tmp_path, monkeypatch):
    """The policy `trainledger ledger --config` uses, handed over by `trainledger dashboard --config`."""
    from dashboard.policy import ENV_VAR, policy_options_env

    config = tmp_path / "trainledger.toml"
    config.write_text('[policy]\nwork_hours = "08:15-20:45"\nholidays = ["2024-06-10"]\n')
    monkeypatch.setenv(ENV_VAR, policy_options_env(config=str(config)))
    at = app_test(sample_store, "downtime", LING, monkeypatch=monkeypatch)
    assert not at.exception
    policy = next(caption.value for caption in at.caption if caption.value.startswith("Policy in use"))
    assert "08:15–20:45" in policy and "2024-06-10" in policy
