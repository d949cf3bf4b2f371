"""ODKD (losses/odkd.py, experiments/odkd): binarization, the loss against float64, the orderly schedule in a
real synthetic COCO run with frozen teachers, OCHuman evaluation of the distilled student, the senior
teacher's pieces (pose_mask loss, freeze_keypoints, --from hrnet) and every odkd yaml through model_summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from datasets.synthetic_coco import make_synthetic_coco
from engine.experiment.config import load_config
from engine.inference.evaluation import evaluate_checkpoint
from engine.training.log import read_log
from engine.training.run import TrainingRun
from engine.training.teachers import check_loss_teachers
from losses.odkd import ODKDLoss, binarize, restrict_to_mask
from losses.pose_mask import PoseMaskLoss
from models.output import PoseOutput
from models.registry import build_model
from tests.coco_check import pycocotools_stats
from tests.test_distiller import CountCalls
from tools.convert_checkpoint import main as convert_main
from tools.model_summary import main as summary_main
from tools.model_summary import read_config as read_summary_config
from tools.model_summary import read_loss, read_teachers
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import CheckpointError, ConfigError

REPO = Path(__file__).resolve().parents[1]
ODKD = REPO / "experiments" / "odkd"
ODKD_YAMLS = sorted(p for p in ODKD.glob("*.yaml") if not p.name.startswith("_"))
COCO_KEYS = {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}
TINY_SIZES = {"input_size": [48, 64], "heatmap_size": [12, 16], "sigma": 1.0}
TINY_HRNET = {"name": "hrnet", "width": 4, "stage_modules": [1, 1, 1], "stage_blocks": 1}
STUDENT = {"name": "hourglass", "num_stacks": 2, "num_features": 16, "depth": 2, "mask_head": True}
EPOCHS = 4  # PT in epochs 0-1, ST in epochs 2-3 (r = 0.5)


# ------------------------------------------------------------------------------------ binarization
def test_binarization_of_hand_made_maps() -> None:
    values = [-0.3, 0.0, 0.2, 0.4999, 0.5, 0.75, 1.0, 1.4]
    maps = torch.tensor(values).reshape(1, 2, 2, 2)
    hard = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]  # the edge 0.5 is kept: 1[H >= tau]
    soft = [0.0, 0.0, 0.0, 0.0, 0.5, 0.75, 1.0, 1.0]  # clipped first: 1.4 teaches 1.0
    assert binarize(maps, 0.5, "hard").flatten().tolist() == hard
    assert binarize(maps, 0.5, "soft").flatten().tolist() == soft
    assert binarize(maps, 0.5, "none") is maps
    # tau 0: a negative value is clipped to 0, which passes 0 >= 0; tau 1: only values >= 1 survive.
    assert binarize(maps, 0.0, "hard").flatten().tolist() == [1.0] * 8
    assert binarize(maps, 1.0, "soft").flatten().tolist() == [0.0] * 6 + [1.0, 1.0]
    assert binarize(maps.double(), 0.5, "hard").dtype == torch.float64
    with pytest.raises(ConfigError, match="loss.binarize"):
        binarize(maps, 0.5, "round")


def test_restriction_to_the_teacher_mask() -> None:
    heatmaps = torch.full((1, 2, 1, 3), 0.75)
    logits = torch.tensor([-2.0, 0.0, 3.0]).reshape(1, 1, 1, 3)  # probabilities 0.12, 0.5 (edge), 0.95
    assert restrict_to_mask(heatmaps, logits, "binary", 0.5)[0, :, 0].tolist() == [[0.0, 0.75, 0.75]] * 2
    expected = (0.75 * torch.sigmoid(logits)).reshape(3).tolist()
    assert restrict_to_mask(heatmaps, logits, "sigmoid")[0, 1, 0].tolist() == pytest.approx(expected)
    assert restrict_to_mask(heatmaps, logits, "none") is heatmaps


# --------------------------------------------------------------------------- the loss against float64
def reference_joints_mse(output: np.ndarray, target: np.ndarray, weight: np.ndarray) -> float:
    """HRNet's JointsMSELoss in float64, joint by joint."""
    per_joint = []
    for j in range(output.shape[1]):
        w = weight[:, j].reshape(-1, 1, 1)
        per_joint.append(0.5 * np.mean((output[:, j] * w - target[:, j] * w) ** 2))
    return float(np.mean(per_joint))


def reference_binarize(maps: np.ndarray, tau: float, mode: str) -> np.ndarray:
    clipped = np.clip(maps, 0.0, 1.0)
    return (clipped >= tau).astype(np.float64) if mode == "hard" else clipped * (clipped >= tau)


def reference_kd(stacks: list[np.ndarray], soft_target: np.ndarray, weight: np.ndarray) -> float:
    """The distillation term: a labelled joint whose soft target has no value above 0 gets weight 0."""
    present = (soft_target.reshape(*soft_target.shape[:2], -1).max(axis=2) > 0).astype(np.float64)
    kd_weight = weight.reshape(present.shape) * present
    return sum(reference_joints_mse(a, soft_target, kd_weight) for a in stacks)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reference_bce(logits: np.ndarray, target: np.ndarray) -> float:
    p = sigmoid(logits)
    return float(np.mean(-(target * np.log(p) + (1.0 - target) * np.log(1.0 - p))))


