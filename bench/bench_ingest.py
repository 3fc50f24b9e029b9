"""Intake benchmarks: ingest rate against the raw-sqlite3 floor, peak memory, live latency.

- rate: `Intake.ingest` of a generated 1M-step JSONL log and a 1M-line InternLM log into a
  fresh SQLite store, side by side with a raw `sqlite3.executemany` of the very same rows
  into the very same tables (rows prepared untimed, only the inserts and commits timed);
- memory: `trainledger ingest` of a 1 GB log in a subprocess, its peak RSS (VmHWM);
- latency: `trainledger watch` in a subprocess, lines appended one by one, each line's time
  from its write to the moment its step is queryable in the store.
"""

from __future__ import annotations

import gc
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from statistics import median
from typing import Any, Iterator

import orjson

from monitor.intake import Intake
from monitor.models import Event, StepMetric
from monitor.parsers import by_name
from monitor.parsers import internlm
from monitor.sources import Targets
from monitor.store import open_store
from monitor.store.rows import EVENT_COLUMNS, STEP_COLUMNS, event_row, step_row
from monitor.store.write import insert_rows

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
T0 = 1_763_900_000.0


def jsonl_line(step: int, pad: int = 0) -> str:
    event = {"v": 1, "kind": "step", "run": "bench", "attempt": "a1", "ts": T0 + step, "host": "node1",
             "rank": 0, "step": step, "loss": 3.0 + 1.0 / step, "lr": 3e-4, "grad_norm": 0.9, "tgs": 720.5,
             "tokens_per_s": 11528.0, "mfu": 0.41, "num_consumed_tokens": step * 65536, "step_time": 1.02,
             "per_source": {"web": {"loss": 3.1, "acc": 0.55, "tokens": 40000}}}
    if pad:
        event["note"] = "x" * pad
    return orjson.dumps(event).decode() + "\n"


def internlm_line(step: int) -> str:
    """A per-step line as InternEvo prints it (the shape of tests/fixtures/logs/internlm)."""
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(T0 + step))
    return (f"{ts},531 INFO pipeline.py:770 in record_current_batch_training_metrics -- "
            f"tflops=229.64161376788178 step={step} loss={2 + 1 / (step + 1):.6f} real_tgs=719.84 "
            f"tgs (tokens/gpu/second)=720.46 lr=9.808683347597691e-05 loss_scale=16384.0 "
            f"grad_norm={{'0_default': 2.156615516531637, '1_fp32': 0.0}} micro_num=16 "
            f"num_consumed_tokens={step * 1048576} inf_nan_skip_batches=0 num_samples_in_batch=102 "
            f"largest_length=7543 fwd_bwd_time=181.49 acc=0.5494 perplexity=9.0888 acc/zh=0.5494 "
            f"tokens/zh=1047661 loss/zh=2.207 acc/en=0.61 tokens/en=912000 loss/en=1.9\n")


def write_log(path: Path, make_line, n: int) -> int:
    with open(path, "w") as f:
        for start in range(1, n + 1, 10_000):
            f.write("".join(make_line(step) for step in range(start, min(n, start + 9_999) + 1)))
    return path.stat().st_size


