"""Frozen teachers (models/distiller.py) in a real toy distillation run, and the FPD loss against float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from datasets.synthetic import make_synthetic_mpii
from engine.experiment.config import load_config
from engine.training.run import TrainingRun
from losses.fpd import FPDLoss
from models.output import PoseOutput
from models.registry import build_model
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import CheckpointError, ConfigError

TEACHER = {"name": "hourglass", "num_stacks": 2, "num_features": 16, "depth": 2}
STUDENT = {"name": "hourglass", "num_stacks": 1, "num_features": 8, "depth": 2}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_mpii(
        tmp_path_factory.mktemp("distil_mpii"), num_train=16, num_valid=8, image_size=64
    )


def write_teacher(path: Path) -> Path:
    """A teacher checkpoint as this project writes deploy.pth: the network and its model section."""
    torch.manual_seed(7)
    teacher = build_model({**TEACHER, "num_joints": 16})
    save_checkpoint({"kind": "deploy", "model": teacher.state_dict(), "model_config": TEACHER}, path)
    return path


def write_config(folder: Path, root: Path, teacher: Path, end: float = 0.5) -> Path:
    config = {
        "experiment": "tiny_fpd",
        "seed": 1,
        "model": STUDENT,
        "data": {
            "name": "mpii",
            "root": str(root),
            "input_size": [64, 64],
            "heatmap_size": [16, 16],
            "sigma": 1.0,
        },
        "loss": {"name": "fpd", "alpha": 0.5},
        "teachers": {"teacher": {"checkpoint": str(teacher), "end": end}},
        "train": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "lr_steps": []},
        "runtime": {"workers": 0, "deterministic": True, "device": "cpu"},
        "test": {"batch_size": 8},
    }
    path = folder / "tiny_fpd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class CountCalls:
    """Forward pre-hook counting a teacher's forward passes per epoch (also used by test_odkd)."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.epoch = 0

    def __call__(self, module, inputs) -> None:
        self.calls[self.epoch] = self.calls.get(self.epoch, 0) + 1


