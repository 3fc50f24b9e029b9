"""`trainledger report` and `compare` on the sample runs: the nanochat run's figures (expected
values from its generator), its HTML page in the real browser (plots drawn, no request beyond the
file), the ling-1b run's ledger and pie, two runs side by side, and log text escaped."""

from __future__ import annotations

import json
import re
import statistics
from datetime import datetime, timezone

import orjson
import pytest

from monitor.store import load_records, open_store
from tests.projections.conftest import LING_RUN, NANOCHAT_RUN, PREVIOUS_RUN, cli, nanochat_generator, trainledger

STEP_LINE = re.compile(r"^step (\d+)/\d+ .*\| loss: ([\d.]+) .*\| tok/sec: ([\d,]+) ")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def _generated_figures():
    """Loss minimum and its step, and tok/sec before and after the drop, read off the generator's lines."""
    generator = nanochat_generator()
    steps = [(int(m[1]), float(m[2]), int(m[3].replace(",", ""))) for m in map(STEP_LINE.match, generator.lines()) if m]
    low = min(steps, key=lambda s: s[1])
    before = statistics.median(t for step, _, t in steps if 0 < step < generator.DROP_AT)
    after = statistics.median(t for step, _, t in steps if step >= generator.DROP_AT)
    return generator.DROP_AT, low, before, after


def _row(markdown: str, label: str) -> str:
    match = re.search(rf"^\| {re.escape(label)} \| ([^|]+) \|$", markdown, re.M)
    assert match, label
    return match[1].strip()


