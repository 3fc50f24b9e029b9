"""The ling-1b scenario on one machine: two nodes train, each reading only the slice on its own
disk and followed by its own watcher into one PostgreSQL; one node is lost (SIGKILL: its
torchrun, its worker, its watcher; no record written); the survivor does not hang, names the
lost node, and the live state turns to fault within the fault threshold; the job is relaunched
on the remaining node with `--resume auto` and the lost node's slice copied over, and every
sample is trained exactly once."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from cluster import Cluster, prepare

from monitor.accounting import Policy, compute_ledger
from monitor.store import list_live_states, load_records, open_store
from polling import wait_for
from processes import kill_tree
from trainer.config import DataConfig
from trainer.data import GlobalSampler, load

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SEED = 1234  # the tiny preset's train.seed
SHARE = 4 * 2  # samples per step and node: micro_bsz × micro_num × one rank per node
FAULT_AFTER = 20.0  # the watchers' fault threshold (seconds of silence), short for the test
COMMON = ("data.total_steps=8", "checkpoint.checkpoint_every=2", "data.valid_every=0", "train.print_every=0",
          "debug.record_sample_ids=true", "train.collective_timeout_s=60")


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, prepare(tmp_path / "prepared", "--slices", "2"))
    yield c
    c.close()


def test_a_node_lost_then_a_relaunch_on_fewer_nodes(cluster, pg_url):
    engine = open_store(pg_url)
    watch = ("--stall-after", "10", "--fault-after", str(FAULT_AFTER), "--work-hours", "00:00-23:59:59")
    watchers = {k: cluster.watch(k, pg_url, *watch) for k in (0, 1)}
    cluster.copy_slices(0, 0)
    cluster.copy_slices(1, 1)

    # attempt 1: two nodes; node 1 freezes before step 5, after the checkpoint of step 4
    nodes = cluster.launch({0: ("data.slice=0",), 1: ("data.slice=1", "debug.hang_at_step=5")}, *COMMON,
                           attempt="a1")
    wait_for(lambda: (cluster.shared / "checkpoints" / "step_00000004" / "meta.json").exists(), timeout=90)
    run = cluster.run_id()

    def stored(host: str, kind: str) -> int:
        return sum(r.host == host and r.kind == kind for r in load_records(engine, run))

    wait_for(lambda: stored("node1", "step") == 4, timeout=30)  # its watcher kept up before the node went
    for proc in (nodes[1], watchers[1]):
        kill_tree(proc.pid)
    lost_at = time.monotonic()

    assert nodes[0].wait(timeout=90) != 0, cluster.output(0, "a1")  # the survivor fails, it does not hang
    state = wait_for(lambda: next((s for s in list_live_states(engine) if s.run == run and s.state == "fault"), None),
                     timeout=FAULT_AFTER)
    assert time.monotonic() - lost_at < FAULT_AFTER

    # attempt 2: the remaining node, with the lost node's slice copied to its disk, read first
    cluster.copy_slices(0, 1)
    (relaunch,) = cluster.launch({0: ("data.slice=1,0",)}, *COMMON, "--resume", "auto", attempt="a2").values()
    assert relaunch.wait(timeout=120) == 0, cluster.output(0, "a2")
    wait_for(lambda: stored("node0", "finish") == 1, timeout=30)
    watchers[0].terminate()
    assert watchers[0].wait(timeout=30) == 0

    records = load_records(engine, run)
    attempts = list(dict.fromkeys(r.attempt for r in records))
    assert len(attempts) == 2 and state.attempt == attempts[0]
    counts = Counter((attempts.index(r.attempt), r.host, r.kind) for r in records if r.kind != "checkpoint")
    assert counts == {(0, "node0", "launch"): 1, (0, "node0", "step"): 4, (0, "node0", "fault"): 1,
                      (0, "node1", "launch"): 1, (0, "node1", "step"): 4,
                      (1, "node0", "launch"): 1, (1, "node0", "resume"): 1, (1, "node0", "step"): 4,
                      (1, "node0", "finish"): 1}
    launches = [r.fields for r in records if r.kind == "launch"]
    assert [(f["nodes"], f["hosts"], f["data_slice"]) for f in launches] == [
        (2, ["node0", "node1"], "0; 1")] * 2 + [(1, ["node0"], "1,0")]
    fault = next(r for r in records if r.kind == "fault")
    assert (fault.fields["cause"], fault.fields["lost_hosts"], fault.step) == ("node_lost", ["node1"], 4)
    resume = next(r for r in records if r.kind == "resume")
    assert resume.step == 4 and resume.fields["restored"]["data_position"]
    assert "data_skipped" not in resume.fields  # no slice was left behind

    ledger = compute_ledger(records, Policy(timezone="UTC"))
    assert ledger.launches == 2 and ledger.faults == 1
    assert [(row.state, row.nodes) for row in ledger.rows if row.state == "training"] == [("training", 2),
                                                                                          ("training", 1)]
    (fault_row,) = [row for row in ledger.rows if row.state == "fault"]
    assert fault_row.cause.startswith("fault: node_lost: node1 (seen on node0) — RuntimeError: ")

    # every sample of both slices trained once: attempt 1's four steps, then the relaunch's four
    trained = {"0": [], "1": []}
    for line in cluster.sample_ids():
        if line["attempt"] == attempts[1] or line["step"] <= 4:  # attempt 1's step 5 never completed
            for label, index in zip(line["slice"], line["ids"]):
                trained[label].append(index)
    samples = {str(k): load(DataConfig(path=str(cluster.prepared), slice=str(k), seq_len=64)).train.num_samples
               for k in (0, 1)}
    order = {label: GlobalSampler(n, SEED).order.tolist() for label, n in samples.items()}
    assert sorted(trained["0"]) == sorted(order["0"][:4 * SHARE])
    assert sorted(trained["1"]) == sorted(order["1"][:8 * SHARE])  # slice 1 continued on node 0
    engine.dispose()
