"""Dashboard benchmark, on a synthetic long run in a SQLite store (bench/synthetic_run.py):

- `step_series` at 2,000 points (1 and 8 figures);
- `trainledger ledger RUN --format json` as a whole process, beside `trainledger --help` and
  beside the same ledger built the old way (`load_records`: a full Record per step);
- in Debian's chromium, from opening the Run page to every chart drawn, downsampled (M4)
  beside every point drawn (`?points=all`); the Downtime page likewise;
- the Streamlit server's memory while a live Run page refreshes every 2 s as steps arrive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.synthetic_run import COLUMNS, T0, write_run
from dashboard.cli import streamlit_argv
from dashboard.page_run import FIGURES
from monitor.models import LiveState
from monitor.store import open_store, save_live_states
from monitor.store.read import insert_step_rows, step_series

REPO = Path(__file__).resolve().parents[1]
TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
RUN = "long"
EIGHT = ["loss", "lr", "grad_norm", "loss_scale", "tflops", "tgs", "tokens_per_s", "mfu"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
EVERY_POINT_LIMIT_MS = 300_000
IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
OLD_LEDGER = ("import sys; from monitor.store import open_store, load_records; from monitor.accounting import "
              "compute_ledger; from monitor.ledger import to_json; e = open_store(sys.argv[1], read_only=True); "
              "print(to_json(compute_ledger(load_records(e, sys.argv[2]))))")


def _env(db: str) -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), TRAINLEDGER_DB=db)


def _best(fn, repeat: int = 3) -> tuple[float, float]:
    """Best wall and CPU seconds of `repeat` calls (CPU time is what a loaded machine distorts least)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu


def _process(argv: list[str], env: dict) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak resident MB of one process, from its own rusage."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{argv[:3]} exited {os.waitstatus_to_exitcode(status)}")
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _best_process(argv, env, repeat: int = 3) -> tuple[float, float, float]:
    runs = [_process(argv, env) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs)


class Server:
    def __init__(self, db: str, port: int = 8765) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(streamlit_argv("127.0.0.1", port), env=_env(db), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.base}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not start")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _page_seconds(browser, url: str, charts: int, timeout_ms: int = 600_000) -> float:
    """Seconds from opening `url` to the app idle and `charts` plotly charts drawn (each with its
    layout laid out and its traces in the SVG/WebGL layer)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        t = time.perf_counter()
        page.goto(url)
        page.wait_for_selector(IDLE, timeout=timeout_ms)
        page.wait_for_function(
            """n => { const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
                      return plots.length >= n && plots.every(p => p._fullLayout && p._fullData &&
                             p.querySelector('.scatterlayer, .gl-container, .pielayer, .barlayer')); }""",
            arg=charts, timeout=timeout_ms, polling=50)
        return time.perf_counter() - t
    finally:
        page.close()


def _browser_rows(db: str, minutes: float, charts: int) -> list[str]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    server = Server(db)
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            _page_seconds(browser, f"{server.base}/?page=runs", 0)  # warm: the server's imports
            run_url = f"{server.base}/?page=run&run={RUN}"
            m4_s = min(_page_seconds(browser, run_url, charts) for _ in range(3))
            try:
                every = f"{_page_seconds(browser, run_url + '&points=all', charts, EVERY_POINT_LIMIT_MS):.2f} s"
            except PlaywrightTimeout:
                every = f"> {EVERY_POINT_LIMIT_MS / 1000:.0f} s (not drawn within the limit)"
            downtime = min(_page_seconds(browser, f"{server.base}/?page=downtime&run={RUN}", 2) for _ in range(3))
            rows += [f"| Run page of the 1M-step run, opened to {charts} charts drawn, M4 (2,000 points a chart, "
                     f"best of 3) | {m4_s:.2f} s | ≤ 1.5 s |",
                     f"| same page drawing every point | {every} | — |",
                     f"| Downtime page of the 1M-step run, opened to pie and timeline drawn (best of 3) "
                     f"| {downtime:.2f} s | ≤ 2 s |"]
            rows.append(_live_memory(browser, server, db, minutes))
            browser.close()
    finally:
        server.stop()
    return rows


def _live_memory(browser, server: Server, db: str, minutes: float) -> str:
    """A live run's page open while steps arrive (through the store's own functions) and the
    page refreshes every 2 s: the server's resident memory after the first minute (warm) and at the end."""
    engine = open_store(db)
    step = [0]

    def tick() -> None:
        now = time.time()
        rows = [(None, step[0] + i, "live", "live-1", now, "", 0, step[0] + i + 1, 2.0 + 1 / (step[0] + i + 1),
                 3e-4, 1.0, 65536.0, 150.0, 3000.0, 24000.0, 0.45, (step[0] + i + 1) * 4096) for i in range(20)]
        step[0] += 20
        with engine.begin() as conn:
            insert_step_rows(conn, COLUMNS, rows)
            save_live_states(conn, [LiveState(run="live", state="training", since=T0, attempt="live-1",
                                              last_record_ts=now, step=step[0], updated=now)])
    tick()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server.base}/?page=run&run=live")
    page.wait_for_selector(IDLE, timeout=120_000)
    end = time.monotonic() + minutes * 60
    warm = time.monotonic() + min(60.0, minutes * 20)  # the first minute (a third of a short run)
    baseline = None
    while time.monotonic() < end:
        tick()
        if baseline is None and time.monotonic() > warm:
            baseline = server.rss_mb()
        time.sleep(2.0)
    final = server.rss_mb()
    page.close()
    engine.dispose()
    return (f"| live Run page refreshing every 2 s for {minutes:g} min (20 steps stored every 2 s): server memory "
            f"{baseline:.0f} MB after the first minute → {final:.0f} MB ({final - baseline:+.0f} MB) "
            f"| {final - baseline:+.0f} MB | ≤ 50 MB over 30 min |")