@pytest.fixture
def hand_made() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)

    def maps(*shape: int, scale: float = 0.6, shift: float = 0.4) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale + shift

    return {
        "stacks": [maps(2, 3, 5, 4) for _ in range(2)],  # a two-stack student: both stacks supervised
        "target": torch.rand(2, 3, 5, 4, generator=generator, dtype=torch.float64),
        "weight": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)[..., None],
        "pt": maps(2, 3, 5, 4),
        "st": maps(2, 3, 5, 4),
        "st_mask": maps(2, 1, 5, 4, scale=2.0, shift=0.0),
        "student_mask": maps(2, 1, 5, 4, scale=2.0, shift=0.0),
    }


def student_output(data: dict, teachers: dict[str, PoseOutput], with_mask: bool = True) -> PoseOutput:
    stacks = data["stacks"]
    mask = data["student_mask"] if with_mask else None
    return PoseOutput(stacks=stacks, branches=[stacks[-1]], mask=mask, teachers=teachers)


def teacher(final: torch.Tensor, mask: torch.Tensor | None = None) -> PoseOutput:
    return PoseOutput(stacks=[final * 2.0, final], branches=[final], mask=mask)  # only the final teaches


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_odkd_loss_in_the_primary_teacher_phase_equals_float64(hand_made: dict, mode: str) -> None:
    loss = ODKDLoss(lambda_kd=0.7, tau=0.5, binarize=mode, mu=0.3)
    batch = {"target": hand_made["target"], "target_weight": hand_made["weight"]}
    terms = loss(student_output(hand_made, {"pt": teacher(hand_made["pt"])}), batch)
    arrays = [s.numpy() for s in hand_made["stacks"]]
    target, weight = hand_made["target"].numpy(), hand_made["weight"].numpy()
    soft_target = reference_binarize(hand_made["pt"].numpy(), 0.5, mode)
    gt = sum(reference_joints_mse(a, target, weight) for a in arrays)
    kd = reference_kd(arrays, soft_target, weight)
    assert terms["mse"].item() == pytest.approx(gt, rel=1e-12)
    assert terms["kd_pt"].item() == pytest.approx(kd, rel=1e-12)
    assert terms["kd_st"].item() == 0.0 and terms["mask_kd"].item() == 0.0
    assert terms["total"].item() == pytest.approx(gt + 0.7 * kd, rel=1e-12)
    assert {"mse/stack0", "mse/stack1", "kd_pt/stack0", "kd_pt/stack1"} <= set(terms)


@pytest.mark.parametrize(
    ("mask_mode", "binarize_gt"), [("binary", False), ("sigmoid", True), ("none", False)]
)
def test_odkd_loss_in_the_senior_teacher_phase_equals_float64(
    hand_made: dict, mask_mode: str, binarize_gt: bool
) -> None:
    loss = ODKDLoss(
        lambda_kd=0.7, tau=0.4, binarize="hard", binarize_gt=binarize_gt, mu=0.3, mask_mode=mask_mode
    )
    batch = {"target": hand_made["target"], "target_weight": hand_made["weight"]}
    senior = teacher(hand_made["st"], hand_made["st_mask"])
    terms = loss(student_output(hand_made, {"st": senior}), batch)

    arrays = [s.numpy() for s in hand_made["stacks"]]
    weight = hand_made["weight"].numpy()
    target = hand_made["target"].numpy()
    target = reference_binarize(target, 0.4, "hard") if binarize_gt else target
    mask_probability = sigmoid(hand_made["st_mask"].numpy())
    restriction = {
        "binary": (mask_probability >= 0.5).astype(np.float64),
        "sigmoid": mask_probability,
        "none": np.ones_like(mask_probability),
    }[mask_mode]
    soft_target = reference_binarize(hand_made["st"].numpy() * restriction, 0.4, "hard")
    gt = sum(reference_joints_mse(a, target, weight) for a in arrays)
    kd = reference_kd(arrays, soft_target, weight)
    bce = reference_bce(hand_made["student_mask"].numpy(), mask_probability)
    assert terms["mse"].item() == pytest.approx(gt, rel=1e-12)
    assert terms["kd_st"].item() == pytest.approx(kd, rel=1e-12)
    assert terms["kd_pt"].item() == 0.0
    assert terms["mask_kd"].item() == pytest.approx(bce, rel=1e-12)
    assert terms["total"].item() == pytest.approx(gt + 0.7 * kd + 0.3 * bce, rel=1e-12)


def test_zero_weight_joints_and_students_without_a_mask_head(hand_made: dict) -> None:
    batch = {"target": hand_made["target"], "target_weight": torch.zeros(2, 3, 1, dtype=torch.float64)}
    output = student_output(
        hand_made, {"st": teacher(hand_made["st"], hand_made["st_mask"])}, with_mask=False
    )
    terms = ODKDLoss()(output, batch)
    assert (
        terms["mse"].item()
        == terms["kd_st"].item()
        == terms["mask_kd"].item()
        == terms["total"].item()
        == 0.0
    )
    # Both teachers at once (the 'mixed' ablation): both heatmap terms count.
    both = {"pt": teacher(hand_made["pt"]), "st": teacher(hand_made["st"], hand_made["st_mask"])}
    batch["target_weight"] = hand_made["weight"]
    terms = ODKDLoss(lambda_kd=0.5, mu=0.0)(student_output(hand_made, both), batch)
    assert terms["kd_pt"].item() > 0 and terms["kd_st"].item() > 0
    expected = terms["mse"] + 0.5 * (terms["kd_pt"] + terms["kd_st"])
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-12)


