"""Losses against independent float64 loops over the SPEC B formulas, term names, gradients, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from losses.joints_mse import PoseMSELoss, joints_mse
from losses.okdhp import OKDHPLoss
from losses.pixel_kl import pixel_kl, rampup_weight
from losses.registry import build_loss
from models.output import PoseOutput
from models.registry import build_model
from utils.errors import ConfigError

B, J, H, W = 2, 3, 4, 5


def reference_mse(output: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """Per joint 0.5 * mean over batch and pixels of (o*w - G*w)^2, averaged over joints (loops)."""
    per_joint = []
    for j in range(J):
        total = 0.0
        for b in range(B):
            for y in range(H):
                for x in range(W):
                    total += (output[b, j, y, x] * weight[b, j] - target[b, j, y, x] * weight[b, j]) ** 2
        per_joint.append(0.5 * total / (B * H * W))
    return sum(per_joint) / J


def reference_kl(student: np.ndarray, ensemble: np.ndarray, weight: np.ndarray, temperature: float) -> float:
    """sum over b, j, pixels of q * (log q - log p) / (B*H*W), softmax over each joint's pixels (loops)."""
    total = 0.0
    for b in range(B):
        for j in range(J):
            s = [student[b, j, y, x] * weight[b, j] / temperature for y in range(H) for x in range(W)]
            e = [ensemble[b, j, y, x] * weight[b, j] / temperature for y in range(H) for x in range(W)]
            s_norm = math.log(sum(math.exp(v) for v in s))
            e_norm = math.log(sum(math.exp(v) for v in e))
            for sv, ev in zip(s, e):
                log_p, log_q = sv - s_norm, ev - e_norm
                total += math.exp(log_q) * (log_q - log_p)
    return total * temperature**2 / (B * H * W)


@pytest.fixture
def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student, ensemble, target heatmaps and target weights with one zero-weight joint."""
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(B, J, H, W, generator=generator, dtype=torch.float64)
    ensemble = torch.randn(B, J, H, W, generator=generator, dtype=torch.float64)
    target = torch.rand(B, J, H, W, generator=generator, dtype=torch.float64)
    weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.5]], dtype=torch.float64)
    return student, ensemble, target, weight


def test_joints_mse_matches_reference(tensors) -> None:
    student, _, target, weight = tensors
    expected = reference_mse(student.numpy(), target.numpy(), weight.numpy())
    assert joints_mse(student, target, weight[..., None]).item() == pytest.approx(expected, rel=1e-12)
    assert joints_mse(student, target, weight).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_pixel_kl_matches_reference(tensors, temperature: float) -> None:
    student, ensemble, _, weight = tensors
    expected = reference_kl(student.numpy(), ensemble.numpy(), weight.numpy(), temperature)
    got = pixel_kl(student, ensemble, weight[..., None], temperature=temperature)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_pixel_kl_of_zero_weight_joints_is_zero(tensors) -> None:
    student, ensemble, _, _ = tensors
    assert pixel_kl(student, ensemble, torch.zeros(B, J, 1, dtype=torch.float64)).item() == 0.0
    assert pixel_kl(student, student, torch.ones(B, J, 1, dtype=torch.float64)).item() == pytest.approx(0.0)


def test_rampup_weight() -> None:
    assert rampup_weight(0, 90) == pytest.approx(math.exp(-5))
    assert rampup_weight(45, 90) == pytest.approx(math.exp(-1.25))
    assert rampup_weight(90, 90) == 1.0 and rampup_weight(140, 90) == 1.0
    assert rampup_weight(3, 0) == 1.0


def test_okdhp_loss_terms_and_total(tensors) -> None:
    student, ensemble, target, weight = tensors
    stacks = [student, student * 0.5, ensemble.flip(-1)]
    output = PoseOutput(stacks=stacks, branches=[stacks[-1]], ensemble=ensemble)
    terms = OKDHPLoss(alpha=1.5, beta=2.0, rampup_epochs=90)(
        output, {"target": target, "target_weight": weight[..., None]}, epoch=30
    )
    args = (target.numpy(), weight.numpy())
    mses = [reference_mse(s.numpy(), *args) for s in stacks]
    kls = [reference_kl(s.numpy(), ensemble.numpy(), weight.numpy(), 1.0) for s in stacks]
    ensemble_mse = reference_mse(ensemble.numpy(), *args)
    kl_weight = 2.0 * math.exp(-5 * (1 - 30 / 90) ** 2)
    assert [terms[f"mse/stack{k}"].item() for k in range(3)] == pytest.approx(mses, rel=1e-12)
    assert [terms[f"kl/stack{k}"].item() for k in range(3)] == pytest.approx(kls, rel=1e-12)
    assert terms["mse"].item() == pytest.approx(sum(mses), rel=1e-12)
    assert terms["ensemble_mse"].item() == pytest.approx(ensemble_mse, rel=1e-12)
    assert terms["kl"].item() == pytest.approx(sum(kls), rel=1e-12)
    assert terms["kl_weight"].item() == pytest.approx(kl_weight, rel=1e-6)
    expected_total = sum(mses) + 1.5 * ensemble_mse + kl_weight * sum(kls)
    assert terms["total"].item() == pytest.approx(expected_total, rel=1e-12)


def test_single_network_losses(tensors) -> None:
    student, _, target, weight = tensors
    output = PoseOutput(stacks=[student, student * 2], branches=[student * 2])
    for loss in (PoseMSELoss(), OKDHPLoss()):
        terms = loss(output, {"target": target, "target_weight": weight}, epoch=5)
        assert set(terms) == {"mse/stack0", "mse/stack1", "mse", "total"}
        expected = reference_mse(student.numpy(), target.numpy(), weight.numpy()) + reference_mse(
            2 * student.numpy(), target.numpy(), weight.numpy()
        )
        assert terms["total"].item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("detach_ensemble", [False, True])
def test_fau_gradients_with_and_without_detached_ensemble(detach_ensemble: bool) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a tiny network: extra threads only add overhead (conftest resets this)
    section = {"name": "okdhp_hourglass", "num_features": 16, "depth": 2, "shared_stacks": 1}
    model = build_model({**section, "branch_stacks": [1, 1, 1]})
    images, target, weight = torch.randn(2, 3, 32, 32), torch.rand(2, 16, 8, 8), torch.ones(2, 16, 1)
    loss_fn = OKDHPLoss(detach_ensemble=detach_ensemble)
    fau_params = list(model.fau.parameters())

    kl_grads = torch.autograd.grad(
        loss_fn(model(images), {"target": target, "target_weight": weight}, epoch=90)["kl"],
        fau_params,
        allow_unused=True,
    )
    kl_reaches_fau = any(g is not None and g.abs().sum() > 0 for g in kl_grads)
    assert kl_reaches_fau is not detach_ensemble

    loss_fn(model(images), {"target": target, "target_weight": weight}, epoch=90)["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fau.heads.parameters())
    assert all(p.grad is not None for p in fau_params)


def test_build_loss_from_config() -> None:
    loss = build_loss({"name": "okdhp", "beta": 1, "rampup_epochs": 10, "detach_ensemble": True})
    assert isinstance(loss, OKDHPLoss) and loss.beta == 1 and loss.detach_ensemble
    assert isinstance(build_loss({"name": "mse"}), PoseMSELoss)
    with pytest.raises(ConfigError, match="did you mean 'beta'"):
        build_loss({"name": "okdhp", "betta": 2})
    with pytest.raises(ConfigError):
        build_loss({"name": "mse", "alpha": 1})
