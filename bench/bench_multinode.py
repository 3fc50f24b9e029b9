"""Many nodes' watchers into one PostgreSQL: sustained step records stored per second and the
live latency (a line appended to a node's log → its record queryable), on this machine.

Each of N simulated nodes has its own log folder, appended to by a writer thread at `rate`
steps per second per node (node k's line at k/N of each period, the records our trainer's
node leads write: bench/node_streams.py), and followed by its own `Intake` — the watcher's
engine, with its own connection pool, its live classification and its host name — in a
thread of this process. A line is queryable once its file's row in `source_files` counts it
(committed in the same transaction as its records). Rates are raised until the p99 passes
2 s or lines fall behind; the headroom is the highest rate that held, over 1 step/s.

PostgreSQL: $TRAINLEDGER_BENCH_PG_URL or $TRAINLEDGER_TEST_PG_URL (a server: a database of
its own is created and dropped). Neither set: the section says so and measures nothing.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.node_streams import launch, log_path, step
from monitor.accounting import Policy
from monitor.intake import Intake
from monitor.live import LiveRuns
from monitor.sources import Targets
from monitor.store import list_sources, open_store

TARGET_P99_S = 2.0


def _admin(url: str):
    import psycopg
    from sqlalchemy.engine import make_url

    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                           autocommit=True, connect_timeout=5)


class Database:
    """A database of its own on the server, dropped afterwards."""

    def __init__(self, server_url: str):
        from sqlalchemy.engine import make_url

        self.server_url, self.name = server_url, f"trainledger_bench_{uuid.uuid4().hex[:10]}"
        self.url = make_url(server_url).set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> str:
        with _admin(self.server_url) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        open_store(self.url).dispose()  # migrated once, not by 64 watchers at once
        return self.url

    def __exit__(self, *exc) -> None:
        with _admin(self.server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _watchers(url: str, root: Path, nodes: int, stop: threading.Event) -> list[threading.Thread]:
    """One Intake per node, as `trainledger watch node{k}/logs` runs it on node k."""
    threads = []
    for node in range(nodes):
        intake = Intake(open_store(url), host=f"node{node}", live_tick_s=5.0)
        intake.live = LiveRuns(intake.engine, Policy(timezone="UTC"))
        targets = Targets([str(log_path(root, node).parent)])
        thread = threading.Thread(target=intake.watch, args=(targets, stop), kwargs={"poll_s": 2.0}, daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def play(url: str, nodes: int, rate: float, seconds: float) -> dict:
    """Steps at `rate` per second per node for `seconds`; stored rate and latency percentiles."""
    run, stop = f"bench-{uuid.uuid4().hex[:8]}", threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = []
        for node in range(nodes):
            path = log_path(root, node)
            path.parent.mkdir(parents=True)
            files.append(open(path, "ab", buffering=0))
            files[-1].write(launch(run, "a1", time.time(), node, list(range(nodes))))
        path_of = {str(log_path(root, node)): node for node in range(nodes)}
        threads = _watchers(url, root, nodes, stop)
        written = [[0.0] for _ in range(nodes)]  # line i of node k written at written[k][i] (line 0: launch)
        seen: list[dict[int, float]] = [{} for _ in range(nodes)]
        engine = open_store(url)

        def catch_up() -> int:
            """Mark every line the store now counts; return how many step lines are still unseen."""
            now = time.perf_counter()
            for source in list_sources(engine):
                node = path_of.get(source.path)
                if node is not None:
                    for line in range(len(seen[node]), min(source.lines, len(written[node]))):
                        seen[node][line] = now
            return sum(len(written[k]) - len(seen[k]) for k in range(nodes))

        deadline = time.monotonic() + 60
        while catch_up() and time.monotonic() < deadline:  # every watcher up and past the launch
            time.sleep(0.1)
        period, start = 1.0 / rate, time.perf_counter()
        polled = start
        for n in range(1, int(seconds * rate) + 1):
            for node in range(nodes):
                due = start + (n - 1 + node / nodes) * period
                while (now := time.perf_counter()) < due:
                    if now - polled >= 0.1:
                        catch_up()
                        polled = time.perf_counter()
                    else:
                        time.sleep(min(due - now, 0.01))
                files[node].write(step(run, "a1", time.time(), node, n, nodes))
                written[node].append(time.perf_counter())
        write_end = time.perf_counter()
        deadline = time.monotonic() + 30
        while catch_up() and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for f in files:
            f.close()
        engine.dispose()
    latencies = sorted(seen[k].get(i, float("inf")) - written[k][i] for k in range(nodes)
                       for i in range(1, len(written[k])))
    stored = sum(1 for value in latencies if value != float("inf"))
    return {"nodes": nodes, "rate": rate, "lines": len(latencies), "stored": stored,
            "per_s": stored / (write_end - start), "p50": latencies[len(latencies) // 2],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def main(quick: bool) -> str:
    title = "## Many nodes' watchers into one PostgreSQL (bench/bench_multinode.py)"
    server = os.environ.get("TRAINLEDGER_BENCH_PG_URL") or os.environ.get("TRAINLEDGER_TEST_PG_URL")
    if not server:
        return f"{title}\n\nSkipped: set $TRAINLEDGER_BENCH_PG_URL (or $TRAINLEDGER_TEST_PG_URL) to a PostgreSQL server"
    nodes, seconds = (16, 10.0) if quick else (64, 30.0)
    rows, held = [], 0.0
    for rate in (1.0,) if quick else (1.0, 2.0, 4.0, 8.0, 16.0):
        with Database(server) as url:  # a fresh store each time: no earlier run's state to refold
            result = play(url, nodes, rate, seconds)
        rows.append(result)
        if result["stored"] < result["lines"] or result["p99"] > TARGET_P99_S:
            break
        held = rate
    lines = [title, "", f"`python -m bench multinode` — {nodes} simulated nodes, one Intake (watcher) each, in "
             f"threads of one process, one PostgreSQL 15 server, all on this machine ({os.cpu_count()} cores); "
             f"{seconds:.0f} s per rate.", "",
             "| steps/s per node | step records offered/s | stored/s | stored | latency p50 | latency p99 |",
             "| -- | -- | -- | -- | -- | -- |"]
    for r in rows:
        lines.append(f"| {r['rate']:g} | {r['nodes'] * r['rate']:.0f} | {r['per_s']:.0f} | {r['stored']}/{r['lines']} "
                     f"| {r['p50']:.2f} s | {r['p99']:.2f} s |")
    verdict = (f"held up to {held:g} step(s)/s per node, a headroom of {held:g}× over the target" if held
               else "not held")
    lines += ["", f"Target {nodes} nodes × 1 step/s with p99 ≤ {TARGET_P99_S:g} s: {verdict}"
              + (" (quick: 1 step/s only)." if quick else ".")]
    return "\n".join(lines)
