"""Two watchers, one per node, each on its own node's log folder, into one PostgreSQL store: the
run they build is the very run one watcher reading both folders builds — the same records, one
set of attempts, the same ledger — also when the nodes' lines arrive while they watch."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench.node_streams import launch, log_path, record, step
from monitor.accounting import Policy, compute_ledger
from monitor.store import count_records, load_records, open_store
from polling import wait_for
from cluster import REPO, node_env

pytestmark = pytest.mark.postgres

TRAINLEDGER = str(Path(sys.executable).with_name("trainledger"))
T0 = 1_716_083_700.0  # 2024-05-19 01:55 UTC
UTC = Policy(timezone="UTC")


def _before_and_after(root: Path, run: str) -> tuple[dict, dict]:
    """Two nodes' logs of the ling run: ten steps on two nodes, node 1 lost, a relaunch on node 0
    alone; split into what is on disk before the watchers start and what comes while they watch."""
    before = {0: [launch(run, "a1", T0, 0, [0, 1])], 1: [launch(run, "a1", T0 + 0.2, 1, [0, 1])]}
    after = {0: [], 1: []}
    for n in range(1, 11):
        for node in (0, 1):
            (before if n <= 5 else after)[node].append(step(run, "a1", T0 + 30 + n + node / 10, node, n, 2))
    after[0].append(record("fault", run, "a1", T0 + 45, 0, exc_type="RuntimeError", cause="node_lost",
                           message="Connection closed by peer [10.0.0.12]:9141", lost_hosts=["node1"], step=10))
    after[0].append(launch(run, "a2", T0 + 900, 0, [0], resume_from="ckpt/step_10", start_step=10))
    after[0] += [step(run, "a2", T0 + 960 + n, 0, n, 1) for n in range(11, 16)]
    after[0].append(record("finish", run, "a2", T0 + 980, 0, step=15, reason="total_steps"))
    for node in (0, 1):
        log_path(root, node).parent.mkdir(parents=True)
    return before, after


def _append(root: Path, lines: dict[int, list[bytes]]) -> None:
    for node, node_lines in lines.items():
        with open(log_path(root, node), "ab") as f:
            f.write(b"".join(node_lines))


def _watch(db: str, node: int, *folders: Path) -> subprocess.Popen:
    return subprocess.Popen([TRAINLEDGER, "watch", *map(str, folders), "--db", db, "--poll", "0.5"],
                            env=node_env(node), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _follow(db: str, run: str, watchers: list[tuple[int, list[Path]]], root: Path, before, after) -> list:
    procs = [_watch(db, node, *folders) for node, folders in watchers]
    try:
        engine = open_store(db)
        total = sum(len(lines) for part in (before, after) for lines in part.values())
        wait_for(lambda: sum(count_records(engine, run).values()) == len(before[0]) + len(before[1]), timeout=30)
        _append(root, after)
        wait_for(lambda: sum(count_records(engine, run).values()) == total, timeout=30)
        records = load_records(engine, run)
        engine.dispose()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=30) == 0, proc.stderr.read()[-2000:]
    return records


def test_two_node_watchers_build_the_run_one_watcher_of_both_folders_builds(tmp_path, pg_url):
    """The two watchers share the session's PostgreSQL (a run of a name of its own); the single
    watcher writes a SQLite file."""
    run = f"ling-{uuid.uuid4().hex[:8]}"
    root, single_db = tmp_path / "nodes", str(tmp_path / "single.db")
    before, after = _before_and_after(root, run)
    _append(root, before)
    folders = [log_path(root, node).parent for node in (0, 1)]
    merged = _follow(pg_url, run, [(0, [folders[0]]), (1, [folders[1]])], root, before, after)

    replay = tmp_path / "replay"
    _before_and_after(replay, run)
    _append(replay, before)
    single = _follow(single_db, run, [(0, [log_path(replay, 0).parent, log_path(replay, 1).parent])], replay,
                     before, after)

    def key(r):
        return r.ts, r.host, r.kind

    assert sorted(merged, key=key) == sorted(single, key=key)
    assert len({r.attempt for r in merged}) == 2 and {r.host for r in merged} == {"node0", "node1"}
    ledger = compute_ledger(merged, UTC)
    assert ledger.to_dict() == compute_ledger(single, UTC).to_dict()
    assert ledger.launches == 2 and ledger.faults == 1
    assert [row.nodes for row in ledger.rows if row.state == "training"] == [2, 1]
