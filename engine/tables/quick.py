"""``--quick``: a whole paper table on a CPU in minutes, on synthetic data, to show what the command does.

Every row is trained by its own experiment yaml with ``--set`` overrides: the project's synthetic data sets
(``datasets/synthetic.py`` for MPII, ``datasets/synthetic_coco.py`` for COCO and OCHuman), 64x64 inputs with
16x16 heatmaps, two epochs of a few iterations, and narrower networks where a row's network is large (hourglass
features, HRNet width and modules, decoder widths). The stacks, branches, losses, teachers and schedules stay
the row's own, so a quick table walks exactly the code a full one does: teachers first, training, resume,
extraction, evaluation, the table. The numbers mean nothing about pose estimation, and the table says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from datasets.synthetic import make_synthetic_mpii
from datasets.synthetic_coco import make_synthetic_coco

INPUT_SIZE, HEATMAP_SIZE, SIGMA = 64, 16, 1.0
EPOCHS, ITERATIONS, BATCH = 2, 4, 8
MPII_IMAGES = (48, 32)  # train, valid
COCO_IMAGES = (24, 10)  # train, valid (one or two persons each)
OCHUMAN_IMAGES = 10  # val = test
FEATURES = 32  # hourglass num_features at most
HRNET_DIVISOR = 4  # HRNet width / 4 (16 -> 4, 32 -> 8, 48 -> 12), one module per stage, 2 blocks
DECODER_CHANNELS = 64  # MobilePose / SimpleBaseline deconvolution widths, the mobile OKDHP's FAU paths

DESCRIPTION = (
    f"QUICK MODE (--quick): synthetic stick figures (datasets/synthetic.py, datasets/synthetic_coco.py), "
    f"{INPUT_SIZE}x{INPUT_SIZE} inputs with {HEATMAP_SIZE}x{HEATMAP_SIZE} heatmaps, {EPOCHS} epochs of "
    f"{ITERATIONS} iterations of {BATCH} images per row, ground-truth boxes everywhere (the synthetic sets have "
    f"no detections), OCHuman val and test both the same synthetic images; narrower networks: hourglass at most "
    f"{FEATURES} features, HRNet width / {HRNET_DIVISOR} with one module per stage, deconvolution heads and "
    f"mobile FAU paths {DECODER_CHANNELS} wide (stacks, branches, losses, teachers and schedules are the rows' "
    "own). A check that the table machinery works, not a result: the paper column is not comparable."
)


def model_overrides(model: dict[str, Any]) -> list[str]:
    """``--set`` items that narrow a row's network for the quick mode (only keys its builder takes)."""
    name = model.get("name")
    if name in ("hourglass", "okdhp_hourglass"):
        return [f"model.num_features={min(int(model.get('num_features', 256)), FEATURES)}"]
    if name == "hrnet":
        width = max(2, int(model.get("width", 32)) // HRNET_DIVISOR)
        return [f"model.width={width}", "model.stage_modules=[1,1,1]", "model.stage_blocks=2"]
    if name == "mobile":
        return [f"model.deconv_channels={DECODER_CHANNELS}"]
    if name == "okdhp_mobile":
        return [f"model.deconv_channels={DECODER_CHANNELS}", f"model.fau_channels={DECODER_CHANNELS}"]
    return []


def data_overrides(dataset: str, roots: dict[str, Path]) -> list[str]:
    """The synthetic data root of a dataset and the quick input pipeline."""
    items = [
        f"data.root={roots[dataset]}",
        f"data.input_size=[{INPUT_SIZE},{INPUT_SIZE}]",
        f"data.heatmap_size=[{HEATMAP_SIZE},{HEATMAP_SIZE}]",
        f"data.sigma={SIGMA}",
    ]
    if dataset == "coco":
        items.append("data.use_gt_boxes=true")
    return items


def training_overrides() -> list[str]:
    """Two short epochs at a constant rate, one validation, data loaded in the main process."""
    return [
        f"train.epochs={EPOCHS}",
        "train.lr_steps=[]",  # the recipe's steps lie past two epochs: a constant rate
        f"train.iters_per_epoch={ITERATIONS}",
        f"train.batch_size={BATCH}",
        f"train.val_every={EPOCHS}",
        "test.batch_size=32",
        "runtime.workers=0",
    ]


def data_folders(root: Path) -> dict[str, Path]:
    """Where the quick mode's synthetic sets live: ``{dataset: root/dataset}`` (written by ``prepare_data``)."""
    return {name: root / name for name in ("mpii", "coco", "ochuman")}


def prepare_data(roots: dict[str, Path], log=print) -> None:
    """Write the synthetic MPII, COCO and OCHuman folders of ``data_folders`` once.

    OCHuman's folder has OCHuman's own layout (``annotations/ochuman_coco_format_{val,test}_range_0.00_1.00.json``
    and a flat ``images/``), made from a synthetic COCO validation split; its val and test files are the same.
    A folder is complete once its ``.complete`` marker exists, so an interrupted preparation starts over.
    """
    makers = {
        "mpii": lambda path: make_synthetic_mpii(path, *MPII_IMAGES, seed=0),
        "coco": lambda path: make_synthetic_coco(path, *COCO_IMAGES, seed=0),
        "ochuman": _make_ochuman,
    }
    for name, path in roots.items():
        if (path / ".complete").is_file():
            continue
        if path.exists():
            shutil.rmtree(path)
        makers[name](path)
        (path / ".complete").write_text("")
        log(f"wrote the synthetic {name} set {path}")


def _make_ochuman(path: Path) -> None:
    """A synthetic COCO validation split laid out as OCHuman (annotation files per split, flat images/)."""
    source = make_synthetic_coco(path / "_coco", 0, OCHUMAN_IMAGES, seed=1)
    (path / "annotations").mkdir(parents=True)
    document = json.loads((source / "annotations" / "person_keypoints_val2017.json").read_text())
    document["info"] = {"description": "synthetic OCHuman-layout set for --quick (val = test)"}
    for split in ("val", "test"):
        target = path / "annotations" / f"ochuman_coco_format_{split}_range_0.00_1.00.json"
        target.write_text(json.dumps(document))
    shutil.move(str(source / "images" / "val2017"), str(path / "images"))
    shutil.rmtree(source)
