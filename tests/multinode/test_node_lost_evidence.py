"""The evidence of a lost node, as the survivors see it: gloo's broken pair in the trainer
(named by the trainer itself) and in a foreign log (classified by the monitor), torchrun's lost
rendezvous store — and the ledger row that names the node."""

from datetime import time, timezone
from pathlib import Path

import pytest

from monitor.accounting import Policy, compute_ledger
from monitor.parsers import parse_lines, registry
from monitor.parsers.text import TextParser
from monitor.records import Record
from trainer.distributed import Node, lost_peer

LOGS = Path(__file__).parents[1] / "fixtures" / "logs" / "node_lost"
TEXT_PARSERS = [p for p in registry() if issubclass(p, TextParser)]
GLOO_PEER_CLOSED = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
                    "[10.0.0.12]:9141. This is typically caused by a remote worker crashing.")
ALL_DAY = Policy(timezone="UTC", work_start=time(0), work_end=time(23, 59, 59))
NCCL_REMOTE_ERROR = (  # as torch raises it (NVIDIA/nccl#934, #2076), the peer's address made ours
    "NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1347, remote process exited or there was "
    "a network error, NCCL version 2.18.5\nncclRemoteError: A call failed possibly due to a network error or a remote "
    "process exiting prematurely.\nLast error:\nsocketProgressOpt: Call to recv from 10.0.0.13<33759> failed : "
    "Connection reset by peer")
NODES = [Node(0, "node0", "10.0.0.11"), Node(1, "node1", "10.0.0.12"), Node(2, "node2", "10.0.0.13")]


def test_the_trainer_names_the_node_behind_the_address_gloo_reports():
    assert lost_peer(RuntimeError(GLOO_PEER_CLOSED), NODES, me=0) == {
        "cause": "node_lost", "lost_hosts": ["node1"], "lost_nodes": [1], "peer": "10.0.0.12"}
    on_one_machine = [Node(k, f"node{k}", "127.0.0.1") for k in range(3)]  # every address alike: any other node
    assert lost_peer(RuntimeError(GLOO_PEER_CLOSED.replace("10.0.0.12", "127.0.0.1")), on_one_machine, me=1)[
        "lost_hosts"] == ["node0", "node2"]
    timed_out = RuntimeError("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting "
                             "10000ms for recv operation to complete")
    assert lost_peer(timed_out, NODES, me=0) == {"cause": "collective_timeout"}
    assert lost_peer(RuntimeError(NCCL_REMOTE_ERROR), NODES, me=1) == {
        "cause": "node_lost", "lost_hosts": ["node2"], "lost_nodes": [2], "peer": "10.0.0.13"}
    assert lost_peer(RuntimeError("shape mismatch"), NODES, me=0) is None
    assert lost_peer(RuntimeError(GLOO_PEER_CLOSED), NODES[:1], me=0) is None  # alone: no peer to lose


@pytest.mark.parametrize("parser_class", TEXT_PARSERS, ids=lambda p: p.name)
@pytest.mark.parametrize("log", ["gloo_peer_closed_rank_prefixed.log", "torchrun_rendezvous_store_lost.log"])
def test_every_text_format_reads_a_lost_peer_as_node_lost(parser_class, log):
    """Real output of torch 2.13: a rank whose gloo peer was SIGKILLed, and the torchrun agent
    whose rendezvous host went with it."""
    parser = parser_class(run="run", attempt_prefix="log", clock=lambda: 1.7e9, tz=timezone.utc)
    records, bad = parse_lines(parser, (LOGS / log).read_text().splitlines())
    assert bad == []
    assert [(r.kind, r.fields["cause"]) for r in records] == [("fault", "node_lost")]


def test_nccl_s_remote_error_in_a_foreign_traceback_is_node_lost():
    lines = ["Traceback (most recent call last):", '  File "train.py", line 9, in <module>',
             "    loss.backward()", f"torch.distributed.DistBackendError: {NCCL_REMOTE_ERROR.splitlines()[0]}",
             *NCCL_REMOTE_ERROR.splitlines()[1:]]
    parser = TEXT_PARSERS[0](run="run", attempt_prefix="log", clock=lambda: 1.7e9, tz=timezone.utc)
    records, bad = parse_lines(parser, lines)
    assert [(r.kind, r.fields["cause"]) for r in records] == [("fault", "node_lost")]


def test_the_ledger_names_the_lost_node_and_the_node_that_saw_it():
    def record(kind, ts, host, rank, **fields):
        return Record(kind, "ling", "a1", ts, host, rank, fields.pop("step", None), fields)

    hosts = ["node0", "node1"]
    records = [record("launch", 0.0, "node0", 0, nodes=2, hosts=hosts, world_size=2),
               record("launch", 0.1, "node1", 1, nodes=2, hosts=hosts, world_size=2)]
    records += [record("step", 10.0 + s, host, rank, step=s) for s in range(1, 4) for host, rank in (("node0", 0),
                                                                                                   ("node1", 1))]
    records.append(record("fault", 14.0, "node0", 0, exc_type="RuntimeError", message=GLOO_PEER_CLOSED,
                          cause="node_lost", lost_hosts=["node1"], step=3))
    ledger = compute_ledger(records, ALL_DAY)
    (fault,) = [row for row in ledger.rows if row.state == "fault"]
    assert fault.cause.startswith("fault: node_lost: node1 (seen on node0) — RuntimeError: [/__w/")
    assert [row.nodes for row in ledger.rows if row.state == "training"] == [2]
    assert ledger.launches == 1 and ledger.faults == 1  # both nodes' records: one attempt