def peaked_maps(peaks: list[list[float]], height: int = 5, width: int = 4) -> torch.Tensor:
    """(B, J, h, w) float64 maps: a 3x3 bump around pixel (2, 1) whose centre is ``peaks[b][j]`` and whose
    other 8 pixels are 0.4 of it; 0 elsewhere."""
    maps = torch.zeros(len(peaks), len(peaks[0]), height, width, dtype=torch.float64)
    for b, row in enumerate(peaks):
        for j, peak in enumerate(row):
            maps[b, j, 1:4, 0:3] = 0.4 * peak
            maps[b, j, 2, 1] = peak
    return maps


def test_a_labelled_joint_whose_teacher_peak_is_below_tau_teaches_nothing(hand_made: dict) -> None:
    """Joint 1 of sample 0 is labelled, but the primary teacher's peak there is 0.4 < tau = 0.5: hard
    binarization leaves its map empty. It must add nothing to the distillation term (not 'no joint here'),
    while its ground-truth term is unchanged."""
    weight = torch.ones(2, 3, 1, dtype=torch.float64)
    weight[1, 2] = 0.0  # an unlabelled joint, for the count
    batch = {"target": hand_made["target"], "target_weight": weight}
    pt = peaked_maps([[0.9, 0.4, 1.0], [0.8, 0.7, 0.95]])
    loss = ODKDLoss(tau=0.5, binarize="hard")
    stacks = [s.clone().requires_grad_(True) for s in hand_made["stacks"]]
    terms = loss(student_output({**hand_made, "stacks": stacks}, {"pt": teacher(pt)}), batch)

    arrays = [s.detach().numpy() for s in stacks]
    target, w = hand_made["target"].numpy(), weight.numpy()
    gt = sum(reference_joints_mse(a, target, w) for a in arrays)  # every labelled joint, as without a teacher
    assert terms["mse"].item() == pytest.approx(gt, rel=1e-12)
    kd_weight = w.copy()
    kd_weight[0, 1] = 0.0
    soft = (pt.numpy() >= 0.5).astype(np.float64)
    assert not soft[0, 1].any()  # the processed map is empty
    kd = sum(reference_joints_mse(a, soft, kd_weight) for a in arrays)
    assert terms["kd_pt"].item() == pytest.approx(kd, rel=1e-12)
    assert terms["count/kd_pt_empty"].item() == 1 and terms["count/kd_st_empty"].item() == 0
    assert terms["count/labelled_joints"].item() == 5
    # The joint's student maps get no gradient from the distillation term, and the ground-truth term's gradient.
    (kd_grad,) = torch.autograd.grad(terms["kd_pt"], stacks[0], retain_graph=True)
    (gt_grad,) = torch.autograd.grad(terms["mse"], stacks[0])
    assert torch.count_nonzero(kd_grad[0, 1]) == 0 and torch.count_nonzero(kd_grad[0, 0]) > 0
    assert torch.count_nonzero(gt_grad[0, 1]) > 0
    # With the threshold relative to the map's peak (0.4 * 0.5 = 0.2), the weak joint teaches its bump.
    relative = ODKDLoss(tau=0.5, tau_mode="relative")(student_output(hand_made, {"pt": teacher(pt)}), batch)
    assert relative["count/kd_pt_empty"].item() == 0
    soft_relative = np.stack([(m >= 0.5 * m.max(axis=(1, 2), keepdims=True)) for m in pt.numpy()]).astype(
        float
    )
    assert relative["kd_pt"].item() == pytest.approx(reference_kd(arrays, soft_relative, w), rel=1e-12)


def test_a_joint_outside_the_senior_teachers_mask_teaches_nothing_in_either_tau_mode(hand_made: dict) -> None:
    """Restriction first: a bump the ST's mask removes leaves an empty map (absolute and relative alike); a
    bump whose peak the mask removes keeps its tail (0.4 < tau) only with the relative threshold."""
    batch = {"target": hand_made["target"], "target_weight": torch.ones(2, 3, 1, dtype=torch.float64)}
    st = peaked_maps([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    logits = torch.full((2, 1, 5, 4), 5.0, dtype=torch.float64)
    logits[0, :, 1:4, 0:3] = -5.0  # sample 0: the whole bump outside the mask: every joint's map is empty
    logits[1, :, 2, 0:2] = -5.0  # sample 1: the peak and its left neighbour outside, the rest of the bump in
    senior = teacher(st, logits)
    for tau_mode, empty in (("absolute", 6), ("relative", 3)):
        terms = ODKDLoss(tau=0.5, tau_mode=tau_mode)(student_output(hand_made, {"st": senior}), batch)
        assert terms["count/kd_st_empty"].item() == empty, tau_mode
        assert terms["mse"].item() == pytest.approx(
            sum(
                reference_joints_mse(a.numpy(), batch["target"].numpy(), np.ones((2, 3, 1)))
                for a in hand_made["stacks"]
            ),
            rel=1e-12,
        )


def test_relative_threshold_on_hand_made_maps() -> None:
    maps = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0], [-0.2, 0.5, 2.0, 1.0]]).reshape(
        1, 3, 2, 2
    )
    hard = binarize(maps, 0.5, "hard", "relative").reshape(3, 4).tolist()
    assert hard == [
        [0.0, 1.0, 1.0, 1.0],
        [0.0] * 4,
        [0.0, 1.0, 1.0, 1.0],
    ]  # t = 0.2; empty stays empty; 1.0 clip
    soft = binarize(maps, 0.5, "soft", "relative").flatten().tolist()
    assert soft == pytest.approx([0.0, 0.2, 0.3, 0.4] + [0.0] * 4 + [0.0, 0.5, 1.0, 1.0])
    assert binarize(maps, 0.5, "none", "relative") is maps
    with pytest.raises(ConfigError, match="loss.tau_mode"):
        ODKDLoss(tau_mode="peak")


