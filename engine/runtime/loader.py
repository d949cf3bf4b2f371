"""The DataLoader of a run: its worker count, pinned memory on CUDA, the sampler it is given."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from engine.runtime.execution import Runtime


def make_loader(
    dataset: Any,
    batch_size: int,
    workers: int,
    runtime: Runtime,
    sampler: Any = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with the run's worker count (persistent workers); pinned memory on CUDA."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )
