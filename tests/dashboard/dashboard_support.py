"""The dashboard tests' support (conftest.py hands its fixtures to pytest): the sample store
(sample_logs/ and a run whose fault message is HTML, ingested by the intake into a real SQLite
file), an empty store, Streamlit's AppTest on either, and — for the browser tests — one real
dashboard server, one real `trainledger watch` following a live run into the same store, and
Debian's chromium driven by playwright."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from dashboard.cli import APP, streamlit_argv
from monitor.intake import Intake
from monitor.sources import Targets
from monitor.store import list_live_states, open_store
from polling import wait_for

REPO = Path(__file__).resolve().parents[2]
SAMPLE_LOGS = REPO / "sample_logs"
LING = "ling-1b-v1"
HTML_RUN = "html-run"
HOSTILE = "<script>window.__pwned = 1</script><b>bold</b> & <i>more</i>"
LIVE_RUN = "live-run"
TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def event(kind: str, run: str, ts: float, **fields) -> str:
    return orjson.dumps({"v": 1, "kind": kind, "run": run, "attempt": f"{run}-1", "ts": ts, "host": "node1",
                         "rank": 0, **fields}).decode() + "\n"


def launch(run: str, ts: float) -> str:
    return event("launch", run, ts, world_size=1, nodes=1, hosts=["node1"], device="cpu", peak_flops=None,
                 flops_per_token=None, config_digest="x", data_batch="0", data_slice="all", resume_from=None)



def _html_run(folder: Path) -> None:
    """A short run that ends in a fault whose message holds HTML and a script tag."""
    folder.mkdir(parents=True)
    t0 = 1_700_000_000.0
    lines = [launch(HTML_RUN, t0)] + [event("step", HTML_RUN, t0 + 10 * i, step=i, loss=3.0 - 0.1 * i)
                                      for i in range(1, 6)]
    lines.append(event("fault", HTML_RUN, t0 + 60, exc_type="RuntimeError", message=HOSTILE))
    (folder / "events.jsonl").write_text("".join(lines))


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory) -> str:
    """sample_logs/ and the HTML run, ingested by the intake into a real SQLite file."""
    root = tmp_path_factory.mktemp("dashboard-sample")
    _html_run(root / "html")
    path = str(root / "sample.db")
    engine = open_store(path)
    Intake(engine).ingest(Targets([SAMPLE_LOGS, root / "html"]))
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("dashboard-empty") / "empty.db")
    open_store(path).dispose()
    return path


def app_test(store: str, page: str, run: str | None = None, monkeypatch=None):
    """The app run once by Streamlit's AppTest on `store`, at ?page=…&run=…."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TRAINLEDGER_DB", store)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["page"] = page
    if run is not None:
        at.query_params["run"] = run
    return at.run()


def plotly_figures(at) -> list[dict]:
    """Every plotly chart of the page as a figure dict, typed arrays decoded (plotly ≥ 6 sends
    arrays as {"dtype", "bdata"} base64)."""
    return [_decode(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


def _decode(value):
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            return array.reshape(value["shape"]).tolist() if "shape" in value and isinstance(value["shape"], list) \
                else array.tolist()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LiveLog:
    """The live run's JSONL log, appended to as its trainer would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.step = 0
        path.write_text(launch(LIVE_RUN, time.time()))

    def steps(self, n: int) -> int:
        with open(self.path, "a") as f:
            for _ in range(n):
                self.step += 1
                f.write(event("step", LIVE_RUN, time.time(), step=self.step, loss=4.0 / self.step ** 0.2))
        return self.step


@pytest.fixture(scope="module")
def served(tmp_path_factory, sample_store):
    """A `trainledger watch` following the live run into a copy of the sample store, and the
    dashboard served on loopback from it: (base URL, the live log, the store path)."""
    root = tmp_path_factory.mktemp("dashboard-served")
    store = root / "served.db"
    store.write_bytes(Path(sample_store).read_bytes())
    (root / "live").mkdir()
    log = LiveLog(root / "live" / "events.jsonl")
    log.steps(5)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), TRAINLEDGER_DB=str(store))
    watcher = subprocess.Popen([TRAINLEDGER, "watch", str(root / "live"), "--db", str(store), "--poll", "0.5",
                                "--live-every", "1", "--work-hours", "00:00-23:59:59"],
                               stdout=open(root / "watch.log", "w"), stderr=subprocess.STDOUT, env=env)
    port = _free_port()
    server = subprocess.Popen(streamlit_argv("127.0.0.1", port), stdout=open(root / "server.log", "w"),
                              stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        def live():
            """the watcher has the live run in the store"""
            engine = open_store(str(store), read_only=True)
            try:
                return any(s.run == LIVE_RUN for s in list_live_states(engine))
            finally:
                engine.dispose()
        wait_for(live, timeout=60, interval=0.2)
        base = f"http://127.0.0.1:{port}"

        def healthy():
            """the dashboard answers its health check"""
            try:
                return httpx.get(f"{base}/_stcore/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(healthy, timeout=90, interval=0.2)
        yield base, log, store, server
    finally:
        _stop(server)
        _stop(watcher)


@pytest.fixture(scope="module")
def browser():
    """Module-scoped: playwright's sync API runs its own event loop in this thread while open, and
    another test module's `sync_playwright()` refuses to start inside it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    """A new tab at `url`, once the app is connected and its script has run."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    wait_until_idle(page)
    return page


def wait_until_idle(page, timeout_ms: int = 90_000) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
                           '[data-test-script-state="notRunning"]', timeout=timeout_ms)