def test_an_epoch_sums_the_counts_and_averages_the_loss_terms() -> None:
    """train_one_epoch: ``count/...`` terms are summed over the batches (and processes), not averaged per
    sample like the loss terms; three batches of 2, 1 and 2 samples, one empty joint per sample."""
    from engine.runtime.execution import Runtime
    from engine.training.loop import train_one_epoch

    class Student(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, image: torch.Tensor) -> PoseOutput:
            maps = image[:, :1].repeat(1, 2, 1, 1) * self.scale  # two joints
            teacher_maps = torch.stack([torch.ones_like(maps[:, 0]), torch.zeros_like(maps[:, 0])], dim=1)
            return PoseOutput(stacks=[maps], branches=[maps], teachers={"pt": teacher(teacher_maps)})

    def batch(size: int) -> dict[str, torch.Tensor]:
        return {
            "image": torch.ones(size, 3, 4, 4),
            "target": torch.zeros(size, 2, 4, 4),
            "target_weight": torch.ones(size, 2, 1),
        }

    model = Student()
    loader = [batch(2), batch(1), batch(2)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # no step changes the terms
    terms = train_one_epoch(model, ODKDLoss(), loader, optimizer, 0, Runtime(device=torch.device("cpu")))
    assert terms["count/labelled_joints"] == 10 and terms["count/kd_pt_empty"] == 5
    assert terms["count/kd_st_empty"] == 0
    # per sample: mse = 0.5 * mean(0.5^2) = 0.125; the teacher's joint 0 (all ones) and joint 1 (empty, weight 0)
    assert terms["mse"] == pytest.approx(0.125) and terms["kd_pt"] == pytest.approx(0.5 * 0.25 / 2)


def test_odkd_loss_refusals(hand_made: dict) -> None:
    with pytest.raises(ConfigError, match="loss.binarize must be one of hard, soft, none"):
        ODKDLoss(binarize="yes")
    with pytest.raises(ConfigError, match="loss.mask_mode"):
        ODKDLoss(mask_mode="soft")
    with pytest.raises(ConfigError, match="loss.tau"):
        ODKDLoss(tau=1.5)
    with pytest.raises(ConfigError, match="loss.mu"):
        ODKDLoss(mu=-1.0)
    with pytest.raises(ConfigError, match="both 'pt'"):
        ODKDLoss(primary_teacher="pt", senior_teacher="pt")
    batch = {"target": hand_made["target"], "target_weight": hand_made["weight"]}
    maskless = student_output(hand_made, {"st": teacher(hand_made["st"])})
    with pytest.raises(ConfigError, match="senior teacher 'st' has no mask head"):
        ODKDLoss()(maskless, batch)
    terms = ODKDLoss(mask_mode="none", mu=0.0)(maskless, batch)  # the 'no mask' ablation runs without one
    assert terms["kd_st"].item() > 0


def test_pose_mask_loss_equals_float64(hand_made: dict) -> None:
    mask = torch.rand(2, 1, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    batch = {"target": hand_made["target"], "target_weight": hand_made["weight"], "mask": mask}
    terms = PoseMaskLoss(mu=0.25)(student_output(hand_made, {}), batch)
    arrays = [s.numpy() for s in hand_made["stacks"]]
    gt = sum(
        reference_joints_mse(a, hand_made["target"].numpy(), hand_made["weight"].numpy()) for a in arrays
    )
    bce = reference_bce(hand_made["student_mask"].numpy(), mask.numpy())
    assert terms["mask"].item() == pytest.approx(bce, rel=1e-12)
    assert terms["total"].item() == pytest.approx(gt + 0.25 * bce, rel=1e-12)
    assert "mask" in PoseMaskLoss.batch_keys
    with pytest.raises(ConfigError, match="mask_head: true"):
        PoseMaskLoss()(student_output(hand_made, {}, with_mask=False), batch)


# ------------------------------------------------------------ a real run with the orderly schedule
def write_teacher(path: Path, section: dict, seed: int) -> Path:
    """A tiny teacher as this project writes deploy.pth: the network's weights and its model section."""
    torch.manual_seed(seed)
    network = build_model({**section, "num_joints": 17})
    with torch.no_grad():  # heatmaps around 0.5 so that binarization keeps some pixels and drops others
        network.final_layer.bias.uniform_(0.2, 0.8)
    save_checkpoint({"kind": "deploy", "model": network.state_dict(), "model_config": section}, path)
    return path


@pytest.fixture(scope="module")
def odkd_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train a tiny hourglass student with ODKD (tiny HRNet PT, then ST with a mask head) on synthetic COCO."""
    folder = tmp_path_factory.mktemp("odkd_run")
    root = make_synthetic_coco(folder / "coco", num_train=12, num_valid=4, image_size=(128, 96))
    pt = write_teacher(folder / "pt.pth", TINY_HRNET, seed=1)
    st = write_teacher(folder / "st.pth", {**TINY_HRNET, "mask_head": True, "deploy_mask_head": True}, seed=2)
    config_path = folder / "tiny_odkd.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "experiment": "tiny_odkd",
                "base": str(ODKD / "hrnet_w16_odkd.yaml"),
                "model": {"name": "hourglass", **STUDENT},
                "data": {"root": str(root), "use_gt_boxes": True, **TINY_SIZES},  # no detections
                "teachers": {"pt": {"checkpoint": str(pt)}, "st": {"checkpoint": str(st)}},
                "train": {
                    "epochs": EPOCHS,
                    "batch_size": 8,
                    "lr": 2e-3,
                    "lr_steps": [],
                    "val_every": EPOCHS,
                },
                "runtime": {"workers": 0, "device": "cpu"},
                "test": {"batch_size": 8},
            }
        )
    )
    config = load_config(config_path)
    run = TrainingRun(config, folder / "run")
    teachers = {name: t.network for name, t in run.trainee.teachers.items()}
    before = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in teachers.items()}
    counters = {name: CountCalls() for name in teachers}
    for name, network in teachers.items():
        network.register_forward_pre_hook(counters[name])
    original_set_epoch = run.trainee.set_epoch

    def set_epoch(epoch: int) -> list[str]:
        for counter in counters.values():
            counter.epoch = epoch
        return original_set_epoch(epoch)

    run.trainee.set_epoch = set_epoch
    lines: list[str] = []
    summary = run.fit(log=lines.append)
    return {
        "run": run,
        "folder": folder / "run",
        "summary": summary,
        "lines": lines,
        "counters": counters,
        "before": before,
        "teachers": teachers,
    }


def test_a_senior_teacher_without_a_mask_head_stops_the_run_before_its_first_step(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Found at start-up, not when the senior teacher's epochs begin (epoch 105 of 210 in the real configs)."""
    from engine.cli import train_main
    from tests.test_training import fails_in_process

    root = make_synthetic_coco(tmp_path / "coco", num_train=2, num_valid=2, image_size=(96, 72))
    pt = write_teacher(tmp_path / "pt.pth", TINY_HRNET, seed=1)
    st = write_teacher(tmp_path / "st.pth", TINY_HRNET, seed=2)  # a network without a mask head
    config_path = tmp_path / "odkd_st_without_mask.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "base": str(ODKD / "hrnet_w16_odkd.yaml"),
                "model": {"name": "hourglass", **STUDENT},
                "data": {"root": str(root), "use_gt_boxes": True, **TINY_SIZES},  # no detections
                "teachers": {"pt": {"checkpoint": str(pt)}, "st": {"checkpoint": str(st)}},
                "runtime": {"workers": 0, "device": "cpu"},
            }
        )
    )
    fails_in_process(
        capsys, lambda argv: train_main("coco", argv), "--config", str(config_path),
        "--output-dir", str(tmp_path / "run"),
        expect=f"teachers.st.checkpoint ({st}): the senior teacher 'st' has no mask head, which loss.mask_mode: "
        "binary needs",
    )  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_schedule_runs_only_the_active_teacher(odkd_run: dict) -> None:
    counters, lines = odkd_run["counters"], odkd_run["lines"]
    # 12 images, more persons, batch 8: at least 2 iterations per epoch; r = 0.5 of 4 epochs switches at 2.
    iterations = counters["pt"].calls[0]
    assert iterations >= 2
    assert counters["pt"].calls == {0: iterations, 1: iterations}  # never in validation either
    assert counters["st"].calls == {2: iterations, 3: iterations}
    switches = [line for line in lines if "teachers in use" in line]
    assert switches == ["epoch 0: teachers in use: pt", "epoch 2: teachers in use: st"]
    log = read_log(odkd_run["folder"] / "log.jsonl")
    assert [record["teachers"] for record in log] == [["pt"]] * 2 + [["st"]] * 2
    for record in log[:2]:
        assert record["train"]["kd_pt"] > 0 and record["train"]["kd_st"] == 0 == record["train"]["mask_kd"]
    for record in log[2:]:
        assert (
            record["train"]["kd_st"] > 0 and record["train"]["mask_kd"] > 0 and record["train"]["kd_pt"] == 0
        )
    assert {"mse", "kd_pt", "kd_st", "mask_kd", "total", "mse/stack1", "kd_st/stack1"} <= set(
        log[-1]["train"]
    )


