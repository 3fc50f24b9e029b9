"""The dashboard in a real browser: served by `streamlit` as a subprocess on loopback, read by
Debian's chromium through playwright, while a real `trainledger watch` follows a live run into
the same store. Every wait is on the app's own connection and script state, or a poll of the
page against a deadline. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import re
from urllib.parse import quote

from dashboard_support import HOSTILE, HTML_RUN, LING, LIVE_RUN, open_page

PLOT_DATA = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(
    plot => ({title: plot.layout.title.text.replace(/<[^>]+>/g, ''), traces: plot.data.map(t => ({name: t.name, points: t.y ? t.y.length : 0}))}))"""


def _url(base: str, page: str, run: str) -> str:
    return f"{base}/?page={page}&run={quote(run, safe='')}"


def test_the_pie_shows_the_ling_runs_days(served, browser, tmp_path):
    base, *_ = served
    page = open_page(browser, _url(base, "downtime", LING))
    page.wait_for_selector(".js-plotly-plot .slicetext", timeout=60_000)
    texts = page.locator(".js-plotly-plot .slicetext").all_text_contents()
    page.screenshot(path=tmp_path / "downtime.png", full_page=True)
    days = {label: value for text in texts for label, value in re.findall(r"^(.*?)([0-9.]+) d$", text)}
    assert days == {"training": "26.41", "interrupted / waiting": "6.60", "nobody at work": "1.54"}


def test_the_run_page_draws_the_loss_with_its_points(served, browser, tmp_path):
    base, *_ = served
    page = open_page(browser, _url(base, "run", LING))
    page.wait_for_function(f"({PLOT_DATA})().some(p => p.title === 'loss')", timeout=60_000)
    plots = {p["title"]: p for p in page.evaluate(PLOT_DATA)}
    page.screenshot(path=tmp_path / "run.png", full_page=True)
    loss = {t["name"]: t["points"] for t in plots["loss"]["traces"]}
    assert loss["loss"] > 100 and loss["loss, smoothed (EMA 0.6)"] > 100
    assert page.locator(".js-plotly-plot .scatterlayer path.js-line").count() > 0  # drawn, not only sent


def test_a_live_runs_step_count_grows_on_the_page_without_a_reload(served, browser, tmp_path):
    base, log, *_ = served
    page = open_page(browser, _url(base, "run", LIVE_RUN))
    step = (page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text("step", exact=True))
            .locator('[data-testid="stMetricValue"]'))
    before = int(step.inner_text().replace(",", ""))
    page.evaluate("() => { window.__same_page = true; }")
    newest = log.steps(25)
    assert newest > before
    page.wait_for_function(
        """newest => Array.from(document.querySelectorAll('[data-testid="stMetric"]'))
            .some(m => m.querySelector('[data-testid="stMetricLabel"]').innerText.trim() === 'step' &&
                  Number(m.querySelector('[data-testid="stMetricValue"]').innerText.replace(/,/g, '')) === newest)""",
        arg=newest, timeout=60_000)
    assert page.evaluate("() => window.__same_page === true")  # refreshed in place, never reloaded
    page.screenshot(path=tmp_path / "live.png", full_page=True)


def test_html_in_a_log_line_appears_literally(served, browser, tmp_path):
    base, *_ = served
    page = open_page(browser, _url(base, "downtime", HTML_RUN))
    page.wait_for_selector('[data-testid="stTable"]', timeout=60_000)
    page.screenshot(path=tmp_path / "html.png", full_page=True)
    assert HOSTILE in page.locator("body").inner_text()
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator('[data-testid="stTable"] b', has_text="bold").count() == 0
