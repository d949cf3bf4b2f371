"""Every paper value of every experiment row, written here from SPEC (never read back from the yamls).

Each row of ``ROWS`` is what one ``experiments/**.yaml`` must resolve to: its ``base:`` files merged and the
registered builders' defaults filled in, i.e. what a run of it actually uses. The values are SPEC's (section B
for MPII and COCO, A for the networks, C and docs/odkd.md for ODKD), typed here by hand: a wrong constant in a
yaml, in a ``_defaults.yaml`` or in a builder default that a yaml leaves alone fails the row that uses it.
Keys that are not paper values (paths, batch size of evaluation, worker counts, ...) are listed in
``NOT_PAPER_VALUES``; a new key must be put in one place or the other. Beside the rows: the code's own
defaults (a yaml that omits a key gets them) and each row's loss computed from SPEC's formula.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from datasets.base import TopDownDataset
from datasets.coco import BOX_PADDING, HALF_BODY_MIN_JOINTS, HALF_BODY_PADDING, CocoDataset
from datasets.coco_eval import evaluate_results_file, nms_results, oks_nms, rescore, rescore_and_nms
from datasets.codec import HeatmapCodec
from datasets.keypoints import COCO, COCO_UPPER_BODY, MPII
from datasets.pckh import HEAD_SIZE_FACTOR, compute_pckh, evaluate_prediction_file, pckh_table
from datasets.registry import DATASETS
from engine.experiment import (
    config as experiment_config,  # its TestConfig by module: pytest collects Test* names
)
from engine.experiment.catalogue import experiment_name, experiment_paths
from engine.experiment.config import ExperimentConfig, RuntimeConfig, TrainConfig, load_config
from losses.fpd import FPDLoss
from losses.odkd import ODKDLoss
from losses.okdhp import OKDHPLoss
from losses.pixel_kl import rampup_weight
from losses.registry import LOSSES, build_loss
from models.output import PoseOutput
from models.registry import MODELS

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
DEMOS = {"mpii/demo", "odkd/demo_pt", "odkd/demo_st", "odkd/demo_student_baseline", "odkd/demo_student_odkd"}

# ------------------------------------------------------------------------------------------ SPEC B: MPII
MPII_DATA = {
    "name": "mpii",
    "input_size": [256, 256],  # width, height
    "heatmap_size": [64, 64],
    "sigma": 2.0,
    "scale_factor": 0.25,  # clip(N(0,1) * 0.25 + 1, 0.75, 1.25)
    "rotation_factor": 30.0,  # clip(N(0,1) * 30, -60, 60)
    "rotation_prob": 0.6,
    "flip": True,  # probability 0.5
    "color": "bgr_imagenet",  # the released code's BGR pixels with the RGB ImageNet mean/std
}
MPII_TRAIN = {
    "epochs": 150,
    "batch_size": 16,
    "optimizer": "adam",
    "lr": 2.5e-4,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "lr_steps": [90, 120],
    "lr_factor": 0.1,
    "drop_last": False,  # the released code trains on the last incomplete batch
}
TEST = {"flip": True, "shift_heatmap": True, "select": "best_branch"}  # flip test, shifted one pixel
RUNTIME = {"precision": "fp32"}

# ------------------------------------------------------------------ SPEC B: COCO (released configs + HRNet)
COCO_DATA = {
    "name": "coco",
    "input_size": [192, 256],  # 256x192, width first
    "heatmap_size": [48, 64],
    "sigma": 2.0,
    "scale_factor": 0.3,
    "rotation_factor": 40.0,
    "rotation_prob": 0.6,  # HRNet
    "half_body_prob": 0.3,  # HRNet
    "flip": True,
    "color": "rgb_imagenet",  # HRNet: RGB input
    "train_set": "train2017",
    "val_set": "val2017",
    "test_set": "test-dev2017",  # HRNet's test split: predicted for the evaluation server, not scored here
    "use_gt_boxes": True,  # the paper's numbers: ground-truth boxes
    "det_score_threshold": 0.0,  # HRNet's IMAGE_THRE (used only with detector boxes)
    "with_mask": False,
    "oks_threshold": 0.9,  # OKS-NMS
    "keypoint_score_threshold": 0.2,  # rescoring
}
COCO_TRAIN = {**MPII_TRAIN, "epochs": 140}
OCHUMAN_DATA = {
    "name": "ochuman",
    "input_size": [192, 256],
    "heatmap_size": [48, 64],
    "sigma": 2.0,
    "color": "rgb_imagenet",
    "with_mask": False,
    "oks_threshold": 0.9,
    "keypoint_score_threshold": 0.2,
    "val_set": "val",
    "test_set": "test",
}

# ------------------------------------------------------------------------------------- SPEC A: networks
HG = {"name": "hourglass", "num_features": 256, "num_blocks": 1, "depth": 4, "mask_head": False}
OKDHP_HG = {  # stem -> shared stacks -> 3 branches, released FAU (Linear 256 -> 64), paper's ensemble
    "name": "okdhp_hourglass",
    "num_features": 256,
    "num_blocks": 1,
    "depth": 4,
    "fau": "released",
    "fau_width": 64,
    "released_indices": False,
}
MOBILE = {"name": "mobile", "deconv_channels": 256, "mask_head": False}
OKDHP_MOBILE = {
    "name": "okdhp_mobile",
    "deconv_channels": 256,
    "num_branches": 3,
    "fau": "released",
    "fau_width": 64,
    "fau_channels": 256,
}
HRNET = {  # HRNet-W32's topology: 1/4/3 modules, 4 blocks per branch (SPEC C); width sets the branches
    "name": "hrnet",
    "num_joints": 17,
    "stage_modules": [1, 4, 3],
    "stage_blocks": 4,
    "final_conv_kernel": 1,
    "mask_head": False,
    "deploy_mask_head": False,
    "freeze_keypoints": False,
}

# ------------------------------------------------------------------------------------ SPEC B: the losses
MSE = {"name": "mse"}
OKDHP = {  # Eq. 8: alpha = 1, beta = 2, ramp-up over 90 epochs, temperature 1, ensemble not detached
    "name": "okdhp",
    "alpha": 1.0,
    "beta": 2.0,
    "rampup_epochs": 90,
    "temperature": 1.0,
    "detach_ensemble": False,
}
FPD = {"name": "fpd", "alpha": 0.5, "teacher": "teacher"}  # KD.ALPHA = 0.5
FPD_TEACHER = {"teacher": (0.0, 1.0, "mpii/hg8_baseline")}  # the 8-stack hourglass, every epoch

# ------------------------------------------------------- SPEC C (+ docs/odkd.md for what SPEC C leaves open)
ODKD_DATA = {  # HRNet's COCO recipe; tested on HRNet's detector boxes, the protocol of SPEC C's figure script
    **COCO_DATA,
    "scale_factor": 0.35,
    "rotation_factor": 45.0,
    "use_gt_boxes": False,
}
ODKD_TRAIN = {  # HRNet's w32_256x192_adam_lr1e-3 recipe (docs/odkd.md)
    **MPII_TRAIN,
    "epochs": 210,
    "batch_size": 32,
    "lr": 1e-3,
    "lr_steps": [170, 200],
}
ODKD = {
    "name": "odkd",
    "lambda_kd": 1.0,
    "tau": 0.5,  # hard 1[H >= 0.5] on teacher maps clipped to [0, 1]
    "tau_mode": "absolute",  # SPEC C's 1[H >= tau]; relative (tau x the map's peak) is a switch
    "binarize": "hard",
    "binarize_gt": False,
    "mu": 0.01,
    "primary_teacher": "pt",
    "senior_teacher": "st",
    "mask_mode": "binary",
    "mask_threshold": 0.5,
}
ORDERLY = {"pt": (0.0, 0.5, "odkd/pt_hrnet_w32"), "st": (0.5, 1.0, "odkd/st_hrnet_w48_mask")}  # r = 0.5
POSE_MASK = {"name": "pose_mask", "mu": 0.01}


def row(
    data: dict,
    train: dict,
    model: dict,
    loss: dict,
    test: dict | None = None,
    teachers: dict | None = None,
) -> dict[str, Any]:
    """One experiment's expected values by section."""
    return {
        "data": data,
        "train": train,
        "test": test or TEST,
        "runtime": RUNTIME,
        "model": model,
        "loss": loss,
        "teachers": teachers or {},
    }