@pytest.mark.slow
def test_teachers_get_no_gradient_and_stay_unchanged(odkd_run: dict) -> None:
    run = odkd_run["run"]
    optimised = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    for name, network in odkd_run["teachers"].items():
        assert not network.training
        for parameter in network.parameters():
            assert not parameter.requires_grad and parameter.grad is None
            assert id(parameter) not in optimised
        for key, value in network.state_dict().items():  # parameters and BN statistics, bit for bit
            assert torch.equal(value, odkd_run["before"][name][key]), (name, key)
    deploy = load_checkpoint(odkd_run["folder"] / "deploy.pth")
    assert not any(key.startswith("mask_layer.") for key in deploy["model"])  # the auxiliary head is dropped
    assert "mask_head" not in deploy["model_config"]


@pytest.mark.slow
def test_short_odkd_run_lowers_the_loss_and_scores_coco_ap(odkd_run: dict) -> None:
    log = read_log(odkd_run["folder"] / "log.jsonl")
    assert log[-1]["train"]["mse"] < log[0]["train"]["mse"]  # ground-truth term, comparable across phases
    assert log[1]["train"]["total"] < log[0]["train"]["total"]  # within the PT phase
    assert log[3]["train"]["total"] < log[2]["train"]["total"]  # within the ST phase
    for result in odkd_run["summary"]["results"].values():
        assert set(result.table) == COCO_KEYS
        assert result.metric == result.table["AP"]  # selection reads the AP; learning: test_learning.py


