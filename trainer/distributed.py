"""The process group under torchrun (gloo on CPU, nccl on GPU) — or none for a plain process."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainer.hardware import select_device


@dataclass
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    distributed: bool

    @property
    def is_lead(self) -> bool:
        return self.rank == 0

    @property
    def nodes(self) -> int:
        return max(1, self.world_size // self.local_world_size)


def init(device_choice: str) -> DistEnv:
    """Join the process group torchrun describes in the environment, if any."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistEnv(0, 1, 0, 1, select_device(device_choice, 0), False)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = select_device(device_choice, local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank,
                   int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())), device, True)


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


def all_hosts(env: DistEnv) -> list[str]:
    return sorted(set(all_gather(env, socket.gethostname())))


def all_reduce_sum(env: DistEnv, tensor: torch.Tensor) -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(tensor)
    return tensor
