"""Text from logs never reaches the user's terminal or a file format raw: a run name, an attempt
id, a data batch, an exception type, a fault message, a stop reason or a file name holding
ESC, CSI, OSC 8 or BEL comes out of `ledger` (every format) and `status` as visible escapes.

The real commands as processes, on a real SQLite store filled by `trainledger ingest`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from monitor.live import LiveRuns
from monitor.store import load_records, open_store

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
REPO = Path(__file__).resolve().parents[2]
HOSTILE = "\x1b[2J\x1b]8;;https:evil.example\x07link\x1b]8;;\x07\x07\x9b31m"
"""ESC[2J clears the screen, OSC 8 … BEL plants a link, BEL rings, C1 CSI (0x9b) colours."""
RAW = ("\x1b", "\x07", "\x9b")
RUN = f"run{HOSTILE}"


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), COLUMNS="400")


def _event(kind: str, attempt: str, ts: float, **fields) -> str:
    return orjson.dumps({"v": 1, "kind": kind, "run": RUN, "attempt": attempt, "ts": ts, "host": "node1",
                         "rank": 0, **fields}).decode() + "\n"


def _launch(attempt: str, ts: float, data_batch: str) -> str:
    return _event("launch", attempt, ts, world_size=2, nodes=2, hosts=["node1", "node2"], device="cpu",
                  peak_flops=None, flops_per_token=None, config_digest="d", data_batch=data_batch, data_slice=None,
                  resume_from=None)


def _hostile_log(folder: Path) -> Path:
    """Two attempts: the first ends in a fault, the second in a manual stop; every text is hostile."""
    start = 1_700_000_000.0
    first, second = f"a1{HOSTILE}", f"a2{HOSTILE}"
    lines = [_launch(first, start, f"batch{HOSTILE}"),
             *(_event("step", first, start + 60 + i, step=i, loss=2.0) for i in range(1, 4)),
             _event("fault", first, start + 70, exc_type=f"Err{HOSTILE}", message=f"boom{HOSTILE}",
                    cause=f"nccl{HOSTILE}"),
             _launch(second, start + 600, f"batch2{HOSTILE}"),
             *(_event("step", second, start + 660 + i, step=3 + i, loss=2.0) for i in range(1, 4)),
             _event("stop", second, start + 670, reason=f"SIGTERM{HOSTILE}")]
    log = folder / f"events{HOSTILE}.jsonl"
    log.write_text("".join(lines) + "not json " + HOSTILE + "\n")
    return log


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("escaping")
    folder = root / "runs" / f"out{HOSTILE}"
    folder.mkdir(parents=True)
    _hostile_log(folder)
    db = root / "store.db"
    ingest = subprocess.run([TRAINLEDGER, "ingest", str(folder.parent), "--db", str(db)], capture_output=True, text=True,
                            env=_env(), timeout=120)
    assert ingest.returncode == 0, ingest.stderr
    assert not any(c in ingest.stdout + ingest.stderr for c in RAW), repr(ingest.stdout + ingest.stderr)
    engine = open_store(db)
    LiveRuns(engine).committed(load_records(engine, RUN))  # what `watch` keeps for `status`
    engine.dispose()
    return db


def _run(*args: str) -> str:
    done = subprocess.run([TRAINLEDGER, *args], capture_output=True, env=_env(), timeout=120)
    out = done.stdout.decode("utf-8") + done.stderr.decode("utf-8")
    assert done.returncode == 0, out
    assert not any(c in out for c in RAW), repr(out)
    return out


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown"])
def test_ledger_prints_every_log_text_as_visible_escapes(hostile_store, fmt):
    out = _run("ledger", RUN, "--db", str(hostile_store), "--format", fmt)
    visible = "\\x1b[2J\\x1b]8;;https:evil.example\\x07link"
    for text in ("batch", "batch2", "Err", "boom", "nccl", "SIGTERM"):
        assert f"{text}{visible}" in out.replace("\n", ""), (text, out)
    if fmt == "csv":  # the only format with a column of attempt ids
        assert f"a1{visible}" in out and f"a2{visible}" in out
    else:  # in the title
        assert f"run{visible}" in out.replace("\n", "")


def test_ledger_json_stays_valid_and_escapes_control_characters(hostile_store):
    out = _run("ledger", RUN, "--db", str(hostile_store), "--format", "json")
    ledger = json.loads(out)
    assert ledger["run"] == RUN  # JSON's own escapes: the exact text comes back
    assert "\\u001b[2J" in out and "\\u009b31m" in out


def test_status_prints_file_names_bad_lines_and_runs_as_visible_escapes(hostile_store):
    out = _run("status", "--db", str(hostile_store))
    visible = "\\x1b[2J\\x1b]8;;https:evil.example\\x07link"
    flat = out.replace("\n", "").replace(" ", "").replace("│", "")
    assert f"events{visible}" in flat and f"run{visible}" in flat, out
    assert "notjson" in flat  # the first bad line's example, escaped


def test_the_daemons_log_escapes_messages_and_tracebacks_and_masks_secrets():
    """The filters `watch` and `ingest` put on their log handler, on a real handler."""
    import io
    import logging

    from monitor.escape import PrintableLog
    from monitor.store import MaskedLog

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(PrintableLog())
    handler.addFilter(MaskedLog("postgresql+psycopg://u:pa55word@db.example/x?password=t0ken"))
    log = logging.getLogger("test.escaping")
    log.addHandler(handler)
    try:
        log.warning("%s: bad line skipped (%s)", f"events{HOSTILE}.jsonl", "pa55word")
        try:
            raise RuntimeError(f"cannot reach t0ken {HOSTILE}")
        except RuntimeError:
            log.exception("run %s failed", RUN)
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert not any(c in text for c in RAW) and "pa55word" not in text and "t0ken" not in text, text
    assert "events\\x1b[2J" in text and "bad line skipped (***)" in text
    assert "RuntimeError: cannot reach *** \\x1b[2J" in text and "Traceback (most recent call last):\n" in text