@pytest.mark.slow
def test_distilled_student_evaluates_on_the_real_ochuman_sample(
    odkd_run: dict, ochuman_data: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = odkd_run["folder"]
    config_path = folder.parent / "ochuman.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "experiment": "tiny_ochuman",
                "base": str(ODKD / "ochuman_val.yaml"),
                "data": {"root": str(ochuman_data), "ann_file": "annotations/sample.json", **TINY_SIZES},
                "runtime": {"workers": 0, "device": "cpu"},
            }
        )
    )
    table = evaluate_checkpoint(folder / "deploy.pth", config_path, output_dir=folder / "eval_ochuman")
    results = folder / "eval_ochuman" / "branch0" / "keypoints_results.json"
    assert table == pytest.approx(pycocotools_stats(ochuman_data / "annotations" / "sample.json", results))
    printed = capsys.readouterr().out
    assert "deploy.pth (hourglass)" in printed and "AP" in printed


# ------------------------------------------------------------------ configs, the senior teacher's pieces
def test_the_orderly_schedule_and_the_ablations_in_the_yamls() -> None:
    config = load_config(ODKD / "hrnet_w16_odkd.yaml")
    assert (config.teachers["pt"].start, config.teachers["pt"].end) == (0.0, 0.5)
    assert (config.teachers["st"].start, config.teachers["st"].end) == (0.5, 1.0)
    assert config.teachers["pt"].checkpoint == "output/odkd_pt_hrnet_w32/deploy.pth"
    assert config.teachers["st"].experiment == "odkd/st_hrnet_w48_mask"
    twin = load_config(ODKD / "hrnet_w16_baseline.yaml")
    assert twin.loss == {"name": "mse"} and not twin.teachers
    assert (twin.train, twin.data, twin.test) == (config.train, config.data, config.test)
    mixed = load_config(ODKD / "hrnet_w16_odkd_mixed.yaml")
    assert all((t.start, t.end) == (0.0, 1.0) for t in mixed.teachers.values())
    check_loss_teachers(load_config(ODKD / "hrnet_w16_odkd_pt_only.yaml"))  # senior_teacher: null

    # The loss fills a teacher that gives neither start nor end: the order needs both teachers; a lone teacher
    # teaches the whole run; a teacher that gives one of the two gets 0 or 1 for the other.
    def windows(*changes: str) -> dict[str, tuple[float, float]]:
        changed = load_config(ODKD / "hrnet_w16_odkd.yaml", list(changes))
        return {name: (t.start, t.end) for name, t in changed.teachers.items()}

    assert windows("loss.senior_teacher=null") == {"pt": (0.0, 1.0), "st": (0.0, 1.0)}
    assert windows("teachers.pt.end=0.25") == {"pt": (0.0, 0.25), "st": (0.5, 1.0)}
    assert windows("teachers.st.start=0.75") == {"pt": (0.0, 0.5), "st": (0.75, 1.0)}
    assert windows("teachers.st.end=0.25") == {"pt": (0.0, 0.5), "st": (0.0, 0.25)}
    with pytest.raises(ConfigError, match="need 0 <= start < end <= 1"):
        windows("teachers.st.start=0.6", "teachers.st.end=0.4")

    config.teachers.pop("st")
    with pytest.raises(ConfigError, match="learns from the teacher"):
        check_loss_teachers(config)
    senior = load_config(ODKD / "st_hrnet_w48_mask.yaml")
    assert senior.data["with_mask"] and senior.loss["name"] == "pose_mask"


