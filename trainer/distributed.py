"""The process group under torchrun (gloo on CPU, nccl on GPU) — or none for a plain process."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from trainer.events import host_name
from trainer.hardware import select_device


@dataclass
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    distributed: bool
    node_rank: int = 0

    @property
    def is_lead(self) -> bool:
        return self.rank == 0

    @property
    def is_node_lead(self) -> bool:
        """Rank 0 of its node: the process that writes its node's records."""
        return self.local_rank == 0


def init(device_choice: str, timeout_s: float = 0.0) -> DistEnv:
    """Join the process group torchrun describes in the environment, if any. `timeout_s` > 0
    bounds how long a collective waits for a peer (torch's default is 30 min on gloo)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistEnv(0, 1, 0, 1, select_device(device_choice, 0), False)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = select_device(device_choice, local_rank)
    timeout = {"timeout": timedelta(seconds=timeout_s)} if timeout_s > 0 else {}
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **timeout)
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    node_rank = int(os.environ.get("GROUP_RANK", dist.get_rank() // local_world_size))
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, local_world_size, device, True, node_rank)


def close(env: DistEnv, clean: bool) -> None:
    """Leave the process group. After a clean end every rank first waits at a barrier: a rank
    that tears gloo down while its peer still talks to it aborts the peer."""
    if env.distributed and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_from_lead(env: DistEnv, value):
    """Rank 0's value on every rank (any picklable object)."""
    if not env.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(env: DistEnv, value) -> list:
    """Every rank's value (any picklable object), in rank order."""
    if not env.distributed:
        return [value]
    values = [None] * env.world_size
    dist.all_gather_object(values, value)
    return values


@dataclass(frozen=True)
class Node:
    """One node of the job as its peers know it: for the launch record and to name a lost peer."""

    node_rank: int
    host: str
    address: str


def all_nodes(env: DistEnv) -> list[Node]:
    """Every node of the job, once each, by node rank (gathered from every rank)."""
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        address = ""
    mine = Node(env.node_rank, host_name(), address)
    return sorted(set(all_gather(env, mine)), key=lambda node: node.node_rank)


_PEER_GONE_RE = re.compile(r"Connection (?:closed|reset) by (?:remote )?peer|Broken pipe|remote process exited")
"""gloo's pair to a dead peer; NCCL's ncclRemoteError."""
_PEER_ADDRESS_RE = re.compile(r"by peer \[([^\]]+)\]:\d+|(?:from|peer) ([\w.:-]+)<\d+>")
"""The peer's address: gloo's `[10.0.0.12]:9141`, NCCL's `10.0.0.12<33759>`."""
_TIMED_OUT_RE = re.compile(r"Timed out waiting|timed out|Timeout", re.IGNORECASE)


def lost_peer(exc: BaseException, nodes: list[Node], me: int) -> dict | None:
    """The fault fields of a collective that failed because a peer went away — cause `node_lost`
    naming the nodes that peer can be (those at the address gloo reports, never this one), or
    `collective_timeout` when a peer stopped answering (which one, a timeout does not say) — or
    None for any other exception."""
    if not isinstance(exc, (RuntimeError, dist.DistError)) or len(nodes) < 2:
        return None
    message = str(exc)
    others = [node for node in nodes if node.node_rank != me]
    if _PEER_GONE_RE.search(message):
        where = _PEER_ADDRESS_RE.search(message)
        address = (where.group(1) or where.group(2)) if where else None
        at_address = [node for node in others if address and node.address == address]
        lost = at_address or others
        return {"cause": "node_lost", "lost_hosts": sorted({node.host for node in lost}),
                "lost_nodes": [node.node_rank for node in lost], "peer": address}
    if _TIMED_OUT_RE.search(message):
        return {"cause": "collective_timeout"}
    return None


def all_reduce_sum(env: DistEnv, tensor: torch.Tensor) -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(tensor)
    return tensor
