"""`trainledger ingest | status | watch` as a user runs them: real processes, real stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intake_helpers import sources, step_line, stored_steps, write_steps

from monitor.intake import Intake
from monitor.sources import Targets
from monitor.store import open_store

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]


def run(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([TRAINLEDGER, *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200", **(env or {})))


def test_ingest_then_status_reports_files_offsets_and_the_first_bad_line(tmp_path):
    folder = tmp_path / "run-a"
    folder.mkdir()
    log = folder / "events.jsonl"
    write_steps(log, range(1, 6))
    with open(log, "a") as f:
        f.write("[red]not[/red] json \x1b[31m\n")
    write_steps(log, range(6, 11))
    db = tmp_path / "s.db"
    first = run("ingest", folder, "--db", db)
    assert first.returncode == 0, first.stderr
    assert "10 new records from 1 files" in first.stdout
    assert f"{log}:6: bad line skipped" in first.stderr and "Traceback" not in first.stderr
    again = run("ingest", folder, "--db", db)
    assert "0 new records" in again.stdout
    status = run("status", "--db", db)
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "1 runs, 1 files" in out and str(log) in out and "jsonl" in out and "active" in out
    assert f"{log.stat().st_size:,} B, 11 lines" in out
    # the first bad line, shown with its markup-like text escaped, not interpreted
    assert f"{log}:6: not JSON" in out and "[red]not[/red] json \\x1b[31m" in out


def test_default_store_location_comes_from_the_environment(tmp_path):
    log = tmp_path / "events.jsonl"
    write_steps(log, range(1, 4))
    result = run("ingest", log, env={"TRAINLEDGER_DB": str(tmp_path / "env.db")})
    assert result.returncode == 0, result.stderr
    assert stored_steps(open_store(tmp_path / "env.db")) == [1, 2, 3]
    result = run("ingest", log, env={"TRAINLEDGER_DB": "", "XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "xdg" / "trainledger" / "trainledger.db").exists()


@pytest.mark.parametrize("args, message", [
    (["ingest", "{tmp}/no/such/dir/x.log"], "error: no such file, folder or parent folder: {tmp}/no/such/dir/x.log"),
    (["ingest", "{tmp}", "--format", "klingon"], "error: --format: unknown log format 'klingon'; known formats: jsonl"),
    (["ingest", "{tmp}", "--db", "postgresql+psycopg://bob:hunter2@127.0.0.1:1/x"],
     "error: cannot open the store postgresql+psycopg://bob:***@127.0.0.1:1/x: "),
    (["status", "--db", "{tmp}/missing.db"], "error: no store at {tmp}/missing.db"),
    (["watch", "{tmp}", "--db", "mysql+nosuchdriver://u:pw@h/x"], "error: cannot open the store mysql+nosuchdriver://u:***@h/x"),
])
def test_bad_options_and_stores_are_one_line_errors_without_passwords(tmp_path, args, message):
    result = run(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode != 0
    assert result.stderr.startswith(message.format(tmp=tmp_path)), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout and ":pw@" not in result.stderr


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    engine = open_store(tmp_path_factory.mktemp("random-store") / "s.db")
    yield engine
    engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.one_of(st.binary(max_size=300), st.sampled_from([step_line(7).encode(), b"\n", b"\r\n"])),
                       max_size=12))
def test_random_bytes_never_stop_the_intake(shared_store, tmp_path_factory, chunks):
    log = tmp_path_factory.mktemp("random") / "events.jsonl"
    data = step_line(1).encode() + b"".join(chunks) + b"\n" + step_line(2).encode()
    log.write_bytes(data)
    Intake(shared_store, format="jsonl").ingest(Targets([str(log)]))
    [src] = [s for s in sources(shared_store) if s["path"] == str(log)]
    assert src["offset"] == len(data) and src["lines"] == data.count(b"\n")
    assert 2 <= src["records"] and src["records"] + src["bad_lines"] <= src["lines"]