def okdhp_hg(joints: int, shared: int, branches: list[int], **changes: Any) -> dict:
    return {**OKDHP_HG, "num_joints": joints, "shared_stacks": shared, "branch_stacks": branches, **changes}


def hg(joints: int, stacks: int, **changes: Any) -> dict:
    return {**HG, "num_joints": joints, "num_stacks": stacks, **changes}


def w16_student(loss: dict = ODKD, teachers: dict = ORDERLY, mask_head: bool = True) -> dict[str, Any]:
    """An ODKD row of the headline student, HRNet-W16 (with its training-only mask head unless said)."""
    return row(ODKD_DATA, ODKD_TRAIN, {**HRNET, "width": 16, "mask_head": mask_head}, loss, teachers=teachers)


def mpii_mobile(backbone: str, okdhp: bool) -> dict[str, Any]:
    """A MobilePose-style MPII row: one encoder with one decoder, or with three decoder branches and the FAU."""
    model = {**(OKDHP_MOBILE if okdhp else MOBILE), "num_joints": 16, "backbone": backbone}
    return row(MPII_DATA, MPII_TRAIN, model, OKDHP if okdhp else MSE)


def odkd_mobile(backbone: str, distilled: bool) -> dict[str, Any]:
    """An ODKD row of a backbone + SimpleBaseline-head student (mask head when distilled), or its no-KD twin."""
    model = {**MOBILE, "num_joints": 17, "backbone": backbone, "mask_head": distilled}
    return row(
        ODKD_DATA, ODKD_TRAIN, model, ODKD if distilled else MSE, teachers=ORDERLY if distilled else None
    )


