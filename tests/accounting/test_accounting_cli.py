"""`trainledger ledger RUN`: formats and options, against a real SQLite store into which the
intake ingested seed 000's rebuilt logs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from monitor.cli import register
from monitor.intake import Intake
from monitor.sources import Targets
from monitor.store import open_store

SEED = Path(__file__).resolve().parents[2] / "sample_logs" / "ling_1b" / "logs"
RUN = "ling-1b-v1"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """Seed 000's logs ingested into a real SQLite file by the intake."""
    path = str(tmp_path_factory.mktemp("ledger") / "ling_1b.db")
    engine = open_store(path)
    Intake(engine).ingest(Targets([SEED]))
    engine.dispose()
    return path


def ledger(*args: str):
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as in trainledger/cli.py, even if `ledger` were alone
    register(app)
    return CliRunner().invoke(app, ["ledger", *args])


def test_json_gives_ling_1b_pie_and_counts(store):
    result = ledger(RUN, "--db", store, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pie_days"]["training"] == pytest.approx(26.41, abs=0.01)
    assert data["pie_days"]["interrupted_or_waiting"] == pytest.approx(6.60, abs=0.01)
    assert data["pie_days"]["nobody_at_work"] == pytest.approx(1.54, abs=0.01)
    assert (data["launches"], data["faults"], data["manual_stops"]) == (18, 5, 2)
    assert [g["attempt"] for g in data["restore_gaps"]] == [f"{RUN}-launch-{n:02d}" for n in (2, 3, 4)]


def test_table_csv_and_markdown_render_the_same_rows(store):
    table = ledger(RUN, "--db", store)
    assert table.exit_code == 0, table.output
    assert "26.41 days" in table.stdout and "18 / 5 / 2" in table.stdout
    rows = list(csv.DictReader(io.StringIO(ledger(RUN, "--db", store, "-f", "csv").stdout)))
    assert rows[0]["start"] == "2024-05-19 09:55:00"  # local time of the run (UTC+8)
    assert sum(r["state"] == "training" for r in rows) == 18
    assert [r["start"] for r in rows if r["state"] == "manual"] == ["2024-05-21 17:10:34", "2024-05-24 14:04:18"]
    markdown = ledger(RUN, "--db", store, "-f", "markdown").stdout
    assert '"training": 26.41' in markdown and markdown.count("\n| 2024-") == len(rows)


def test_working_hours_options_change_the_off_hours(store):
    utc = json.loads(ledger(RUN, "--db", store, "-f", "json", "--timezone", "UTC").stdout)
    assert utc["timezone"] == "UTC" and utc["pie_days"]["nobody_at_work"] != pytest.approx(1.54, abs=0.01)
    never = json.loads(ledger(RUN, "--db", store, "-f", "json", "--work-hours", "00:00-23:59:59").stdout)
    assert never["pie_days"]["nobody_at_work"] < 0.001
    plain = json.loads(ledger(RUN, "--db", store, "-f", "json").stdout)
    holiday = json.loads(ledger(RUN, "--db", store, "-f", "json", "--holiday", "2024-05-27").stdout)
    # the holiday hang began 05-27 10:44:10: on a holiday that is off hours until 05-28 09:30
    hang_off_hours = (22 * 3600 + 45 * 60 + 50) / 86400
    assert holiday["pie_days"]["nobody_at_work"] == pytest.approx(plain["pie_days"]["nobody_at_work"] + hang_off_hours)
    maint = json.loads(ledger(RUN, "--db", store, "-f", "json",
                              "--maintenance", "2024-05-28T00:00+08:00/2024-05-29T00:00+08:00").stdout)
    assert maint["pie_days"]["maintenance"] == pytest.approx(1.0)
    assert maint["counted_s"] == pytest.approx(maint["wall_s"] - 86400)


@pytest.mark.parametrize("args, message", [
    (["--work-hours", "9-5pm"], "--work-hours"),
    (["--holiday", "tomorrow"], "--holiday"),
    (["--maintenance", "2024-05-28"], "--maintenance"),
    (["--timezone", "Mars/Olympus"], "unknown timezone"),
    (["--format", "xml"], "--format"),
])
def test_bad_options_are_one_clear_line(store, args, message):
    result = ledger(RUN, "--db", store, *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_an_unknown_run_names_the_runs_there_are(store):
    result = ledger("nope", "--db", store)
    assert result.exit_code == 1
    assert "no run named nope" in result.output and RUN in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