@pytest.fixture(scope="module")
def nanochat_report(sample_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("nanochat_report")  # the report as a user runs it: a process
    result = trainledger("report", NANOCHAT_RUN, "--db", sample_db, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_the_nanochat_report_holds_its_figures(nanochat_report, sample_db):
    drop_at, (low_step, low_loss, _), before, after = _generated_figures()
    drop_at += 1  # an eval precedes the first slow step: by the alert's rule, the step after a pause is not judged
    markdown = (nanochat_report / "report.md").read_text()
    assert float(_row(markdown, "loss, minimum")) == pytest.approx(low_loss, abs=5e-5)
    assert _row(markdown, "loss minimum at step") == f"{low_step:,}"
    assert _row(markdown, "regression 1: at step") == f"{drop_at:,}"
    drop = re.search(r"Throughput fell from ([\d,]+) to ([\d,]+) tokens/s \(−[\d.]+%\) at step ([\d,]+), "
                     r"([\d: -]+) \(UTC\)", markdown)
    assert drop, markdown
    assert float(drop[1].replace(",", "")) == pytest.approx(before, rel=0.01)
    assert float(drop[2].replace(",", "")) == pytest.approx(after, rel=0.01)
    assert drop[3] == f"{drop_at:,}"
    stored = next(r for r in load_records(open_store(sample_db, read_only=True), NANOCHAT_RUN, kinds=["step"])
                  if r.step == drop_at)
    assert drop[4] == datetime.fromtimestamp(stored.ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    assert _row(markdown, "peak memory") == "19.0 GiB"  # the log's closing "Peak memory usage: 19456.00MiB"
    assert _row(markdown, "tokens per step") == f"{nanochat_generator().BATCH:,}"
    assert "| step | val_bpb | core_metric |" in markdown  # the eval table


def test_the_nanochat_html_opens_offline_with_its_plots_drawn(nanochat_report):
    from playwright.sync_api import sync_playwright

    page_path = nanochat_report / "report.html"
    requests, errors = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_path.as_uri())
            page.wait_for_function("() => { const plots = [...document.querySelectorAll('.js-plotly-plot')];"
                                   " return plots.length > 0 && plots.every(p => p.querySelector('.main-svg')); }",
                                   timeout=60_000)
            drawn = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map(p => "
                                  "[p.querySelector('.gtitle') ? p.querySelector('.gtitle').textContent : '', "
                                  "p.querySelectorAll('g.trace, g.slice').length])")
            heading = page.text_content("h1")
        finally:
            browser.close()
    assert requests == [page_path.as_uri()]
    assert errors == []
    titles = {title: traces for title, traces in drawn}
    assert {"Loss", "Throughput (tokens/s)", "MFU (%)", "val_bpb", "Where the time went (days)"} <= set(titles)
    assert all(traces > 0 for traces in titles.values()), titles
    assert titles["Throughput (tokens/s)"] >= 2  # the series and the regression's mark
    assert heading == f"Run report: {NANOCHAT_RUN}"


def test_the_ling_report_holds_its_ledger_and_pie(sample_db, tmp_path):
    result = cli("report", LING_RUN, "--db", sample_db, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    markdown = (tmp_path / "report.md").read_text()
    assert _row(markdown, "training").startswith("26.41 days")
    assert _row(markdown, "interrupted / waiting").startswith("6.60 days")
    assert _row(markdown, "nobody at work (off hours)").startswith("1.54 days")
    assert '"training": 26.41' in markdown and '"nobody at work": 1.54' in markdown  # the mermaid pie
    assert _row(markdown, "launches / faults / manual stops") == "18 / 5 / 2"
    assert markdown.count("DistBackendError") == 1 and "nccl_timeout" in markdown  # the ledger's rows
    page = (tmp_path / "report.html").read_text()
    assert "Where the time went (days)" in page and "26.41" in page


def test_compare_sets_both_runs_side_by_side(sample_db, tmp_path):
    result = cli("compare", NANOCHAT_RUN, PREVIOUS_RUN, "--db", sample_db, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["figure"]: row for row in json.loads(result.stdout)["rows"]}
    tokens = rows["tokens/s (median)"]
    _, _, before, after = _generated_figures()
    assert tokens["worse"] and tokens["change"] < -0.4
    assert float(tokens["other"].replace(",", "")) == pytest.approx(before, rel=0.01)
    assert "regression 1: at step" in rows and rows["regression 1: at step"]["other"] == "—"
    table = cli("compare", NANOCHAT_RUN, PREVIOUS_RUN, "--db", sample_db)
    assert NANOCHAT_RUN in table.stdout and PREVIOUS_RUN in table.stdout and "⚠" in table.stdout
    report = cli("report", NANOCHAT_RUN, "--db", sample_db, "--compare", PREVIOUS_RUN, "--out", str(tmp_path))
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "report.md").read_text()
    assert f"## Compared with {PREVIOUS_RUN}" in markdown
    assert re.search(r"\*\*⚠\*\* tokens/s \(median\): [\d,]+ against [\d,]+ \(-4\d\.\d%\)", markdown)
    assert f"| figure | {NANOCHAT_RUN} | {PREVIOUS_RUN} | change |" in markdown


def test_log_text_is_escaped_in_every_surface(tmp_path):
    run = "<b>[red]evil[/red]</b>"
    events = [{"kind": "launch", "world_size": 1, "nodes": 1, "hosts": ["h"], "device": "<img src=x onerror=alert(1)>",
               "peak_flops": 1e12, "flops_per_token": 1e6, "n_params": 1000, "config_digest": "0" * 16,
               "data_batch": "0", "data_slice": None, "resume_from": None, "total_steps": 100}]
    events += [{"kind": "step", "step": n, "loss": 3.0 - n / 100, "step_time": 1.0, "tokens_per_s": 1000.0}
               for n in range(1, 40)]
    events.append({"kind": "fault", "step": 39, "exc_type": "RuntimeError", "cause": "exception",
                   "message": "<script>alert(1)</script> | [bold]x[/bold]", "traceback": ""})
    log = tmp_path / "logs" / "events.jsonl"
    log.parent.mkdir()
    log.write_bytes(b"".join(orjson.dumps({"v": 1, "run": run, "attempt": "a1", "ts": 1_700_000_000.0 + i,
                                           "host": "h", "rank": 0, **e}) + b"\n" for i, e in enumerate(events)))
    db = str(tmp_path / "evil.db")
    assert cli("ingest", str(log.parent), "--db", db).returncode == 0
    result = cli("report", run, "--db", db, "--out", str(tmp_path / "out"), "--compare", run)
    assert result.returncode == 0, result.stderr
    for name in ("report.md", "report.html"):
        text = (tmp_path / "out" / name).read_text()
        assert "<script>alert" not in text and "<img src" not in text and "<b>" not in text, name
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x" in text, name
    table = cli("compare", run, run, "--db", db)
    assert table.returncode == 0 and "[red]evil[/red]" in table.stdout
