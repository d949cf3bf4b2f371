"""Where and how computation runs: device, determinism, seeding, and which process logs and saves.

Device and precision choices live here only, so that the training engine and the entry points never branch
on them. Multi-GPU runs (torchrun) will initialise the process group here; every other module asks
``runtime.is_main`` before logging or writing files.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from utils.errors import ConfigError


@dataclass
class Runtime:
    """The execution context of a run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process logs, draws progress bars and writes checkpoints."""
        return self.rank == 0


def make_runtime(device: str = "auto", deterministic: bool = False) -> Runtime:
    """Pick the device ('auto' prefers CUDA and warns when falling back to the CPU) and the determinism mode."""
    if device == "auto":
        if torch.cuda.is_available():
            chosen = torch.device("cuda")
        else:
            print("warning: CUDA is not available: running on the CPU (much slower)", file=sys.stderr)
            chosen = torch.device("cpu")
    else:
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ConfigError(
                f"train.device: '{device}' is not a device; use auto, cpu, cuda or cuda:N"
            ) from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"train.device: '{device}' was requested but CUDA is not available; use auto or cpu"
            )
    set_deterministic(deterministic)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return Runtime(device=chosen, rank=rank, world_size=world)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels (bit-for-bit repeatable runs) or the fastest ones (cudnn benchmark)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global RNG state, in plain types that ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    version, seq, *rest = state["python"]
    random.setstate((version, tuple(seq), *rest))
    name, keys, *others = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *others))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
