"""Projections benchmark: `trainledger report`, `eta` and `whatif` on a 1M-step run, each timed as
the process a user runs (start-up and store read included), with the in-process parts beside."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import orjson

RUN = "bench-1m"
T0 = 1_716_083_700.0
ATTEMPTS = 5
EVAL_EVERY = 1000
CHECKPOINT_EVERY = 5000


def write_log(path: Path, n_steps: int) -> None:
    """A run of our schema: ATTEMPTS launches with faults between them, evals, checkpoints, and
    throughput falling by a third at 60 % of the steps."""
    common = {"v": 1, "run": RUN, "host": "node-00", "rank": 0}
    launch = {"world_size": 16, "nodes": 2, "hosts": ["node-00", "node-01"], "device": "NVIDIA H100 80GB HBM3",
              "peak_flops": 989e12, "flops_per_token": 6 * 1.1e9 + 12 * 24 * 2048 * 2048, "n_params": 1_100_000_000,
              "config_digest": "0123456789abcdef", "data_batch": "0", "data_slice": None, "total_steps": n_steps * 6 // 5,
              "seq_len": 2048, "global_batch_tokens": 2048 * 4 * 16}
    per = n_steps // ATTEMPTS
    ts, step = T0, 0
    with path.open("wb") as out:
        def put(kind: str, attempt: str, **fields) -> None:
            out.write(orjson.dumps({**common, "kind": kind, "attempt": attempt, "ts": ts, **fields}) + b"\n")

        for a in range(ATTEMPTS):
            attempt = f"a{a}"
            put("launch", attempt, resume_from=f"ckpt-{step}" if a else None, **{k: v for k, v in launch.items()
                                                                                 if k != "resume_from"})
            ts += 300
            if a:
                put("resume", attempt, step=step, source=f"ckpt-{step}", restored={"optimizer": True})
            for _ in range(per):
                step += 1
                step_time = 1.0 if step < n_steps * 3 // 5 else 1.5
                ts += step_time
                put("step", attempt, step=step, loss=2.0 + 1000 / (step + 100), step_time=step_time,
                    tokens_per_s=131072 / step_time, tgs=8192 / step_time, mfu=0.4 / step_time,
                    peak_mem_bytes=60 << 30)
                if step % EVAL_EVERY == 0:
                    ts += 20
                    put("eval", attempt, step=step, val_loss=2.1 + 1000 / (step + 100), val_bpb=1.0)
                if step % CHECKPOINT_EVERY == 0:
                    ts += 10
                    put("checkpoint", attempt, step=step, path=f"ckpt-{step}", bytes=13 << 30, blocked_s=10.0,
                        write_s=60.0)
            if a < ATTEMPTS - 1:
                ts += 1
                put("fault", attempt, step=step, exc_type="RuntimeError", message="NCCL timeout", cause="nccl_timeout",
                    traceback="")
                step -= step % CHECKPOINT_EVERY
                ts += 3 * 3600


def ingest(log: Path, db: str) -> None:
    from monitor.intake import Intake
    from monitor.sources import Targets
    from monitor.store import open_store

    Intake(open_store(db)).ingest(Targets([str(log)]))


BASELINE = "BENCH_PROJECTIONS_BASELINE"
"""a source tree (e.g. `git archive` of an older commit) to time side by side with this one"""


def command_seconds(*args: str, tree: str | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of the command as a process (of the code in `tree`
    when given): on a shared machine the CPU time is the steadier of the two."""
    env = dict(os.environ, COLUMNS="200", **({"PYTHONPATH": tree} if tree else {}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from trainledger.cli import main; main()", *args], check=True,
                   capture_output=True, env=env, cwd=tree)  # `-c` puts the working folder first on the path
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def parts(db: str, out: Path) -> dict[str, float]:
    """The report's work in one process, part by part, as `trainledger report` does it."""
    from eventschema import KINDS
    from monitor.accounting import compute_ledger_from_columns
    from monitor.projections.eta import estimate_eta
    from monitor.projections.series import series_from_columns
    from monitor.projections.summary import summarize
    from monitor.report.content import report_blocks
    from monitor.report.render import to_html, to_markdown
    from monitor.store import load_records, open_store
    from monitor.store.columns import load_step_columns

    clock: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        clock[name] = now - t
        t = now

    engine = open_store(db, read_only=True)
    events = load_records(engine, RUN, kinds=[kind for kind in KINDS if kind != "step"])
    columns = load_step_columns(engine, RUN)
    lap("read the store (events, step columns)")
    ledger = compute_ledger_from_columns(RUN, columns, events)
    lap("ledger (folded from the step columns)")
    series = series_from_columns(columns, events)
    summary = summarize(series, ledger)
    eta = estimate_eta(series, ledger)
    lap("series, figures, regressions, eta")
    blocks = report_blocks(summary, eta=eta)
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks, RUN))
    lap("blocks, Markdown, HTML")
    return clock


def main(quick: bool = False) -> str:
    n = 100_000 if quick else 1_000_000
    repeat = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench_projections_") as tmp:
        folder = Path(tmp)
        log, db = folder / "events.jsonl", str(folder / "bench.db")
        write_log(log, n)
        ingest(log, db)
        commands = {"report": ("report", RUN, "--db", db, "--out", str(folder / "out")),
                    "eta": ("eta", RUN, "--db", db),
                    "whatif": ("whatif", RUN, "--db", db, "--epochs", "2", "--seq-len", "1024", "--nodes", "4")}
        baseline = os.environ.get(BASELINE)
        trees = {"": None, **({" (baseline)": baseline} if baseline else {})}
        timings: dict[str, list] = {name + label: [] for name in commands for label in trees}
        for _ in range(repeat):  # all alternate: each sees the same machine
            for name, args in commands.items():
                for label, tree in trees.items():
                    timings[name + label].append(command_seconds(*args, tree=tree))
        startup = [command_seconds("--help") for _ in range(repeat)]
        breakdown = parts(db, folder)
        size = (folder / "out" / "report.html").stat().st_size
    targets = {"report": "≤ 5 s", "eta": "≤ 1 s", "whatif": "≤ 1 s"}
    lines = [
        "## Projections (report, eta, whatif)",
        "",
        f"`.venv/bin/python -m bench projections` (add `--quick` for 100k steps). A synthetic run of our schema: "
        f"{n:,} step records over {ATTEMPTS} launches with faults between them, an eval every {EVAL_EVERY:,} and a "
        f"checkpoint every {CHECKPOINT_EVERY:,} steps, throughput falling by a third at 60 %, ingested into a SQLite "
        f"store; each command timed as the process a user runs (median of {repeat}, alternating)"
        + (f", beside the same command from the baseline tree `{BASELINE}` names." if baseline else "."),
        "",
        "| command | wall time | CPU time | target |",
        "| -- | -- | -- | -- |",
    ]
    timings["--help"] = startup
    targets["--help"] = "— (start-up alone)"
    lines += [f"| `trainledger {name}` | {median(w for w, _ in values):.2f} s | {median(c for _, c in values):.2f} s "
              f"| {targets.get(name, '')} |" for name, values in timings.items()]
    lines += ["",
              f"The report's parts in one process (HTML page {size / 2**20:.1f} MiB, plotly.js inlined):", "",
              "| part | seconds |", "| -- | -- |"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in breakdown.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
