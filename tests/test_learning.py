"""Short real runs learn: far above what a constant prediction scores, with the schedule the config asks for.

One run per data set (tests/short_runs.py; the MPII run is the session's ``short_mpii_run``, also used by
tests/test_export.py): the paper's baseline experiment (its recipe and
pipeline: augmentation, optimizer, scheduler, flip test, evaluation) with a small single hourglass on the
synthetic MPII and COCO sets, a 64-pixel input, batch 4 and a higher learning rate with early steps. The floor each
run must beat by far is computed here: the best constant prediction, i.e. every person gets the mean pose of
the validation persons in crop coordinates (the same heatmaps for every crop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from datasets.registry import build_codec, build_dataset
from datasets.synthetic_coco import make_synthetic_coco
from datasets.transforms import affine_points, get_affine_transform
from engine.experiment.config import ExperimentConfig
from engine.inference.loops import validate
from engine.training.log import read_log
from tests.short_runs import LR, short_run, train_short_mpii


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """A small network: one thread is about as fast as two, and does not stall when the cores are busy."""
    torch.set_num_threads(1)  # conftest sets its own count again for the next test


@pytest.fixture(scope="module")
def mpii_run(short_mpii_run: dict[str, Any]) -> dict[str, Any]:
    """The session's short MPII run (tests/short_runs.py), shared with tests/test_export.py's int8 check."""
    return short_mpii_run


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("coco_learning")
    root = make_synthetic_coco(folder / "coco", num_train=96, num_valid=16, image_size=(128, 96))
    data = {"root": str(root), "input_size": [48, 64], "heatmap_size": [12, 16], "sigma": 1.0}
    return short_run(folder, "coco/hg2_baseline", data, {"epochs": 12, "lr_steps": [10], "val_every": 12})


def constant_prediction_score(config: ExperimentConfig) -> float:
    """The validation metric of the best constant heatmaps: each joint at its mean (or median) crop position."""
    codec = build_codec(config.data)
    dataset = build_dataset(config.data, split="valid", train=False, codec=codec)
    to_crop = [get_affine_transform(r.center, r.scale, 0.0, codec.input_size) for r in dataset.records]
    crops = np.stack([affine_points(r.joints, m) for r, m in zip(dataset.records, to_crop)])
    labelled = np.stack([r.joints_vis for r in dataset.records]) > 0
    best = -np.inf
    for statistic in (np.mean, np.median):
        pose = np.stack([statistic(crops[labelled[:, j], j], axis=0) for j in range(crops.shape[1])])
        preds = np.stack(
            [
                affine_points(
                    pose, get_affine_transform(r.center, r.scale, 0.0, codec.input_size, inverse=True)
                )
                for r in dataset.records
            ]
        )
        best = max(best, dataset.evaluate(preds, np.ones((*preds.shape[:2], 1))).metric)
    return float(best)


# ------------------------------------------------------------------------------------------------- MPII
@pytest.mark.slow
def test_learning_rate_of_each_epoch_follows_the_steps(mpii_run: dict[str, Any]) -> None:
    """The lr each epoch really used (log.jsonl): x0.1 after each step, from the paper's factor."""
    log = read_log(mpii_run["folder"] / "log.jsonl")
    expected = [LR] * 6 + [LR * 0.1] + [LR * 0.01]
    assert [record["lr"] for record in log] == pytest.approx(expected, rel=1e-9)
    group = mpii_run["run"].optimizer.param_groups[0]
    assert type(mpii_run["run"].optimizer) is torch.optim.Adam
    assert group["betas"] == (0.9, 0.999) and group["weight_decay"] == 0.0


@pytest.mark.slow
def test_short_mpii_run_is_far_above_a_constant_prediction(mpii_run: dict[str, Any]) -> None:
    floor = constant_prediction_score(mpii_run["config"])
    assert 20.0 < floor < 60.0  # the synthetic figures fill their boxes alike: a constant pose gets some
    final = read_log(mpii_run["folder"] / "log.jsonl")[-1]
    pckh = final["metric"]["branch0"]
    assert pckh >= floor + 25.0, (pckh, floor)
    assert final["val"]["branch0"]["Mean@0.1"] > 0.0


@pytest.mark.slow
def test_flip_test_is_at_least_as_good_as_no_flip(mpii_run: dict[str, Any]) -> None:
    """The trained network (best.pth, loaded by the run at its end): flip test (swap, shift, average) >= none."""
    run = mpii_run["run"]
    tables = {}
    with_flip = run.predictor.pipeline
    for flip in (True, False):
        run.predictor.pipeline = with_flip.with_flip(flip)
        tables[flip] = validate(run.predictor, run.val_loader)["branch0"].table
    run.predictor.pipeline = with_flip
    assert tables[True]["Mean"] >= tables[False]["Mean"], tables
    assert tables[True]["Mean"] == pytest.approx(run.best_metric, abs=1e-9)  # validation used the flip test


BF16_TOLERANCE = 5.0  # PCKh points: bf16 autocast rounds every activation to 8 bits of mantissa


@pytest.mark.slow
def test_bf16_trains_like_fp32(mpii_run: dict[str, Any], tmp_path: Path) -> None:
    """The same short run under bf16 autocast ends within BF16_TOLERANCE of fp32's PCKh, far above the floor."""
    bf16 = train_short_mpii(tmp_path, precision="bf16")  # the same synthetic set (a fixed seed)
    assert bf16["run"].runtime.precision == "bf16"
    fp32_pckh = read_log(mpii_run["folder"] / "log.jsonl")[-1]["metric"]["branch0"]
    bf16_pckh = read_log(bf16["folder"] / "log.jsonl")[-1]["metric"]["branch0"]
    assert abs(bf16_pckh - fp32_pckh) <= BF16_TOLERANCE, (fp32_pckh, bf16_pckh)
    assert bf16_pckh >= constant_prediction_score(bf16["config"]) + 25.0  # as the fp32 run's test asks


# ------------------------------------------------------------------------------------------------- COCO
@pytest.mark.slow
def test_short_coco_run_is_far_above_a_constant_prediction(coco_run: dict[str, Any]) -> None:
    floor = constant_prediction_score(coco_run["config"])
    assert 0.0 <= floor < 0.05  # OKS is strict: a constant pose hardly ever matches
    log = read_log(coco_run["folder"] / "log.jsonl")
    assert [record["lr"] for record in log] == pytest.approx([LR] * 10 + [LR * 0.1] * 2, rel=1e-9)
    ap = log[-1]["metric"]["branch0"]
    assert ap >= max(5.0 * floor, floor + 0.1), (ap, floor)