def ingest_seconds(log: Path, db: Path, format: str) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, step rows stored) of `Intake.ingest` of this log."""
    engine = open_store(db)
    start, start_cpu = time.perf_counter(), time.process_time()
    Intake(engine, format=format).ingest(Targets([str(log)]))
    cpu, seconds = time.process_time() - start_cpu, time.perf_counter() - start
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM step_metrics").scalar()
    engine.dispose()
    return cpu, seconds, rows


def raw_seconds(log: Path, db: Path, format: str) -> tuple[float, float, float, int, float]:
    """The floor: the same rows, prepared untimed, inserted with sqlite3.executemany — its CPU
    and wall seconds; and, timed apart, the CPU seconds of the parser alone (with the cyclic
    collector paused, as in the intake) and of the intake's own insert of the same rows into
    another store (`insert_rows`: multi-row INSERTs through SQLAlchemy)."""
    open_store(db).dispose()  # the same schema and indexes
    ours = open_store(db.with_name(db.stem + "-ours.db"))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    step_cols = [c.name for c in StepMetric.__table__.columns if c.name != "id"]
    event_cols = [c.name for c in Event.__table__.columns if c.name != "id"]
    insert_step = f"INSERT INTO step_metrics ({', '.join(step_cols)}) VALUES ({', '.join('?' * len(step_cols))})"
    insert_event = f"INSERT INTO events ({', '.join(event_cols)}) VALUES ({', '.join('?' * len(event_cols))})"
    parser = by_name(format)(run="bench", attempt_prefix="bench.log:1", host="node1")

    def dump(row, columns):
        return tuple(orjson.dumps(row[c]).decode() if c in ("extra", "payload") and row[c] is not None else row[c]
                     for c in columns)

    cpu, timed, parsing, inserting, total, seq = 0.0, 0.0, 0.0, 0.0, 0, 0
    with open(log, encoding="utf-8") as f:
        while True:
            lines = f.readlines(1 << 20)  # the intake's batch: about 1 MiB of lines
            if not lines:
                break
            steps, events, our_steps, our_events = [], [], [], []
            gc.disable()  # as the intake parses a batch
            start = time.process_time()
            records = [record for line in lines for record in parser.feed(line.rstrip("\n"))]
            parsing += time.process_time() - start
            gc.enable()
            for record in records:
                if record.kind == "step":
                    row = step_row(record, 1, seq)
                    steps.append(dump(row, step_cols))
                    our_steps.append(dump(row, STEP_COLUMNS))
                else:
                    row = event_row(record, 1, seq)
                    events.append(dump(row, event_cols))
                    our_events.append(dump(row, EVENT_COLUMNS))
                seq += 1
            start, start_cpu = time.perf_counter(), time.process_time()
            conn.execute("BEGIN")
            conn.executemany(insert_step, steps)
            conn.executemany(insert_event, events)
            conn.execute("COMMIT")
            timed += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            total += len(steps)
            start = time.process_time()
            with ours.begin() as our_conn:
                for table, columns, rows in (("step_metrics", STEP_COLUMNS, our_steps),
                                             ("events", EVENT_COLUMNS, our_events)):
                    if rows:
                        insert_rows(our_conn, table, columns, rows)
            inserting += time.process_time() - start
    conn.close()
    ours.dispose()
    return cpu, timed, parsing, total, inserting


_REPORT_PEAK = """
import atexit, sys
def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write(f"peak_kb {peak}\\n")
atexit.register(report)
from trainledger.cli import main
sys.argv[0] = "trainledger"
main()
"""


def peak_rss_mb(log: Path, db: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `trainledger ingest` of this log, in a subprocess that
    reports its own high-water mark (VmHWM) as it exits. Not the child's `ru_maxrss`: that
    counts the parent's pages the child shared between fork and exec (541 MB once, after the
    parsers benchmark had grown this process)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _REPORT_PEAK, "ingest", str(log), "--db", str(db)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"trainledger ingest failed with status {proc.returncode}: {proc.stderr[-500:]}")
    peak_kb = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("peak_kb "))
    return time.perf_counter() - start, peak_kb / 1024


def live_latency(folder: Path, n: int, interval_s: float = 0.02) -> list[float]:
    """Seconds from each line's write to its step being queryable, through `trainledger watch`."""
    log, db = folder / "live.jsonl", folder / "live.db"
    open_store(db).dispose()
    log.write_text("")
    proc = subprocess.Popen([TRAINLEDGER, "watch", str(log), "--db", str(db)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    written: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        while not done.is_set():
            top = conn.execute("SELECT max(step) FROM step_metrics").fetchone()[0] or 0
            now = time.perf_counter()
            for step in range(len(seen) + 1, top + 1):
                seen[step] = now
            time.sleep(0.002)
        conn.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        with open(log, "w") as f:
            f.write(jsonl_line(0 + 1))  # warm-up: the watcher is up once this is stored
            f.flush()
            written[1] = time.perf_counter()
            deadline = time.monotonic() + 60
            while 1 not in seen and time.monotonic() < deadline:
                time.sleep(0.01)
            for step in range(2, n + 2):
                f.write(jsonl_line(step))
                f.flush()
                written[step] = time.perf_counter()
                time.sleep(interval_s)
        deadline = time.monotonic() + 30
        while len(seen) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        done.set()
        proc.terminate()
        proc.wait(timeout=30)
    return sorted(seen.get(step, float("inf")) - written[step] for step in range(2, n + 2))


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


@contextmanager
def _body_read_for_free() -> Iterator[None]:
    """InternLM's body reader (`body_values` + `step_fields`: text → the step's fields) replaced
    by a copy of one line's fields: the intake with a body reader that only builds its result
    (as any reader, compiled or not, must) — the bound on what a faster body reader could give."""
    line = internlm_line(1)
    fields = internlm.step_fields(internlm.body_values(
        line[line.index("tflops="):].rstrip().replace("tgs (tokens/gpu/second)=", "tgs=")))[1]
    steps = count(1)

    def copied(_values: Any) -> tuple[int, dict[str, Any]]:
        copy = dict(fields)
        copy["per_source"] = {source: dict(figures) for source, figures in fields["per_source"].items()}
        return next(steps), copy

    saved = internlm.body_values, internlm.step_fields
    internlm.body_values, internlm.step_fields = (lambda body: None), copied
    try:
        yield
    finally:
        internlm.body_values, internlm.step_fields = saved


def _spread(rounds: list[tuple[tuple[float, ...], tuple[float, ...]]]) -> str:
    """The range of the rounds' ratios (ours / floor, CPU seconds)."""
    ratios = sorted(ours[0] / floor[0] for ours, floor in rounds)
    return f" ({ratios[0]:.2f}–{ratios[-1]:.2f})" if len(ratios) > 1 else ""


def main(quick: bool) -> str:
    steps = 50_000 if quick else 1_000_000
    repeats = 1 if quick else 3
    memory_bytes = (64 << 20) if quick else (1 << 30)
    live_lines = 100 if quick else 300
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        folder = Path(tmp)
        for format, make_line in (("jsonl", jsonl_line), ("internlm", internlm_line)):
            log = folder / f"{format}.log"
            size = write_log(log, make_line, steps)
            rounds, bounds = [], []
            for round_ in range(repeats):  # ours and the floor alternate: both see the same machine
                rounds.append((ingest_seconds(log, folder / f"{format}-{round_}.db", format),
                               raw_seconds(log, folder / f"{format}-{round_}-raw.db", format)))
                if format == "internlm":
                    with _body_read_for_free():
                        bounds.append(ingest_seconds(log, folder / f"{format}-{round_}-bound.db", format))
                for db in folder.glob(f"{format}-{round_}*.db*"):
                    db.unlink()
            log.unlink()
            (ours, ours_wall, stored), (floor, floor_wall, parsing, floor_rows, inserting) = (
                tuple(map(median, zip(*column))) for column in zip(*rounds))
            label = f"{steps:,} lines, {size / 2**20:.0f} MiB"
            rows.append(f"| {format} | {label} | {stored:,.0f} | {ours:.1f} s ({stored / ours:,.0f} rows/s; wall "
                        f"{ours_wall:.1f} s) | {floor:.1f} s ({floor_rows / floor:,.0f} rows/s; wall "
                        f"{floor_wall:.1f} s) | **{ours / floor:.2f}×**{_spread(rounds)} | {parsing:.1f} s "
                        f"| {(ours - parsing) / floor:.2f}× | {inserting:.1f} s ({inserting / floor:.2f}×) |")
            if bounds:
                bound, bound_wall, _ = map(median, zip(*bounds))
                rows.append(f"| {format}, its metric body read for free (a bound) | {label} | {stored:,.0f} | "
                            f"{bound:.1f} s (wall {bound_wall:.1f} s) | {floor:.1f} s | **{bound / floor:.2f}×**"
                            f"{_spread(list(zip(bounds, (f for _, f in rounds))))} | | | |")
        big = folder / "big.jsonl"
        pad = 1000 - len(jsonl_line(1))
        write_log(big, lambda s: jsonl_line(s, pad=pad), memory_bytes // 1000)
        seconds, peak = peak_rss_mb(big, folder / "big.db")
        big_size = big.stat().st_size
        big.unlink()
        latencies = live_latency(folder, live_lines)
    p50, p99, worst = (percentile(latencies, q) for q in (0.5, 0.99, 1.0))
    return "\n".join([
        "## Intake: ingest rate, memory, live latency (bench/bench_ingest.py)",
        "",
        f"Command: `.venv/bin/python -m bench{' --quick' if quick else ''} ingest` — "
        "SQLite store (WAL, synchronous=NORMAL), logs generated in the run. Times are CPU seconds of "
        "the benchmark process (`time.process_time`), which the other jobs on a shared machine "
        "disturb far less than wall-clock time; wall-clock is given alongside. "
        f"Each figure is the median of {repeats} round{'s' if repeats > 1 else ''}, ours and the floor alternating; the ratio's "
        "range over the rounds in brackets.",
        "",
        "| log | size | step rows | `Intake.ingest` (read, parse, store) | raw `sqlite3.executemany` of the same rows "
        "| ratio of the medians (target ≤ 3×) | the parser alone | ratio without the parser's time "
        "| the intake's insert alone (multi-row INSERTs) of the same rows |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Peak memory of `trainledger ingest` on a {big_size / 2**20:,.0f} MiB JSONL log "
        f"({memory_bytes // 1000:,} lines of 1 kB): **{peak:.0f} MB** RSS (VmHWM; target ≤ 300 MB), "
        f"in {seconds:.0f} s.",
        f"- Live latency, line appended → queryable, through `trainledger watch` ({live_lines} lines, "
        f"one every 20 ms): p50 **{p50 * 1000:.0f} ms**, p99 **{p99 * 1000:.0f} ms**, max {worst * 1000:.0f} ms "
        "(target p99 ≤ 1 s).",
    ])


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
