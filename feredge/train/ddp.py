"""torchrun/DDP: this process's rank from the environment torchrun sets, and a barrier."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Only the main process writes the run folder."""
        return self.rank == 0


def init_dist(device: str) -> Dist:
    """One process (no WORLD_SIZE), or join torchrun's process group (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    rank = dist.get_rank()
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Dist(rank, world)


def barrier(d: Dist) -> None:
    """Wait for every process (a no-op in one process)."""
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
