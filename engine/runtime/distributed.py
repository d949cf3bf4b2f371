"""Several processes (torchrun): the process group, data sharding, gathering, and SyncBatchNorm on the CPU.

The rule that makes results independent of the number of processes: the data order and every sample's
augmentation depend only on (seed, epoch, sample index). ``train.batch_size`` is the GLOBAL batch: with W
processes each one takes its 1/W slice of every global batch of the one shuffled order, so with synchronised
batch statistics (SyncBatchNorm) a W-process run computes the gradient of the same global batch as a
1-process run. Validation gives every process a disjoint share of the persons and gathers the predictions,
so each person is scored exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Sampler

from utils.errors import ConfigError


def init_from_env(device_type: str) -> bool:
    """Initialise the default process group from torchrun's environment (NCCL on GPUs, gloo on CPUs).

    Returns whether a group is initialised. A single process without torchrun's variables stays alone.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return True


def per_process_batch(global_batch: int, world_size: int) -> int:
    """The batch of one process; ``train.batch_size`` (global) must divide evenly over the processes."""
    if global_batch % world_size:
        raise ConfigError(
            f"train.batch_size {global_batch} is the global batch and must divide evenly over the {world_size} "
            f"processes; use a multiple of {world_size}"
        )
    return global_batch // world_size


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """Shuffles with a generator seeded by (seed, epoch) and yields ``(index, epoch)`` keys for one process.

    The order of an epoch is the same after a resume and for any number of processes; the epoch travels with
    every index to the dataset (see ``TopDownDataset``), so that DataLoader workers, persistent ones included,
    draw this epoch's augmentation and not the one of the epoch they were started in. With ``world_size`` W
    the process of ``rank`` r yields the r-th slice of every global batch; a last global batch smaller than W
    samples is dropped (so that every process steps equally often), as is any incomplete one with
    ``drop_last``.
    """

    def __init__(
        self,
        length: int,
        seed: int,
        *,
        global_batch: int = 1,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.length = length
        self.seed = seed
        self.global_batch = global_batch
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        """The global order of this epoch: the same on every process."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.length, generator=generator).tolist()

    def own_indices(self) -> list[int]:
        order = self.order()
        if self.world_size == 1:
            return order
        mine = []
        for start in range(0, len(order), self.global_batch):
            batch = order[start : start + self.global_batch]
            if len(batch) < self.global_batch and (self.drop_last or len(batch) < self.world_size):
                break
            mine += np.array_split(np.asarray(batch), self.world_size)[self.rank].tolist()
        return mine

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(index, epoch) for index in self.own_indices()])

    def __len__(self) -> int:
        return len(self.own_indices())


class ShardSampler(Sampler[int]):
    """Validation share of one process: indices ``rank, rank + W, ...`` (disjoint, none repeated or padded)."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def gather_objects(value: Any) -> list[Any]:
    """Every process's ``value`` (a collective: all processes call it)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) with its gradient: every process's output depends on every process's input."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole global batch, on a gloo process group.

    PyTorch's SyncBatchNorm runs only on GPUs; this twin all-reduces the per-channel sums (differentiably)
    so that CPU multi-process runs, and their tests, compute exactly the statistics of one big batch. Its
    parameter and buffer names are BatchNorm2d's, so checkpoints do not change.
    """

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        channels = input.shape[1]
        shape = (1, channels, 1, 1)
        count = torch.tensor([input.numel() / channels], dtype=input.dtype, device=input.device)
        sums = _SumOverProcesses.apply(torch.cat([input.sum(dim=(0, 2, 3)), count]))
        total = sums[-1]
        mean = sums[:channels] / total
        # Two passes, as BatchNorm2d: the variance as the mean of squared deviations, not E[x^2] - mean^2,
        # whose cancellation loses most digits of fp32 when the mean is large against the spread.
        centered = input - mean.reshape(shape)
        var = _SumOverProcesses.apply(centered.square().sum(dim=(0, 2, 3))) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                )
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        output = centered * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            output = output * self.weight.reshape(shape) + self.bias.reshape(shape)
        return output


def convert_sync_batchnorm(model: nn.Module, device_type: str) -> nn.Module:
    """Every BatchNorm of the model synchronised over the processes: torch's SyncBatchNorm on GPUs, the CPU
    twin otherwise (weights and buffers kept)."""
    if device_type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = CpuSyncBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            synced.load_state_dict(child.state_dict())
            synced.train(child.training)
            setattr(model, name, synced)
        else:
            convert_sync_batchnorm(child, device_type)
    return model
