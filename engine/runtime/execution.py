"""Where and how computation runs: device, precision, memory format, compilation, processes, seeding.

Everything the ``runtime:`` config section names is read here and only here, so that the engine and the entry
points never branch on it. The engine asks the runtime to ``prepare`` the model (device, channels_last,
compile, DistributedDataParallel), to run the forward under the chosen ``autocast``, to ``backward_step``
(a GradScaler for fp16) and to ``unwrap`` the model before saving, so that no wrapper prefix (``module.``,
``_orig_mod.``) ever reaches a checkpoint. Every other module asks ``runtime.is_main`` before logging or
writing files.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from engine.experiment.config import ConfigOrigin
from engine.runtime.distributed import convert_sync_batchnorm, init_from_env
from utils.errors import ConfigError


@dataclass
class Runtime:
    """The execution context of a run, built from the ``runtime:`` section by ``make_runtime``."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    precision: str = "fp32"  # resolved: fp32 | bf16 | fp16 | fp64 (a verification mode)
    channels_last: bool = False
    compile: bool = False
    sync_batchnorm: bool = False
    scaler: Any = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        """Only the main process logs, draws progress bars and writes checkpoints."""
        return self.rank == 0

    distributed: bool = False  # a process group is initialised (torchrun): DDP, sharded data, collectives

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype of weights and batches: float64 in the fp64 verification mode, else left as they are."""
        return torch.float64 if self.precision == "fp64" else None

    # ------------------------------------------------------------------ model
    def prepare(self, model: nn.Module) -> nn.Module:
        """Move the model to the device and wrap it as configured (SyncBatchNorm, channels_last, DDP, compile)."""
        if self.sync_batchnorm and self.distributed:
            model = convert_sync_batchnorm(model, self.device.type)
        model = model.to(self.device, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.compile:
            model = compile_or_eager(model)
        return model

    def inference_model(self, model: nn.Module) -> nn.Module:
        """The model for prediction: without the DDP wrapper (its forward may run collectives, and processes
        predict different numbers of batches), compiled if it was."""
        if isinstance(model, nn.parallel.DistributedDataParallel):
            return model.module
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.parallel.DistributedDataParallel):
            return compile_or_eager(inner.module)
        return model

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (the end of a torchrun process)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def images(self, images: Tensor) -> Tensor:
        """A batch of images on the device, in the configured memory format."""
        images = images.to(self.device, dtype=self.dtype, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Every tensor of a collated batch on the device (nested ``meta`` left on the host); in the fp64 mode
        every floating tensor in float64."""
        moved = {k: self.tensor(v) if isinstance(v, Tensor) else v for k, v in batch.items()}
        moved["image"] = self.images(batch["image"])
        return moved

    def tensor(self, value: Tensor) -> Tensor:
        """A tensor on the device (in float64 in the fp64 mode, when it is a floating one)."""
        dtype = self.dtype if value.is_floating_point() else None
        return value.to(self.device, dtype=dtype, non_blocking=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of the configured precision (a no-op for fp32)."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward_step(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Zero the gradients, back-propagate and step (through a GradScaler for fp16)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def all_ranks(self, flag: bool) -> bool:
        """True when ``flag`` is true on every process (a collective)."""
        return not self.any_rank(not flag)

    def any_rank(self, flag: bool) -> bool:
        """True when ``flag`` is true on any process (every rank must call it: it is a collective)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def sum_over_ranks(self, values: list[float]) -> list[float]:
        """Each value summed over the processes (every rank must call it: it is a collective)."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def process_share(self, size: int) -> float:
        """The weight of this process's loss (a mean over its ``size`` samples of the step) that makes DDP's
        gradient average the gradient of the global batch's mean: ``W * size / global size``, 1 when every
        process holds an equal share (a collective)."""
        if not self.distributed:
            return 1.0
        (total,) = self.sum_over_ranks([float(size)])
        return self.world_size * size / total

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs of the runtime (the fp16 loss scale)."""
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside torch.compile (``_orig_mod``) and DDP / DataParallel (``module``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


def compile_or_eager(model: nn.Module) -> nn.Module:
    """``torch.compile(model)``, or the model itself with a one-line warning where no compiler works."""
    try:
        return torch.compile(model)
    except Exception as error:  # compile raises many types on platforms without a toolchain
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(
            f"warning: runtime.compile: torch.compile is unavailable here ({first}); running eagerly",
            file=sys.stderr,
        )
        return model


def make_runtime(
    device: str = "auto",
    deterministic: bool = False,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    sync_batchnorm: bool = False,
    warn_cpu: bool = True,
) -> Runtime:
    """Pick the device ('auto' prefers CUDA; ``warn_cpu``: say so when it falls back to the CPU) and the modes."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    chosen = choose_device(device, local_rank, warn_cpu=warn_cpu)
    distributed = init_from_env(chosen.type)
    rank, world, _ = process_group_info()
    set_deterministic(deterministic)
    resolved = resolve_precision(precision, chosen)
    scaler = None
    if resolved == "fp16":
        scaler = torch.amp.GradScaler(chosen.type)
    return Runtime(
        device=chosen,
        rank=rank,
        world_size=world,
        distributed=distributed,
        precision=resolved,
        channels_last=channels_last,
        compile=compile,
        sync_batchnorm=sync_batchnorm,
        scaler=scaler,
    )


def runtime_from_config(section: Any, origin: ConfigOrigin | None = None) -> Runtime:
    """``make_runtime`` from a ``RuntimeConfig`` (the ``runtime:`` section of an experiment).

    An error about a value (e.g. ``runtime.device: cuda`` on a machine without one) names where the value came
    from: the ``--set`` override or the yaml file of ``origin`` (the config's).
    """
    try:
        return make_runtime(
            section.device,
            section.deterministic,
            precision=section.precision,
            channels_last=section.channels_last,
            compile=section.compile,
            sync_batchnorm=section.sync_batchnorm,
        )
    except ConfigError as error:
        raise (origin.blame(error) if origin is not None else error) from None


def process_group_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) of an initialised process group, else (0, 1, 0)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def choose_device(device: str, local_rank: int = 0, *, warn_cpu: bool = True) -> torch.device:
    """The torch device a ``runtime.device`` value names ('auto': CUDA where there is one, else the CPU, with a
    warning unless ``warn_cpu`` is off); a ConfigError for a device that does not exist here."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if warn_cpu and int(os.environ.get("RANK", 0)) == 0:
            print("warning: CUDA is not available: running on the CPU (much slower)", file=sys.stderr)
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"runtime.device: '{device}' is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"runtime.device: '{device}' was requested but CUDA is not available; use auto or cpu"
        )
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local_rank % torch.cuda.device_count())
    return chosen


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 / bf16 / fp16 as asked; ``auto`` picks bf16 where the device runs it natively, else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError(
            "runtime.precision: fp16 autocast needs a GPU; on the CPU use bf16 (or auto, which picks it only "
            "where the CPU has native bf16 instructions)"
        )
    return precision


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 arithmetic is native on the device (CUDA with bf16 support; a CPU with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


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