def config_differences(old: object, new: object, prefix: str = "") -> set[str]:
    """Dotted keys where two plain-data configs differ; a key present on one side only is named itself."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return set() if old == new else {prefix}
    keys = set()
    for key in set(old) | set(new):
        where = f"{prefix}.{key}" if prefix else str(key)
        keys |= {where} if (key in old) != (key in new) else config_differences(old[key], new[key], where)
    return keys


def resolved_config(experiment: str) -> dict:
    """An experiment's config as plain data with its loss's defaults filled in (what the run uses)."""
    from engine.experiment.catalogue import resolve_config_path
    from losses.registry import LOSSES

    values = load_config(resolve_config_path(experiment)).to_dict()
    values["loss"] = {"name": values["loss"]["name"], **LOSSES.resolved(values["loss"])}
    return {k: v for k, v in values.items() if k not in ("experiment", "description")}


def test_each_ablation_differs_from_odkd_in_exactly_the_keys_its_table_row_states() -> None:
    from engine.tables.spec import load_table

    table = load_table("odkd_ablations")
    ablations = [row for row in table.rows if row.ablation_of]
    assert {row.experiment for row in ablations} == {
        f"odkd/{p.stem}"
        for p in ODKD_YAMLS
        if p.stem.startswith("hrnet_w16_odkd_") and p.stem != "hrnet_w16_odkd_published"
    }
    for row in ablations:
        reference = resolved_config(row.ablation_of)
        assert config_differences(reference, resolved_config(row.experiment)) == set(row.changes), row.label
    # No order at the same weight: lambda_kd x (share of epochs a teacher teaches) and mu x (share of epochs
    # with the mask term: the senior teacher's) are ODKD's.
    mixed, odkd = (resolved_config(f"odkd/{name}") for name in ("hrnet_w16_odkd_mixed", "hrnet_w16_odkd"))
    for config in (mixed, odkd):
        spans = {name: t["end"] - t["start"] for name, t in config["teachers"].items()}
        config["weights"] = [
            config["loss"]["lambda_kd"] * spans["pt"],
            config["loss"]["lambda_kd"] * spans["st"],
        ]
        config["weights"].append(config["loss"]["mu"] * spans["st"])
    assert mixed["weights"] == pytest.approx(odkd["weights"]) and odkd["weights"] == pytest.approx(
        [0.5, 0.5, 0.005]
    )


def docs_defaults() -> dict[str, object]:
    """The defaults table of docs/odkd.md: {key: value}, the value read as yaml (``1.0``, ``hard``, ``false``)."""
    text = (REPO / "docs" / "odkd.md").read_text()
    start = text.index("| key | default | meaning |")
    rows = text[start:].split("\n\n", 1)[0].splitlines()[2:]
    table = {}
    for row in rows:
        key, default = (cell.strip().strip("`") for cell in row.strip("|").split("|")[:2])
        table[key] = yaml.safe_load(default)
    return table


def test_the_docs_defaults_table_model_summary_and_the_loss_code_agree(capsys: pytest.CaptureFixture) -> None:
    """One source: the loss code (ODKDLoss's keyword defaults and ORDER_SPLIT). docs/odkd.md's table lists
    every one of them, and tools/model_summary.py prints them resolved for the headline ODKD config."""
    from losses.odkd import ORDER_SPLIT
    from losses.registry import LOSSES

    documented = docs_defaults()
    code = {f"loss.{key}": value for key, value in LOSSES.resolved({"name": "odkd"}).items()}
    code["r"] = ORDER_SPLIT
    assert documented == code
    raw = yaml.safe_load((ODKD / "_odkd_loss.yaml").read_text())
    assert raw["loss"] == {"name": "odkd"}  # the yaml repeats no default
    # The tool, as a user runs it, on the CPU demo's ODKD student (small teachers: counted in a second) and,
    # through the same reader, on the headline config.
    assert summary_main([str(ODKD / "demo_student_odkd.yaml"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for loss, teachers in (
        (summary["loss"], summary["teachers"]),
        (read_loss(ODKD / "hrnet_w16_odkd.yaml"), read_teachers(ODKD / "hrnet_w16_odkd.yaml")),
    ):
        assert {f"loss.{k}": v for k, v in loss.items() if k != "name"} == {
            k: v for k, v in documented.items() if k != "r"
        }
        windows = {name: (t["start"], t["end"]) for name, t in teachers.items()}
        assert windows == {"pt": (0.0, documented["r"]), "st": (documented["r"], 1.0)}


def test_the_target_tool_measures_a_hard_plateau_against_a_known_answer() -> None:
    """tools/odkd_targets.py on one joint on a pixel centre (heatmap pixel (20, 30), sigma 2): the Gaussian
    decodes exactly; the hard plateau decodes at its first raster pixel (-1, -2) plus a quarter pixel towards
    the plateau in x and y: |(-0.75, -1.75)| = 1.904. A mask that cuts off the plateau empties the ST's map."""
    from datasets.codec import HeatmapCodec
    from tools.odkd_targets import PerfectTeachers, measure

    codec = HeatmapCodec((192, 256), (48, 64), 2.0)
    joints = np.array([[20.0, 30.0], [10.0, 10.0]])
    target, weight = codec.encode(joints * 4.0, np.ones(2))
    logits = torch.full((1, 1, 64, 48), 9.0, dtype=torch.float64)
    logits[0, 0, 8:13, 8:13] = -9.0  # the second joint's plateau (d <= 2.35 px) lies outside the mask
    teachers = PerfectTeachers(torch.from_numpy(target)[None].double(), logits, weight.T > 0, joints[None])
    rows = {(row["variant"], row["teacher"]): row for row in measure(teachers, tau=0.5)}
    assert rows["gaussian (binarize: none)", "PT"]["mean_error"] == 0.0
    hard = rows["hard, absolute tau", "PT"]
    assert hard["mean_error"] == pytest.approx(np.hypot(0.75, 1.75)) and hard["empty"] == 0
    assert rows["hard, absolute tau", "ST in mask"]["empty"] == 1  # its tail (< 0.5) is all that is left
    assert rows["hard, relative tau", "ST in mask"]["empty"] == 0  # the tail survives, off the joint
    assert rows["hard, relative tau", "ST in mask"]["max_error"] >= 1.0


def test_freeze_keypoints_trains_the_mask_head_only() -> None:
    torch.set_num_threads(1)
    model = build_model({**TINY_HRNET, "mask_head": True, "freeze_keypoints": True})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "mask_layer.weight",
        "mask_layer.bias",
    }
    model.train()
    assert model.training and model.mask_layer.training and not model.layer1.training
    torch.manual_seed(0)
    output = model(torch.randn(2, 3, 64, 48))
    batch = {
        "target": torch.rand(2, 17, 16, 12),
        "target_weight": torch.ones(2, 17, 1),
        "mask": torch.rand(2, 1, 16, 12),
    }
    PoseMaskLoss()(output, batch)["total"].backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"mask_layer.weight", "mask_layer.bias"}  # BN statistics unchanged too
    section = model.deploy_section()
    assert section["mask_head"] is False and "freeze_keypoints" not in section
    kept = build_model({**TINY_HRNET, "mask_head": True, "deploy_mask_head": True}).deploy()[1]
    assert kept["mask_head"] is True
    with pytest.raises(ConfigError, match="needs mask_head: true"):
        build_model({**TINY_HRNET, "freeze_keypoints": True})