def test_toy_distillation_keeps_teachers_frozen_and_out_of_checkpoints(
    tiny_root: Path, tmp_path: Path
) -> None:
    teacher_file = write_teacher(tmp_path / "teacher.pth")
    config = load_config(write_config(tmp_path, tiny_root, teacher_file, end=0.5))
    run = TrainingRun(config, tmp_path / "run")
    teacher = run.trainee.teachers["teacher"].network
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    counter = CountCalls()
    teacher.register_forward_pre_hook(counter)
    original_set_epoch = run.trainee.set_epoch

    def set_epoch(epoch: int) -> list[str]:
        counter.epoch = epoch
        return original_set_epoch(epoch)

    run.trainee.set_epoch = set_epoch
    run.fit(log=lambda _: None)

    # Bit-identical teacher (parameters and BN running statistics), in eval mode, not in the optimizer.
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not teacher.training
    optimised = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert optimised == {id(p) for p in run.network.parameters()}
    # The teacher ran in epoch 0 only (end = 0.5 of 2 epochs): 4 iterations, never in epoch 1 or validation.
    assert counter.calls == {0: 4}
    # Checkpoints hold the student only, plus the teacher's path and hash.
    student_keys = set(build_model({**STUDENT, "num_joints": 16}).state_dict())
    for name in ("last.pth", "best.pth"):
        state = load_checkpoint(tmp_path / "run" / name)
        assert set(state["model"]) == student_keys
        assert set(state["teachers"]) == {"teacher"}
        assert len(state["teachers"]["teacher"]["sha256"]) == 64
    deploy = load_checkpoint(tmp_path / "run" / "deploy.pth")
    assert set(deploy["model"]) == student_keys and deploy["model_config"]["num_stacks"] == 1
    log = [yaml.safe_load(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["teachers"] == ["teacher"] and log[1]["teachers"] == []
    assert log[0]["train"]["kd"] > 0 and log[1]["train"]["kd"] == 0
    assert log[1]["train"]["mse"] < log[0]["train"]["mse"]  # the student learns


def test_resume_refuses_a_changed_teacher_file(tiny_root: Path, tmp_path: Path) -> None:
    teacher_file = write_teacher(tmp_path / "teacher.pth")
    config = load_config(write_config(tmp_path, tiny_root, teacher_file, end=1.0))
    config.train.epochs = 1
    TrainingRun(config, tmp_path / "run").fit(log=lambda _: None)
    state = load_checkpoint(teacher_file)
    state["model"]["stem.0.weight"] += 1.0
    save_checkpoint(state, teacher_file)
    config.train.epochs = 2
    with pytest.raises(CheckpointError, match=r"teacher 'teacher' .* is not the file the run started with"):
        TrainingRun(config, tmp_path / "run").fit(
            resume=True, allow_change=["train.epochs"], log=lambda _: None
        )


def test_a_loss_whose_teacher_is_not_configured_is_refused(tiny_root: Path, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tiny_root, tmp_path / "absent.pth"))
    config.teachers = {}
    with pytest.raises(ConfigError, match="learns from the teacher"):
        TrainingRun(config, tmp_path / "run")
    config = load_config(write_config(tmp_path, tiny_root, tmp_path / "absent.pth"))
    with pytest.raises(CheckpointError, match=r"teachers.teacher.checkpoint: file not found"):
        TrainingRun(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def reference_joints_mse(output: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """HRNet's JointsMSELoss in float64, joint by joint."""
    per_joint = []
    for j in range(output.shape[1]):
        w = weight[:, j].reshape(-1, 1, 1)
        per_joint.append(0.5 * np.mean((output[:, j] * w - target[:, j] * w) ** 2))
    return float(np.mean(per_joint))


def test_fpd_loss_equals_a_float64_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    stacks = [torch.rand(2, 3, 5, 4, generator=generator, dtype=torch.float64) for _ in range(3)]
    target = torch.rand(2, 3, 5, 4, generator=generator, dtype=torch.float64)
    teacher_final = torch.rand(2, 3, 5, 4, generator=generator, dtype=torch.float64)
    weight = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)[
        ..., None
    ]  # zero-weight joints
    teacher = PoseOutput(stacks=[teacher_final * 3, teacher_final], branches=[teacher_final])
    output = PoseOutput(stacks=stacks, branches=[stacks[-1]], teachers={"teacher": teacher})
    terms = FPDLoss(alpha=0.3)(output, {"target": target, "target_weight": weight})
    arrays = [s.numpy() for s in stacks]
    gt = sum(reference_joints_mse(a, target.numpy(), weight.numpy()) for a in arrays)
    kd = sum(reference_joints_mse(a, teacher_final.numpy(), weight.numpy()) for a in arrays)
    assert terms["mse"].item() == pytest.approx(gt, rel=1e-12)
    assert terms["kd"].item() == pytest.approx(kd, rel=1e-12)
    assert terms["total"].item() == pytest.approx(0.7 * gt + 0.3 * kd, rel=1e-12)
    assert set(terms) >= {"kd/stack0", "kd/stack1", "kd/stack2", "mse/stack2"}


def test_a_teacher_of_another_skeleton_is_named_with_its_file(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An MPII teacher (16 joints) for a COCO student (17 joints): the message is about the teacher's file."""
    from datasets.synthetic_coco import make_synthetic_coco
    from engine.cli import run_cli, train_main
    from engine.inference.pipeline import Pipeline

    mpii = load_config(write_config(tmp_path, tiny_root, tmp_path / "unused.pth"))
    section = {**TEACHER, "num_joints": 16}
    teacher = tmp_path / "mpii_teacher.pth"
    weights = build_model(section).state_dict()
    pipeline = Pipeline.from_config(mpii).to_dict()
    save_checkpoint(
        {
            "kind": "deploy",
            "model": weights,
            "model_config": section,
            "config": mpii.to_dict(),
            "pipeline": pipeline,
        },
        teacher,
    )
    coco_root = make_synthetic_coco(tmp_path / "coco", num_train=2, num_valid=2, image_size=(96, 72))
    student = {
        "base": str(Path(__file__).resolve().parents[1] / "experiments" / "coco" / "hg2_baseline.yaml"),
        "model": {"num_features": 16, "depth": 2},
        "data": {"root": str(coco_root), "input_size": [48, 64], "heatmap_size": [12, 16]},
        "loss": {"name": "fpd", "alpha": 0.5},
        "teachers": {"teacher": {"checkpoint": str(teacher)}},
        "runtime": {"workers": 0, "device": "cpu"},
    }
    config = tmp_path / "coco_fpd.yaml"
    config.write_text(yaml.safe_dump(student))

    def coco_main(argv):
        return train_main("coco", argv)

    for expect in (
        f"teachers.teacher.checkpoint ({teacher}): the teacher was trained on the mpii skeleton (16 joints), but "
        "the student's data has the coco skeleton (17 joints); a teacher must predict the student's joints",
        f"teachers.teacher.checkpoint ({teacher}): the teacher predicts 16 joints, but the student's data has the "
        "coco skeleton of 17 joints",  # a file that does not say what it was trained on
    ):
        capsys.readouterr()
        assert run_cli(coco_main, ["--config", str(config), "--output-dir", str(tmp_path / "run")]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and expect in error and "\n" not in error, error
        save_checkpoint({"kind": "deploy", "model": weights, "model_config": section}, teacher)
    assert not (tmp_path / "run").exists()


STUDENT_PIPELINE = {"input_size": (64, 64), "heatmap_size": (16, 16), "sigma": 1.0, "color": "bgr_imagenet"}


@pytest.mark.parametrize(
    ("field", "teacher", "student"),
    [  # each teacher file is coherent (a 4x-down-sampling hourglass: heatmaps are the input / 4)
        ("input_size", {"input_size": (128, 128), "heatmap_size": (32, 32)}, {}),
        ("heatmap_size", {}, {"heatmap_size": (32, 32)}),  # a student whose network had another stride
        ("sigma", {"sigma": 2.0}, {}),
        ("color", {"color": "rgb_imagenet"}, {}),
        (None, {}, {}),  # the same pipeline: accepted
    ],
)
def test_a_teacher_trained_with_another_input_pipeline_is_refused(
    tmp_path: Path, field: str | None, teacher: dict, student: dict
) -> None:
    """A teacher sees the student's crops and teaches its heatmaps pixel by pixel: the teacher file's input
    size, heatmap size, sigma and colour must be the student's; one paragraph names the file, the key and both."""
    from datasets.codec import HeatmapCodec
    from datasets.keypoints import MPII
    from engine.inference.pipeline import Pipeline
    from engine.training.teachers import build_teachers

    def pipeline(values: dict) -> Pipeline:
        codec = HeatmapCodec(values["input_size"], values["heatmap_size"], values["sigma"])
        return Pipeline(codec=codec, skeleton=MPII, color=values["color"])

    teacher_values, student_values = {**STUDENT_PIPELINE, **teacher}, {**STUDENT_PIPELINE, **student}
    path = tmp_path / "teacher.pth"
    config = load_config(write_config(tmp_path, tmp_path, path))
    section = {**TEACHER, "num_joints": 16}
    save_checkpoint(
        {
            "kind": "deploy",
            "model": build_model(section).state_dict(),
            "model_config": section,
            "config": config.to_dict(),
            "pipeline": pipeline(teacher_values).to_dict(),
        },
        path,
    )
    if field is None:
        teachers, _ = build_teachers(config, pipeline(student_values))
        assert list(teachers) == ["teacher"]
        return
    with pytest.raises(ConfigError) as caught:
        build_teachers(config, pipeline(student_values))
    message = str(caught.value)
    theirs = {key: list(v) if isinstance(v, tuple) else v for key, v in teacher_values.items()}
    ours = {key: list(v) if isinstance(v, tuple) else v for key, v in student_values.items()}
    for key in {**teacher, **student}:
        assert f"data.{key}: the teacher's is {theirs[key]}, the student's is {ours[key]}" in message
    assert message.startswith(f"teachers.teacher.checkpoint ({path}): the teacher was trained with another")
    assert "\n" not in message and f"set data.{field}: {theirs[field]}" in message
