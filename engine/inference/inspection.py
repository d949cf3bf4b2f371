"""Pictures of what the online distillation does, from a multi-branch checkpoint on a few validation persons.

- ``fau_weights.png`` / ``.json``: the FAU's weight of every branch for every joint (softmax over branches, so
  each joint's row sums to 1), averaged over the persons: which branch the ensemble trusts for which joint.
- ``heatmaps_<k>.png``: for person k, the ground-truth heatmaps, the ensemble's and each branch's, one column
  per joint, with the crop and the joints decoded from each row drawn first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np
import torch
from torch import Tensor, nn

from datasets.registry import DATASETS, build_codec, build_dataset, skeleton_of
from datasets.transforms import COLOR_NORMALIZATION
from engine.experiment.config import load_config
from engine.inference.networks import load_network
from utils.errors import ConfigError, UserError
from utils.output_paths import prepare_outputs
from utils.run_folder import note_follow_up

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fau_weights(model: nn.Module, images: Tensor) -> Tensor:
    """The FAU's branch weights (N, T, J) of a multi-branch model for a batch of normalised crops."""
    weights = model.ensemble_weights(images)
    if weights is None:
        raise UserError(
            f"model '{model.config_section()['name']}' has no FAU: inspection needs a multi-branch checkpoint "
            "(okdhp_hourglass or okdhp_mobile; a best.pth or last.pth, not a deploy.pth)"
        )
    return weights


def denormalize(image: Tensor, color: str) -> np.ndarray:
    """A normalised crop (3, H, W) back to a BGR uint8 image (undoing ``normalize_image``)."""
    mode = COLOR_NORMALIZATION[color]
    array = image.permute(1, 2, 0).cpu().numpy() * mode.std + mode.mean
    array = np.clip(array * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[:, :, ::-1] if mode.channel_order == "RGB" else array)


