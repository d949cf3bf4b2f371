"""Parameter and multiply-accumulate (MAC) counting, per module and per named part.

MACs count only Conv2d, ConvTranspose2d and Linear layers (kernel multiply-accumulates, biases excluded);
BatchNorm, ReLU, pooling, upsampling, additions and softmax are not counted. This is the usual "conv MACs"
convention of pose-estimation papers (1 MAC ~ 2 FLOPs). Counts are per input image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

COUNTED_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def _layer_macs(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> int:
    """MACs of one call of a counted layer, summed over the batch."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    kernel = math.prod(module.kernel_size)
    if isinstance(module, nn.ConvTranspose2d):
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


@torch.no_grad()
def layer_macs(model: nn.Module, images: Tensor) -> dict[str, int]:
    """Per-image MACs of every counted layer (by qualified module name) in one forward pass of ``images``.

    Works on the meta device (no memory, no arithmetic), which is how full-size networks are counted quickly.
    """
    macs: dict[str, int] = {}
    batch = images.shape[0]

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            macs[name] = macs.get(name, 0) + _layer_macs(module, inputs, output) // batch

        return hook

    handles = [
        module.register_forward_hook(hook_for(name))
        for name, module in model.named_modules()
        if isinstance(module, COUNTED_LAYERS)
    ]
    was_training = model.training
    try:
        model.eval()
        model(images)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return macs


def part_counts(
    model: nn.Module, parts: Mapping[str, nn.Module], images: Tensor, macs_of: nn.Module | None = None
) -> dict[str, dict[str, int]]:
    """``{part: {"params", "macs"}}`` for each named part, plus ``other`` when some layers belong to none.

    ``macs_of``: a copy of ``model`` with the same layer names to run instead (``without_batch_norm``'s)."""
    owner = {id(module): name for name, part in parts.items() for module in part.modules()}
    counts = {name: {"params": count_params(part), "macs": 0} for name, part in parts.items()}
    modules = dict(model.named_modules())
    for layer_name, macs in layer_macs(model if macs_of is None else macs_of, images).items():
        part = owner.get(id(modules[layer_name]), "other")
        counts.setdefault(part, {"params": 0, "macs": 0})["macs"] += macs
    covered = sum(c["params"] for c in counts.values())
    if covered != count_params(model):
        counts.setdefault("other", {"params": 0, "macs": 0})["params"] += count_params(model) - covered
    return counts


def without_batch_norm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``model`` by ``nn.Identity``, in place, and return it.

    For a throwaway network built on the meta device to read shapes or count MACs: a BatchNorm layer keeps its
    input's shape and is not counted, and on the meta device its Python decomposition is most of the time a
    forward pass takes. Never call it on a network that is trained or evaluated.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())
    return model
