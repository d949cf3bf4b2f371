"""The runtime seam: wrappers never reach a checkpoint, bf16 autocast trains on the CPU, precision choices."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from datasets.synthetic import make_synthetic_mpii
from engine.experiment.config import load_config
from engine.runtime.execution import make_runtime, unwrap
from engine.training.run import TrainingRun
from losses.okdhp import OKDHPLoss
from models.registry import build_model
from tests.test_training import write_config
from utils.checkpoint import load_checkpoint
from utils.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_mpii(
        tmp_path_factory.mktemp("runtime_mpii"), num_train=8, num_valid=4, image_size=64
    )


@pytest.fixture
def process_group(tmp_path: Path):
    """A one-process gloo group, as ``torchrun --nproc_per_node 1`` would make."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def saved_keys(folder: Path) -> dict[str, set[str]]:
    return {name: set(load_checkpoint(folder / name)["model"]) for name in ("last.pth", "best.pth")}


def test_ddp_wrapped_run_writes_bare_keys(tiny_root: Path, tmp_path: Path, process_group) -> None:
    config = load_config(write_config(tmp_path, tiny_root, epochs=1))
    run = TrainingRun(config, tmp_path / "ddp")
    assert isinstance(run.model, torch.nn.parallel.DistributedDataParallel)
    assert unwrap(run.model) is run.trainee
    run.fit(log=lambda _: None)
    bare = set(run.network.state_dict())
    assert all(keys == bare for keys in saved_keys(tmp_path / "ddp").values())
    deploy = load_checkpoint(tmp_path / "ddp" / "deploy.pth")
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in deploy["model"])


@pytest.mark.slow
def test_compiled_run_writes_bare_keys(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    # The eager backend gives the same OptimizedModule wrapper (``_orig_mod.`` keys) without a C++ build.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    config = load_config(write_config(tmp_path, tiny_root, epochs=1))
    config.runtime.compile = True
    run = TrainingRun(config, tmp_path / "compiled")
    assert any(k.startswith("_orig_mod.") for k in run.model.state_dict())
    assert unwrap(run.model) is run.trainee
    run.fit(log=lambda _: None)
    bare = set(run.network.state_dict())
    assert all(keys == bare for keys in saved_keys(tmp_path / "compiled").values())


def small_okdhp_step(runtime, steps: int) -> list[float]:
    """A few optimisation steps of a small OKDHP model on one fixed batch, through the runtime's seams."""
    torch.manual_seed(0)
    model = runtime.prepare(
        build_model(
            {
                "name": "okdhp_hourglass",
                "num_features": 16,
                "depth": 2,
                "shared_stacks": 1,
                "branch_stacks": [1, 1],
            }
        )
    )
    loss_fn = OKDHPLoss(rampup_epochs=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    images = torch.randn(2, 3, 64, 64)
    batch = {"target": torch.rand(2, 16, 16, 16) * 0.1, "target_weight": torch.ones(2, 16, 1)}
    losses = []
    for _ in range(steps):
        with runtime.autocast():
            output = model(runtime.images(images))
        terms = loss_fn(output.float(), batch, epoch=1)
        runtime.backward_step(terms["total"], optimizer)
        losses.append(terms["total"].item())
    return losses


def test_bf16_autocast_trains_on_the_cpu() -> None:
    runtime = make_runtime("cpu", precision="bf16", channels_last=True)
    with runtime.autocast():
        out = build_model({"name": "hourglass", "num_stacks": 1, "num_features": 16, "depth": 2})(
            torch.randn(1, 3, 64, 64)
        )
    assert out.final.dtype == torch.bfloat16 and out.float().final.dtype == torch.float32
    losses = small_okdhp_step(runtime, steps=6)
    assert losses[-1] < losses[0]


def test_fp16_needs_a_gpu_and_uses_a_grad_scaler() -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 autocast needs a GPU"):
            make_runtime("cpu", precision="fp16")
        pytest.skip("no CUDA device: the fp16 + GradScaler path runs only on a GPU")
    runtime = make_runtime("cuda", precision="fp16")
    assert runtime.scaler is not None
    losses = small_okdhp_step(runtime, steps=6)
    assert losses[-1] < losses[0]


def test_auto_precision_is_bf16_only_where_native(monkeypatch) -> None:
    import engine.runtime.execution as runtime_module

    monkeypatch.setattr(runtime_module, "native_bf16", lambda device: False)
    assert make_runtime("cpu", precision="auto").precision == "fp32"
    monkeypatch.setattr(runtime_module, "native_bf16", lambda device: True)
    assert make_runtime("cpu", precision="auto").precision == "bf16"
