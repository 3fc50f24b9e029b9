"""Many files and many writers: `trainledger ingest` of thousands of small logs against the
raw-sqlite3 floor, and two writers on the same files against one alone.

- many files: `trainledger ingest` (the process, start-up included) of 5,000 JSONL logs of 50
  step lines each into a fresh SQLite store, side by side with the floor of the intake
  benchmark — the same rows, prepared untimed, inserted by `sqlite3.executemany` in one
  transaction — plus reading the 5,000 files;
- two writers: two `trainledger ingest` processes started at once on the same folder, against
  one alone, into SQLite and (with $TRAINLEDGER_TEST_PG_URL) into PostgreSQL: wall time.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median

import orjson

from bench.bench_ingest import TRAINLEDGER, jsonl_line
from monitor.models import StepMetric
from monitor.parsers import by_name
from monitor.store import count_records, open_store
from monitor.store.rows import step_row

LINES_PER_FILE = 50


def write_logs(folder: Path, files: int) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"rank{i:05d}.jsonl").write_text("".join(jsonl_line(step) for step in range(1, LINES_PER_FILE + 1))
                                                  .replace('"attempt":"a1"', f'"attempt":"a{i}"'))


def ingest_process(folder: Path, db: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `trainledger ingest FOLDER` as a process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([TRAINLEDGER, "ingest", str(folder), "--db", db], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def floor(folder: Path, db: Path) -> tuple[float, float, int]:
    """(wall, CPU seconds, rows) of reading every file, then inserting their rows, prepared
    untimed, with one `sqlite3.executemany` into the same schema."""
    open_store(db).dispose()
    columns = [c.name for c in StepMetric.__table__.columns if c.name != "id"]
    insert = f"INSERT INTO step_metrics ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    paths = sorted(folder.iterdir())
    start, start_cpu = time.perf_counter(), time.process_time()
    texts = [path.read_bytes() for path in paths]
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    rows = []
    for source_id, text in enumerate(texts, 1):
        parser = by_name("jsonl")(run="bench", attempt_prefix="", host="node1")
        for seq, line in enumerate(text.decode().splitlines()):
            for record in parser.feed(line):
                row = step_row(record, source_id, seq)
                rows.append(tuple(orjson.dumps(row[c]).decode() if c == "extra" and row[c] is not None else row[c]
                                  for c in columns))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    start, start_cpu = time.perf_counter(), time.process_time()
    conn.execute("BEGIN")
    conn.executemany(insert, rows)
    conn.execute("COMMIT")
    wall += time.perf_counter() - start
    cpu += time.process_time() - start_cpu
    conn.close()
    return wall, cpu, len(rows)


def writers_at_once(folder: Path, db: str, n: int) -> float:
    """Wall seconds until `n` `trainledger ingest` processes started at once on `folder` exit."""
    start = time.perf_counter()
    procs = [subprocess.Popen([TRAINLEDGER, "ingest", str(folder), "--db", db], stdout=subprocess.DEVNULL)
             for _ in range(n)]
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"trainledger ingest failed with status {proc.returncode}")
    return time.perf_counter() - start


class _PostgresDatabases:
    """Fresh PostgreSQL databases for one run of the benchmark (dropped after), or none."""

    def __init__(self) -> None:
        self.base = os.environ.get("TRAINLEDGER_TEST_PG_URL")
        self.made: list[str] = []

    def new(self) -> str | None:
        if not self.base:
            return None
        import psycopg
        from sqlalchemy.engine import make_url

        name = f"trainledger_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(make_url(self.base).set(drivername="postgresql").render_as_string(hide_password=False),
                             autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return make_url(self.base).set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if not self.made:
            return
        import psycopg
        from sqlalchemy.engine import make_url

        with psycopg.connect(make_url(self.base).set(drivername="postgresql").render_as_string(hide_password=False),
                             autocommit=True) as admin:
            for name in self.made:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stored(db: str) -> int:
    engine = open_store(db, read_only=True)
    total = sum(count_records(engine).values())
    engine.dispose()
    return total


def main(quick: bool) -> str:
    return measure(500, 500, 1, "python -m bench --quick writers") if quick else \
        measure(5000, 5000, 3, "python -m bench writers")


def measure(files: int, pair_files: int, rounds: int, command: str) -> str:
    """The section: `files` logs for the ingest against the floor, `pair_files` for the writers."""
    lines = []
    with tempfile.TemporaryDirectory(prefix="bench_writers_") as tmp:
        root = Path(tmp)
        folder = root / "logs"
        write_logs(folder, files)
        pair_folder = folder if pair_files == files else root / "pair-logs"
        if pair_folder != folder:
            write_logs(pair_folder, pair_files)
        ours, base = [], []
        for round_ in range(rounds):  # alternating, so both see the same machine
            ours.append(ingest_process(folder, str(root / f"ours-{round_}.db")))
            base.append(floor(folder, root / f"floor-{round_}.db"))
        rows = base[0][2]
        assert _stored(str(root / "ours-0.db")) == rows, "the ingest stored another number of rows"
        ours_wall, ours_cpu = (median(x) for x in zip(*ours))
        floor_wall, floor_cpu = (median(x[i] for x in base) for i in (0, 1))
        lines += [
            f"| `trainledger ingest` of {files:,} files × {LINES_PER_FILE} lines ({rows:,} step rows), the process "
            f"| {ours_wall:.1f} s wall, {ours_cpu:.1f} s CPU | {floor_wall:.2f} s wall, {floor_cpu:.2f} s CPU "
            f"| **{ours_wall / floor_wall:.1f}×** wall, **{ours_cpu / floor_cpu:.1f}×** CPU |"]
        pg = _PostgresDatabases()
        try:
            pair_rows = []
            for backend in ("sqlite", "postgresql"):
                alone, pair = [], []
                for round_ in range(rounds):
                    urls = [str(root / f"{backend}-{round_}-{n}.db") for n in (1, 2)] if backend == "sqlite" \
                        else [pg.new(), pg.new()]
                    if urls[0] is None:
                        break
                    alone.append(writers_at_once(pair_folder, urls[0], 1))
                    pair.append(writers_at_once(pair_folder, urls[1], 2))
                    assert _stored(urls[1]) == _stored(urls[0]) == pair_files * LINES_PER_FILE, \
                        "two writers stored another number of rows"
                if not alone:
                    pair_rows.append(f"| {backend} | (no $TRAINLEDGER_TEST_PG_URL: not measured) | | |")
                    continue
                pair_rows.append(f"| {backend} | {median(alone):.1f} s | {median(pair):.1f} s "
                                 f"| **{median(pair) / median(alone):.2f}×** |")
        finally:
            pg.drop()
    return "\n".join([
        "## Many files, many writers (bench/bench_writers.py)",
        "",
        f"Command: `.venv/bin/{command}` (with "
        "`TRAINLEDGER_TEST_PG_URL` set for the PostgreSQL row). Logs generated in the run; medians of "
        f"{rounds} round{'s' if rounds > 1 else ''}, ours and the floor alternating. CPU of the process from "
        "`getrusage(RUSAGE_CHILDREN)`; the floor's from `time.process_time`.",
        "",
        "| ingest | ours | the floor: reading the files + `sqlite3.executemany` of the same rows | ratio (target ≤ 3×) |",
        "|---|---|---|---|",
        *lines,
        "",
        f"Two `trainledger ingest` processes started at once on the same {pair_files:,} files, against one alone "
        "(wall time until all have exited; every row stored once):",
        "",
        "| store | one writer | two writers at once | ratio (target ≤ 1.2×) |",
        "|---|---|---|---|",
        *pair_rows,
    ])


if __name__ == "__main__":
    if "--quick" in sys.argv:
        print(main(quick=True))
    elif len(sys.argv) == 4:  # FILES PAIR_FILES ROUNDS: a smaller run on a busy machine
        print(measure(*map(int, sys.argv[1:]), f"python -m bench.bench_writers {' '.join(sys.argv[1:])}"))
    else:
        print(main(quick=False))
