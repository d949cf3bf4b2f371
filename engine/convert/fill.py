"""The one way a converter fills a model: every parameter and buffer exactly once, from the file's tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from utils.checkpoint import describe_mismatch
from utils.errors import CheckpointError

BATCH_COUNTER = "num_batches_tracked"  # BN counters, absent from files saved by PyTorch < 0.4.1


def fill_model(
    model: nn.Module,
    translated: Mapping[str, Tensor],
    *,
    problem: str,
    left_at_init: Sequence[str] = (),
    also_wrong: Sequence[str] = (),
) -> dict[str, Tensor]:
    """Fill ``model`` strictly from ``translated`` (model key -> the file's tensor); returns its state_dict.

    Keys in ``left_at_init`` keep the model's initial values; when the file has no BN counters at all they are
    set to 0 (they only matter for BN with momentum=None, which no model here uses). Any other missing key,
    a tensor the model does not have, a wrong shape, or a problem in ``also_wrong`` (found by the caller's
    mapping) is one CheckpointError: ``problem``, then how the two differ.
    """
    own = model.state_dict()
    counters_absent = not any(k.endswith(BATCH_COUNTER) for k in translated)
    allowed_missing = [k for k in own if k in left_at_init or (counters_absent and k.endswith(BATCH_COUNTER))]
    details = [d for d in (describe_mismatch(own, translated, ignore_missing=allowed_missing),) if d]
    details += list(also_wrong)
    if details:
        raise CheckpointError(f"{problem}: {'; '.join(details)}")
    converted: dict[str, Tensor] = {}
    for key, reference in own.items():
        if key in translated:
            tensor = translated[key].detach()
            converted[key] = tensor.to(reference.dtype) if tensor.is_floating_point() else tensor
        elif key in left_at_init:
            converted[key] = reference.detach().clone()
        else:  # a BN counter the old file never had
            converted[key] = torch.zeros_like(reference, device="cpu")
    model.load_state_dict(converted, strict=True)
    return converted
