"""Two watchers of one run, one per node, each classifying its own node's records live, on one
store: the run's live state is the freshest view. A node whose trainer died silently (its
watcher still running) must not turn back the `fault` a survivor's `node_lost` record set,
until the survivor's watcher has stopped keeping the row."""

from __future__ import annotations

from datetime import time

from monitor.accounting import Policy
from monitor.live import LiveRuns
from monitor.records import Record
from monitor.store import insert_records, list_live_states

T0 = 1_716_100_000.0
ALL_DAY = Policy(timezone="UTC", work_start=time(0), work_end=time(23, 59, 59))


def _node(node: int, steps: int) -> list[Record]:
    launch = Record("launch", "ling", "a1", T0 + node / 10, f"node{node}", node,
                    fields={"nodes": 2, "hosts": ["node0", "node1"], "world_size": 2})
    return [launch] + [Record("step", "ling", "a1", T0 + 5 + s + node / 10, f"node{node}", node, s, {"loss": 2.0})
                       for s in range(1, steps + 1)]


def _store(engine, records: list[Record]) -> None:
    with engine.begin() as conn:
        insert_records(conn, records)


def test_a_silent_node_s_watcher_does_not_turn_back_a_survivor_s_fault(store):
    clock = [T0 + 20.0]
    survivor, silent = (LiveRuns(store, ALL_DAY, clock=lambda: clock[0], peer_grace_s=30.0) for _ in range(2))
    node1 = _node(1, steps=8)  # node 1's trainer died after step 8: nothing more from it
    _store(store, node1)
    silent.committed(node1)
    node0 = _node(0, steps=8) + [Record("fault", "ling", "a1", T0 + 14.5, "node0", 0, 8, {
        "exc_type": "RuntimeError", "message": "Connection closed by peer", "cause": "node_lost",
        "lost_hosts": ["node1"]})]
    _store(store, node0)
    survivor.committed(node0)

    def row():
        (state,) = [s for s in list_live_states(store) if s.run == "ling"]
        return state

    assert (row().state, row().last_record_ts) == ("fault", T0 + 14.5)
    clock[0] += 10.0
    silent.tick()  # its own view: node 1 still within the stall threshold, "training"
    assert row().state == "fault"
    survivor.tick()
    clock[0] += 31.0  # the survivor's watcher is gone too: the row falls to the one still running
    silent.tick()
    assert (row().state, row().last_record_ts) == ("training", node1[-1].ts)