ROWS: dict[str, dict[str, Any]] = {
    # MPII, OKDHP paper table: baseline and OKDHP columns (balanced: half the stacks shared)
    "mpii/hg2_baseline": row(MPII_DATA, MPII_TRAIN, hg(16, 2), MSE),
    "mpii/hg4_baseline": row(MPII_DATA, MPII_TRAIN, hg(16, 4), MSE),
    "mpii/hg8_baseline": row(MPII_DATA, MPII_TRAIN, hg(16, 8), MSE),
    "mpii/hg2_okdhp": row(MPII_DATA, MPII_TRAIN, okdhp_hg(16, 1, [1, 1, 1]), OKDHP),
    "mpii/hg4_okdhp": row(MPII_DATA, MPII_TRAIN, okdhp_hg(16, 2, [2, 2, 2]), OKDHP),
    "mpii/hg8_okdhp": row(MPII_DATA, MPII_TRAIN, okdhp_hg(16, 4, [4, 4, 4]), OKDHP),
    # the released code: 2 stacks per branch for every size, and its ensemble index bug
    "mpii/hg2_okdhp_released": row(
        MPII_DATA, MPII_TRAIN, okdhp_hg(16, 0, [2, 2, 2], released_indices=True), OKDHP
    ),
    "mpii/hg4_okdhp_released": row(
        MPII_DATA, MPII_TRAIN, okdhp_hg(16, 2, [2, 2, 2], released_indices=True), OKDHP
    ),
    "mpii/hg8_okdhp_released": row(
        MPII_DATA, MPII_TRAIN, okdhp_hg(16, 6, [2, 2, 2], released_indices=True), OKDHP
    ),
    "mpii/hg4_okdhp_paper_fau": row(MPII_DATA, MPII_TRAIN, okdhp_hg(16, 2, [2, 2, 2], fau="paper"), OKDHP),
    # unbalanced: branches of 2, 4, 6 own stacks; the target is the 4-stack branch (branch 0)
    "mpii/hg4_okdhp_unbalanced": row(
        MPII_DATA, MPII_TRAIN, okdhp_hg(16, 2, [2, 4, 6]), OKDHP, test={**TEST, "select": "branch0"}
    ),
    # FPD row of the training-cost table: 8-stack teacher, 4-stack student, OKDHP's MPII recipe
    "mpii/hg4_fpd": row(MPII_DATA, MPII_TRAIN, hg(16, 4), FPD, teachers=FPD_TEACHER),
    # FPD's own MPII student (its scripts/fpd_mpii/run_train_hg.sh: NUM_FEATURES 128, NUM_STACKS 4), same recipe
    "mpii/hg4_fpd_f128": row(MPII_DATA, MPII_TRAIN, hg(16, 4, num_features=128), FPD, teachers=FPD_TEACHER),
    # other backbones (MobilePose style)
    "mpii/resnet18_baseline": mpii_mobile("resnet18", okdhp=False),
    "mpii/mobilenet_v2_baseline": mpii_mobile("mobilenet_v2", okdhp=False),
    "mpii/shufflenet_v2_baseline": mpii_mobile("shufflenet_v2_x1_0", okdhp=False),
    "mpii/resnet18_okdhp": mpii_mobile("resnet18", okdhp=True),
    "mpii/mobilenet_v2_okdhp": mpii_mobile("mobilenet_v2", okdhp=True),
    "mpii/shufflenet_v2_okdhp": mpii_mobile("shufflenet_v2_x1_0", okdhp=True),
    # COCO table (released COCO configs; 17 joints)
    "coco/hg2_baseline": row(COCO_DATA, COCO_TRAIN, hg(17, 2), MSE),
    "coco/hg4_baseline": row(COCO_DATA, COCO_TRAIN, hg(17, 4), MSE),
    "coco/hg8_baseline": row(COCO_DATA, COCO_TRAIN, hg(17, 8), MSE),
    "coco/hg2_okdhp": row(COCO_DATA, COCO_TRAIN, okdhp_hg(17, 1, [1, 1, 1]), OKDHP),
    "coco/hg4_okdhp": row(COCO_DATA, COCO_TRAIN, okdhp_hg(17, 2, [2, 2, 2]), OKDHP),
    "coco/hg8_okdhp": row(COCO_DATA, COCO_TRAIN, okdhp_hg(17, 4, [4, 4, 4]), OKDHP),
    "coco/hg4_fpd": row(
        COCO_DATA, COCO_TRAIN, hg(17, 4), FPD, teachers={"teacher": (0.0, 1.0, "coco/hg8_baseline")}
    ),
    "coco/ochuman_hg4_okdhp": row(OCHUMAN_DATA, COCO_TRAIN, okdhp_hg(17, 2, [2, 2, 2]), OKDHP),
    # ODKD (SPEC C): teachers, students and their no-KD twins, ablations
    "odkd/pt_hrnet_w32": row(ODKD_DATA, ODKD_TRAIN, {**HRNET, "width": 32}, MSE),
    "odkd/st_hrnet_w48_mask": row(
        {**ODKD_DATA, "with_mask": True},
        ODKD_TRAIN,
        {**HRNET, "width": 48, "mask_head": True, "deploy_mask_head": True},
        POSE_MASK,
    ),
    "odkd/st_hrnet_w48_mask_published": row(  # the mask head alone on the published W48 (docs/odkd.md)
        {**ODKD_DATA, "with_mask": True},
        {**ODKD_TRAIN, "epochs": 10, "lr_steps": [8]},
        {**HRNET, "width": 48, "mask_head": True, "deploy_mask_head": True, "freeze_keypoints": True},
        POSE_MASK,
    ),
    "odkd/hrnet_w16_baseline": row(ODKD_DATA, ODKD_TRAIN, {**HRNET, "width": 16}, MSE),
    "odkd/hrnet_w16_odkd": w16_student(),
    "odkd/hrnet_w16_odkd_published": w16_student(
        teachers={"pt": (0.0, 0.5, None), "st": (0.5, 1.0, "odkd/st_hrnet_w48_mask_published")}
    ),
    "odkd/hrnet_w16_odkd_mixed": w16_student(  # both teachers in every epoch at half weight (docs/odkd.md)
        loss={**ODKD, "lambda_kd": 0.5, "mu": 0.005},
        teachers={"pt": (0.0, 1.0, "odkd/pt_hrnet_w32"), "st": (0.0, 1.0, "odkd/st_hrnet_w48_mask")},
    ),
    "odkd/hrnet_w16_odkd_reversed": w16_student(
        teachers={"pt": (0.5, 1.0, "odkd/pt_hrnet_w32"), "st": (0.0, 0.5, "odkd/st_hrnet_w48_mask")}
    ),
    "odkd/hrnet_w16_odkd_no_binarize": w16_student(loss={**ODKD, "binarize": "none"}),
    "odkd/hrnet_w16_odkd_binarize_gt": w16_student(loss={**ODKD, "binarize_gt": True}),
    "odkd/hrnet_w16_odkd_relative_tau": w16_student(loss={**ODKD, "tau_mode": "relative"}),
    "odkd/hrnet_w16_odkd_no_mask": w16_student(
        loss={**ODKD, "mask_mode": "none", "mu": 0.0}, mask_head=False
    ),
    "odkd/hrnet_w16_odkd_pt_only": w16_student(  # ODKD without the senior teacher's phase
        loss={**ODKD, "senior_teacher": None}, teachers={"pt": (0.0, 0.5, "odkd/pt_hrnet_w32")}
    ),
    "odkd/hrnet_w16_odkd_st_only": w16_student(  # ODKD without the primary teacher's phase
        loss={**ODKD, "primary_teacher": None}, teachers={"st": (0.5, 1.0, "odkd/st_hrnet_w48_mask")}
    ),
    # the 4-stage hourglass of ODKD's figure: the 4-stack hourglass with 128 features
    "odkd/hg4_f128_baseline": row(ODKD_DATA, ODKD_TRAIN, hg(17, 4, num_features=128), MSE),
    "odkd/hg4_f128_odkd": row(
        ODKD_DATA, ODKD_TRAIN, hg(17, 4, num_features=128, mask_head=True), ODKD, teachers=ORDERLY
    ),
    "odkd/mobilenet_v2_baseline": odkd_mobile("mobilenet_v2", distilled=False),
    "odkd/mobilenet_v2_odkd": odkd_mobile("mobilenet_v2", distilled=True),
    "odkd/shufflenet_v2_baseline": odkd_mobile("shufflenet_v2_x1_0", distilled=False),
    "odkd/shufflenet_v2_odkd": odkd_mobile("shufflenet_v2_x1_0", distilled=True),
    # OCHuman: a COCO-trained student evaluated on OCHuman val / test with ground-truth boxes
    "odkd/ochuman_val": row(OCHUMAN_DATA, ODKD_TRAIN, {**HRNET, "width": 16}, MSE),
    "odkd/ochuman_test": row({**OCHUMAN_DATA, "val_set": "test"}, ODKD_TRAIN, {**HRNET, "width": 16}, MSE),
}