def main(quick: bool = False) -> str:
    steps = 200_000 if quick else 1_000_000
    minutes = float(os.environ.get("BENCH_LIVE_MINUTES", 1 if quick else 5))
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "long.db")
        engine = open_store(db)
        t = time.perf_counter()
        write_run(engine, RUN, steps)
        build = time.perf_counter() - t
        reader = open_store(db, read_only=True)
        one = _best(lambda: step_series(reader, RUN, ["loss"], max_points=2000))
        eight = _best(lambda: step_series(reader, RUN, EIGHT, max_points=2000))
        series = step_series(reader, RUN, EIGHT, max_points=2000)
        spikes_kept = max(series.points["loss"][1]) == 50.0
        env = _env(db)
        help_ = _best_process([TRAINLEDGER, "--help"], env)
        ledger = _best_process([TRAINLEDGER, "ledger", RUN, "--db", db, "--format", "json"], env)
        old = _best_process([sys.executable, "-c", OLD_LEDGER, db, RUN], env, repeat=1)
        rows = [
            f"| `step_series`, loss, {steps:,} steps → 2,000 points (best of 3) | {one[0]:.3f} s ({one[1]:.3f} s CPU) "
            "| ≤ 0.3 s |",
            f"| `step_series`, 8 figures at once (best of 3) | {eight[0]:.3f} s ({eight[1]:.3f} s CPU) | — |",
            f"| the one-step loss spike among the points | {'kept' if spikes_kept else 'LOST'} | kept |",
            f"| `trainledger --help` (best of 3) | {help_[0]:.2f} s ({help_[1]:.2f} s CPU), {help_[2]:.0f} MB | — |",
            f"| `trainledger ledger {RUN} --format json` (best of 3) | {ledger[0]:.2f} s ({ledger[1]:.2f} s CPU), "
            f"{ledger[2]:.0f} MB | ≤ help + 2 s, ≤ 300 MB |",
            f"| — above `--help` | {ledger[0] - help_[0]:+.2f} s ({ledger[1] - help_[1]:+.2f} s CPU) | ≤ 2 s |",
            f"| the same ledger the old way (`load_records`, a Record per step), as a process | {old[0]:.2f} s "
            f"({old[1]:.2f} s CPU), {old[2]:.0f} MB | — |",
        ]
        # the Run page's charts: the loss, and one per other figure the run logged
        charts = 1 + sum(1 for f in FIGURES if f != "loss" and step_series(reader, RUN, [f]).points[f][0])
        rows += _browser_rows(db, minutes, charts)
        reader.dispose()
        engine.dispose()
    return "\n".join([
        "## Dashboard",
        "",
        f"`.venv/bin/python -m bench dashboard` (`--quick`: 200k steps, 1 live minute; `BENCH_LIVE_MINUTES=N` "
        f"sets the live run's minutes). Synthetic run of {steps:,} steps, 8 figures plus tokens, three attempts "
        f"(10,000 steps redone after a resume), a checkpoint every 10,000 steps and one loss spike, written "
        f"into a SQLite store in {build:.0f} s. Browser: Debian's chromium via playwright, the dashboard served "
        "by `streamlit` as a process; a page's time runs from `goto` to the app idle with every chart laid out. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work shares them).",
        "",
        "| measure | value | target |",
        "| -- | -- | -- |",
        *rows,
    ])


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