def test_published_hrnet_file_converts_with_the_mask_head_left_at_init(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    published = build_model(TINY_HRNET).eval()
    source = tmp_path / "pose_hrnet_tiny.pth"
    torch.save({f"module.{k}": v for k, v in published.state_dict().items()}, source)  # DataParallel keys
    config = tmp_path / "st.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base": str(ODKD / "st_hrnet_w48_mask.yaml"),
                "model": {k: v for k, v in TINY_HRNET.items() if k != "name"},
            }
        )
    )
    out = tmp_path / "st_init.pth"
    assert convert_main([str(source), str(out), "--from", "hrnet", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "mask_layer.weight, mask_layer.bias" in printed and "train.init_from" in printed
    state = load_checkpoint(out)
    assert state["converted_from"]["left_at_init"] == ["mask_layer.weight", "mask_layer.bias"]
    assert state["model_config"]["mask_head"] and state["model_config"]["deploy_mask_head"]
    masked = build_model(state["model_config"])
    masked.load_state_dict(state["model"])
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(masked.eval()(images).final, published(images).final)
    config.write_text(yaml.safe_dump({"base": str(ODKD / "st_hrnet_w48_mask.yaml"), "model": {"width": 8}}))
    other = tmp_path / "st_w8.pth"  # a new OUT: an existing one is refused before the model is checked
    assert convert_main([str(source), str(other), "--from", "hrnet", "--config", str(config)]) == 2
    assert "HRNet-W4 for 17 joints; the config builds HRNet-W8" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="does not look like an HRNet"):
        from engine.convert.hrnet import hrnet_architecture

        hrnet_architecture({"conv1.weight": torch.zeros(1)})


@pytest.mark.slow
def test_model_summary_json_on_every_odkd_yaml(capsys: pytest.CaptureFixture) -> None:
    """Every yaml goes through the tool's config reader; each distinct network is summarised once (--json)."""
    torch.set_num_threads(1)
    sections: dict[str, list[str]] = {}
    for path in ODKD_YAMLS:
        section, size = read_summary_config(path)
        assert size == ((96, 72) if path.name.startswith("demo_") else (256, 192)), (
            path.name
        )  # the CPU demo is small
        sections.setdefault(json.dumps(section, sort_keys=True), []).append(path)
    summaries = {}
    for paths in sections.values():
        assert summary_main([str(paths[0]), "--json"]) == 0, paths[0].name
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        summaries.update({path.stem: summary for path in paths})
    assert set(summaries) == {path.stem for path in ODKD_YAMLS}
    for student in ("hrnet_w16", "hg4_f128", "mobilenet_v2", "shufflenet_v2"):
        odkd, twin = summaries[f"{student}_odkd"], summaries[f"{student}_baseline"]
        assert odkd["deploy_params"] == twin["params"] == twin["deploy_params"]  # the mask head is dropped
        assert odkd["params"] > twin["params"]
    assert summaries["hrnet_w16_baseline"]["params"] == 7_445_889
    assert summaries["pt_hrnet_w32"]["params"] == 28_536_113
    senior = summaries["st_hrnet_w48_mask"]
    assert senior["deploy_params"] == senior["params"] == 63_595_745 + 49  # the ST keeps its mask head