# Resolved keys that are not paper values: where files are, how big an evaluation batch is, speed switches.
NOT_PAPER_VALUES = {
    "data": {
        "root", "split", "train", "seed", "codec", "subset", "reduced_decode", "annotation_format",
        "annotation_file", "gt_file", "ann_file", "image_dir", "detection_file", "test_ann_file",
        "test_image_dir", "test_detection_file",
    },
    "train": {"val_every", "iters_per_epoch", "init_from", "momentum"},
    "test": {"batch_size"},
    "runtime": {"device", "channels_last", "compile", "deterministic", "workers", "sync_batchnorm"},
}  # fmt: skip


def experiment_names() -> list[str]:
    """Every experiment yaml as 'family/name', without the base files."""
    return [experiment_name(path) for path in experiment_paths()]


def plain(value: Any) -> Any:
    """Tuples as lists (a builder default may be a tuple where a yaml gives a list)."""
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    return value


def resolved(config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """What a run of the config uses, by section: base files merged, builders' defaults filled in."""
    return {
        "data": {"name": config.data["name"], **DATASETS.resolved(config.data)},
        "train": dataclasses.asdict(config.train),
        "test": dataclasses.asdict(config.test),
        "runtime": dataclasses.asdict(config.runtime),
        "model": {"name": config.model["name"], **MODELS.resolved(config.model)},
        "loss": {"name": config.loss["name"], **LOSSES.resolved(config.loss)},
    }


def test_every_experiment_has_a_row() -> None:
    """A new experiment yaml needs its paper values in ROWS (or is a CPU demo)."""
    assert set(experiment_names()) - DEMOS == set(ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_experiment_resolves_to_the_paper_values(name: str) -> None:
    config = load_config(EXPERIMENTS / f"{name}.yaml")
    actual = resolved(config)
    expected = ROWS[name]
    for section, values in actual.items():
        ignored = NOT_PAPER_VALUES.get(section, set())
        used = {key: plain(value) for key, value in values.items() if key not in ignored}
        if section in ("data", "model", "loss"):  # the whole section: a key the table lacks is an error
            assert used == plain(expected[section]), section
        else:  # train/test/runtime: the table's keys (the others are not paper values)
            assert set(expected[section]) <= set(used), section
            assert {key: used[key] for key in expected[section]} == plain(expected[section]), section
        assert set(values) - ignored - set(expected[section]) == set(), f"{section}: unclassified keys"
    teachers = {name: (t.start, t.end, t.experiment) for name, t in config.teachers.items()}
    assert teachers == expected["teachers"]


# ------------------------------------------------------------------- the code's defaults (a yaml may omit)
def defaults(function: Any) -> dict[str, Any]:
    """Keyword defaults of a function or class."""
    return {
        name: plain(p.default)
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def builder_defaults(name: str) -> dict[str, Any]:
    return {key: plain(p.default) for key, p in DATASETS.parameters(name).items()}


def test_dataset_builders_default_to_spec() -> None:
    mpii = builder_defaults("mpii")
    assert {key: mpii[key] for key in MPII_DATA if key != "name"} == {
        key: value for key, value in MPII_DATA.items() if key != "name"
    }
    coco = builder_defaults("coco")
    hrnet_coco = {**COCO_DATA, "scale_factor": 0.35, "rotation_factor": 45.0}  # HRNet's defaults
    assert {key: coco[key] for key in hrnet_coco if key != "name"} == {
        key: value for key, value in hrnet_coco.items() if key != "name"
    }
    ochuman = builder_defaults("ochuman")
    assert {key: ochuman[key] for key in OCHUMAN_DATA if key != "name"} == {
        key: value for key, value in OCHUMAN_DATA.items() if key != "name"
    }
    # the classes under the builders, for code that builds them directly
    top_down = defaults(TopDownDataset.__init__)
    assert top_down == {
        "scale_factor": 0.25,
        "rotation_factor": 30.0,
        "rotation_prob": 0.6,
        "flip": True,
        "color": "bgr_imagenet",
        "seed": 0,
        "reduced_decode": False,
    }
    coco_class = defaults(CocoDataset.__init__)
    assert (coco_class["half_body_prob"], coco_class["oks_threshold"]) == (0.3, 0.9)
    assert coco_class["keypoint_score_threshold"] == 0.2


def test_config_sections_default_to_the_released_recipe() -> None:
    train = dataclasses.asdict(TrainConfig())
    assert {key: train[key] for key in MPII_TRAIN} == MPII_TRAIN
    assert {
        key: value
        for key, value in dataclasses.asdict(experiment_config.TestConfig()).items()
        if key != "batch_size"
    } == TEST
    assert RuntimeConfig().precision == "fp32"


def test_losses_default_to_spec() -> None:
    assert defaults(OKDHPLoss) == {key: value for key, value in OKDHP.items() if key != "name"}
    assert defaults(FPDLoss) == {"alpha": 0.5, "teacher": "teacher"}
    odkd = defaults(ODKDLoss)
    assert (odkd["tau"], odkd["tau_mode"], odkd["binarize"], odkd["binarize_gt"]) == (
        0.5,
        "absolute",
        "hard",
        False,
    )
    assert defaults(rampup_weight) == {"rampup_epochs": 90}


def test_odkd_mask_weight_default_is_the_documented_one() -> None:
    assert defaults(ODKDLoss)["mu"] == 0.01


def test_evaluation_defaults_and_constants() -> None:
    """Thresholds every caller gets unless it passes its own: PCKh 0.5, keypoint score 0.2, OKS-NMS 0.9."""
    for function in (compute_pckh, pckh_table, evaluate_prediction_file):
        assert defaults(function)["threshold"] == 0.5, function.__name__
    assert HEAD_SIZE_FACTOR == 0.6
    assert defaults(rescore) == {"keypoint_score_threshold": 0.2}
    assert defaults(oks_nms)["threshold"] == 0.9
    for function in (rescore_and_nms, nms_results, evaluate_results_file):
        values = defaults(function)
        assert (values["oks_threshold"], values["keypoint_score_threshold"]) == (0.9, 0.2), function.__name__
    assert defaults(HeatmapCodec.flip_back) == {"shift": True}
    # HRNet's COCO box rules
    assert (BOX_PADDING, HALF_BODY_PADDING, HALF_BODY_MIN_JOINTS) == (1.25, 1.5, 8)
    assert tuple(COCO_UPPER_BODY) == tuple(range(11))  # nose, eyes, ears, shoulders, elbows, wrists


def test_flip_pairs_are_the_datasets_left_right_pairs() -> None:
    # MPII: r/l ankle, knee, hip, wrist, elbow, shoulder (data/MANIFEST.md)
    assert set(MPII.flip_pairs) == {(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)}
    # COCO: eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left first, as COCO lists them)
    assert set(COCO.flip_pairs) == {(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)}
    assert MPII.num_joints == 16 and COCO.num_joints == 17


# --------------------------------------------------------------- each row's loss = SPEC's formula with SPEC's constants
B, J, H, W = 2, 3, 4, 5


def spec_mse(output: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """HRNet's JointsMSELoss: per joint 0.5 * mean over batch and pixels of (o*w - G*w)^2, mean over joints."""
    w = weight[:, :, None, None]
    return float(
        np.mean([0.5 * np.mean((output[:, j] * w[:, j] - target[:, j] * w[:, j]) ** 2) for j in range(J)])
    )


def spec_kl(student: np.ndarray, ensemble: np.ndarray, weight: np.ndarray) -> float:
    """Pixel-wise KL(E || o), temperature 1: softmax over each joint's pixels, summed, divided by B*H*W."""
    w = weight[:, :, None, None]

    def log_softmax(x: np.ndarray) -> np.ndarray:
        flat = (x * w).reshape(B, J, -1)
        return flat - np.log(np.exp(flat).sum(axis=2, keepdims=True))

    log_p, log_q = log_softmax(student), log_softmax(ensemble)
    return float((np.exp(log_q) * (log_q - log_p)).sum() / (B * H * W))


@pytest.fixture
def heatmaps() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "stacks": rng.normal(size=(3, B, J, H, W)),
        "ensemble": rng.normal(size=(B, J, H, W)),
        "teacher": rng.uniform(-0.2, 1.2, size=(B, J, H, W)),
        "target": rng.uniform(size=(B, J, H, W)),
        "weight": np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]),
    }


def call_loss(loss: torch.nn.Module, maps: dict[str, np.ndarray], epoch: int, teachers: dict) -> float:
    tensor = lambda array: torch.from_numpy(array)  # noqa: E731
    stacks = [tensor(s) for s in maps["stacks"]]
    output = PoseOutput(stacks=stacks, branches=stacks[-1:], ensemble=tensor(maps["ensemble"]))
    output.teachers = {
        name: PoseOutput(stacks=[tensor(m)], branches=[tensor(m)]) for name, m in teachers.items()
    }
    batch = {"target": tensor(maps["target"]), "target_weight": tensor(maps["weight"][..., None])}
    return loss(output, batch, epoch)["total"].item()


@pytest.mark.parametrize(
    "name", ["mpii/hg4_okdhp", "mpii/hg2_okdhp", "coco/hg8_okdhp", "mpii/resnet18_okdhp"]
)
def test_okdhp_rows_compute_eq_8(name: str, heatmaps) -> None:
    """L = sum_k MSE(o_k, G) + 1 * MSE(E, G) + 2 * exp(-5 (1 - min(e, 90)/90)^2) * sum_k KL(E || o_k)."""
    loss = build_loss(load_config(EXPERIMENTS / f"{name}.yaml").loss)
    m = heatmaps
    mse = sum(spec_mse(s, m["target"], m["weight"]) for s in m["stacks"])
    kl = sum(spec_kl(s, m["ensemble"], m["weight"]) for s in m["stacks"])
    for epoch in (0, 30, 89, 90, 149):
        ramp = math.exp(-5.0 * (1.0 - min(epoch, 90) / 90) ** 2)
        expected = mse + 1.0 * spec_mse(m["ensemble"], m["target"], m["weight"]) + 2.0 * ramp * kl
        assert call_loss(loss, m, epoch, {}) == pytest.approx(expected, rel=1e-10), epoch


@pytest.mark.parametrize("name", ["mpii/hg4_fpd", "coco/hg4_fpd"])
def test_fpd_rows_compute_fpd_loss(name: str, heatmaps) -> None:
    """L = (1 - 0.5) * sum_k MSE(o_k, G) + 0.5 * sum_k MSE(o_k, T), T the teacher's last heatmap."""
    loss = build_loss(load_config(EXPERIMENTS / f"{name}.yaml").loss)
    m = heatmaps
    mse = sum(spec_mse(s, m["target"], m["weight"]) for s in m["stacks"])
    kd = sum(spec_mse(s, m["teacher"], m["weight"]) for s in m["stacks"])
    got = call_loss(loss, m, 3, {"teacher": m["teacher"]})
    assert got == pytest.approx(0.5 * mse + 0.5 * kd, rel=1e-10)


def test_odkd_row_computes_the_binarised_primary_teacher_term(heatmaps) -> None:
    """PT phase: L = sum_k MSE(S_k, G) + 1 * sum_k MSE(S_k, 1[clip(T, 0, 1) >= 0.5])."""
    loss = build_loss(load_config(EXPERIMENTS / "odkd/hrnet_w16_odkd.yaml").loss)
    m = heatmaps
    m["teacher"][0, 0, 0, :2] = 0.5  # on the threshold: kept (>= tau)
    binary = (np.clip(m["teacher"], 0.0, 1.0) >= 0.5).astype(np.float64)
    mse = sum(spec_mse(s, m["target"], m["weight"]) for s in m["stacks"])
    kd = sum(spec_mse(s, binary, m["weight"]) for s in m["stacks"])
    got = call_loss(loss, m, 0, {"pt": m["teacher"]})
    assert got == pytest.approx(mse + 1.0 * kd, rel=1e-10)