@torch.no_grad()
def inspect_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    num_images: int = 4,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Draw the FAU weights and the per-branch heatmaps of the first ``num_images`` validation persons.

    The pictures of an earlier inspection in ``out_dir`` are replaced only with ``overwrite``.
    """
    if num_images < 1:
        raise UserError(f"--images {num_images}: needs at least one person")
    checkpoint = Path(checkpoint)
    given = None if config_path is None else load_config(Path(config_path), overrides)
    loaded = load_network(checkpoint, config=given, overrides=overrides)
    config = loaded.config
    if config is None:
        raise ConfigError(f"{checkpoint} carries no config: pass --config")
    skeleton = skeleton_of(config.data)
    model = loaded.model
    codec = build_codec(config.data)
    color = DATASETS.resolved(config.data)["color"]
    dataset = build_dataset(config.data, split="valid", train=False, seed=config.seed, codec=codec)
    samples = [dataset[i] for i in range(min(num_images, len(dataset)))]
    out_dir = Path(out_dir)
    names = ["fau_weights.json", "fau_weights.png", *(f"heatmaps_{k}.png" for k in range(len(samples)))]
    prepare_outputs([out_dir / name for name in names], "--out", inputs=[checkpoint], overwrite=overwrite)
    images = torch.stack([s["image"] for s in samples])

    weights = fau_weights(model, images)  # (N, T, J)
    heads = model(images).heads()
    branch_names = [name for name in heads if name != "ensemble"]
    note_follow_up(out_dir)
    mean = weights.mean(dim=0).T.numpy()  # (J, T)
    summary = {
        "checkpoint": str(checkpoint),
        "persons": len(samples),
        "joint_names": list(skeleton.joint_names),
        "branches": branch_names,
        "mean_weights": mean.tolist(),
        "weights": weights.permute(0, 2, 1).tolist(),  # (N, J, T)
    }
    (out_dir / "fau_weights.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot_fau_weights(mean, skeleton.joint_names, branch_names, len(samples), out_dir / "fau_weights.png")
    written = [out_dir / "fau_weights.png"]
    for index, sample in enumerate(samples):
        rows = {
            "ground truth": sample["target"],
            **{name: heads[name][index] for name in ["ensemble", *branch_names] if name in heads},
        }
        path = out_dir / f"heatmaps_{index}.png"
        plot_heatmaps(denormalize(sample["image"], color), rows, skeleton, codec.stride, path)
        written.append(path)
    log(f"FAU weights of {len(samples)} person(s) and their heatmaps -> {out_dir}")
    summary["files"] = [str(p) for p in written]
    return summary


def plot_fau_weights(
    mean: np.ndarray, joint_names: Sequence[str], branches: Sequence[str], persons: int, path: Path
) -> None:
    """A joints x branches image of the mean FAU weights, each cell labelled with its value."""
    joints, count = mean.shape
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * count, 1.2 + 0.32 * joints))
    shown = ax.imshow(mean, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for j in range(joints):
        for t in range(count):
            ax.text(t, j, f"{mean[j, t]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if mean[j, t] > 0.6 else "white")  # fmt: skip
    ax.set_xticks(range(count), branches, fontsize=8)
    ax.set_yticks(range(joints), joint_names, fontsize=7)
    ax.set_title(f"FAU weight per joint and branch\n(mean of {persons} persons; rows sum to 1)", fontsize=9)
    fig.colorbar(shown, ax=ax, fraction=0.08)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


CELL = 72  # pixels per heatmap in the mosaic
LABEL_WIDTH = 96


def plot_heatmaps(
    crop: np.ndarray, rows: dict[str, Tensor], skeleton: Any, stride: np.ndarray, path: Path
) -> None:
    """A mosaic, one row per source (ground truth, ensemble, branches): the crop with the joints decoded from
    that row, then each joint's heatmap (colour scale 0..1, its maximum written below)."""
    from datasets.codec import HeatmapCodec
    from engine.inference.vis import draw_pose

    joints = skeleton.num_joints
    limbs = skeleton.limbs
    header, footer = 30, 14
    row_height = CELL + footer
    width = LABEL_WIDTH + CELL * (joints + 1)
    canvas = np.full((header + row_height * len(rows), width, 3), 255, np.uint8)
    _text(canvas, "heatmaps per joint (colour scale 0..1; the maximum below each)", (4, 12), 0.4)
    for j, name in enumerate(skeleton.joint_names):
        _text(canvas, name[:11], (LABEL_WIDTH + CELL * (j + 1) + 2, header - 4), 0.32)
    zoom = CELL / crop.shape[1]
    crop_cell = cv2.resize(crop, (CELL, round(crop.shape[0] * zoom)), interpolation=cv2.INTER_LINEAR)[:CELL]
    for r, (name, heatmaps) in enumerate(rows.items()):
        top = header + r * row_height
        heatmaps = heatmaps.float().cpu()
        coords, peaks = HeatmapCodec.decode(heatmaps[None])
        points = (coords[0].numpy() * stride + 0.5) * zoom - 0.5
        scores = peaks[0, :, 0].numpy()[None]
        pose = draw_pose(
            crop_cell, points[None], scores, skeleton.joint_names, limbs, show_scores=False, legend=False
        )
        canvas[top : top + pose.shape[0], LABEL_WIDTH : LABEL_WIDTH + CELL] = pose
        _text(canvas, name, (4, top + CELL // 2), 0.4)
        for j in range(joints):
            heat = np.clip(heatmaps[j].numpy(), 0.0, 1.0)
            cell = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
            left = LABEL_WIDTH + CELL * (j + 1)
            canvas[top : top + CELL, left : left + CELL] = cv2.resize(
                cell, (CELL, CELL), interpolation=cv2.INTER_NEAREST
            )
            _text(
                canvas, f"{float(heatmaps[j].max()):.2f}", (left + CELL // 3, top + CELL + footer - 3), 0.32
            )
    cv2.imwrite(str(path), canvas)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
