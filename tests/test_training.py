"""The training tool end to end on a tiny synthetic MPII-format set: learn, checkpoint, resume, fail clearly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from datasets.synthetic import make_synthetic_mpii
from engine.cli import evaluate_main, train_main
from engine.cli import run_cli as guarded_main
from engine.experiment.config import load_config
from engine.training.log import read_log
from engine.training.loop import NonFiniteLossError
from engine.training.run import TrainingRun
from utils.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_mpii(tmp_path_factory.mktemp("tiny_mpii"), num_train=24, num_valid=8, image_size=64)


@pytest.fixture(scope="module")
def straight_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(config, run folder)`` of one uninterrupted 3-epoch run, trained once for the module's tests.

    The tests compare their interrupted, resumed and evaluated runs with it; none of them changes it."""
    folder = tmp_path_factory.mktemp("straight")
    config_path = write_config(folder, tiny_root, epochs=3)
    TrainingRun(load_config(config_path), folder / "run").fit(log=lambda _: None)
    return config_path, folder / "run"


def write_config(folder: Path, root: Path, epochs: int = 3, **model: object) -> Path:
    """A tiny OKDHP experiment (two branches, 16 features) on 64x64 inputs that trains in a second an epoch."""
    section = {
        "name": "okdhp_hourglass", "num_joints": 16, "num_features": 16, "depth": 2,
        "shared_stacks": 1, "branch_stacks": [1, 1],
    }  # fmt: skip
    section.update(model)
    config = {
        "experiment": "tiny",
        "seed": 3,
        "model": section,
        "data": {"name": "mpii", "root": str(root), "input_size": [64, 64], "heatmap_size": [16, 16], "sigma": 1.0},
        "loss": {"name": "okdhp" if section["name"] == "okdhp_hourglass" else "mse"},
        "train": {
            "epochs": epochs, "batch_size": 4, "lr": 1e-3, "lr_steps": [2] if epochs > 2 else [],
        },
        "runtime": {"workers": 0, "deterministic": True, "device": "cpu"},
        "test": {"batch_size": 8},
    }  # fmt: skip
    if section["name"] == "okdhp_hourglass":
        config["loss"]["rampup_epochs"] = 2
    path = folder / f"tiny_{section['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


class InterruptAt:
    """Wraps a loss; raises at a given (epoch, iteration) to simulate a crash, or returns NaN there."""

    def __init__(self, loss, epoch: int, iteration: int, nan: bool = False) -> None:
        self.loss, self.epoch, self.iteration, self.nan, self.calls = loss, epoch, iteration, nan, 0

    def __call__(self, output, batch, epoch):
        terms = self.loss(output, batch, epoch=epoch)
        if epoch == self.epoch:
            if self.calls == self.iteration:
                if not self.nan:
                    raise KeyboardInterrupt
                terms["total"] = terms["total"] * float("nan")
            self.calls += 1
        return terms


def test_interrupted_and_resumed_run_equals_uninterrupted(
    straight_run: tuple[Path, Path], tmp_path: Path
) -> None:
    config_path, straight_folder = straight_run
    config = load_config(config_path)
    crashing = TrainingRun(config, tmp_path / "resumed")
    crashing.loss_fn = InterruptAt(crashing.loss_fn, epoch=1, iteration=2)
    with pytest.raises(KeyboardInterrupt):
        crashing.fit(log=lambda _: None)
    assert load_checkpoint(tmp_path / "resumed" / "last.pth")["epoch"] == 0
    TrainingRun(config, tmp_path / "resumed").fit(resume=True, log=lambda _: None)

    straight = load_checkpoint(straight_folder / "last.pth")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pth")
    assert straight["epoch"] == resumed["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [r["epoch"] for r in read_log(tmp_path / "resumed" / "log.jsonl")] == [0, 1, 2]
    for name in ("config.yaml", "best.pth", "deploy.pth", "curves.png"):
        assert (tmp_path / "resumed" / name).is_file(), name


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tiny_root, epochs=3))
    run = TrainingRun(config, tmp_path / "run")
    run.loss_fn = InterruptAt(run.loss_fn, epoch=1, iteration=1, nan=True)
    with pytest.raises(NonFiniteLossError, match=r"'total' became nan at epoch 1, iteration 1"):
        run.fit(log=lambda _: None)
    assert load_checkpoint(tmp_path / "run" / "last.pth")["epoch"] == 0


def test_deploy_checkpoint_is_the_best_branch_and_matches_its_score(
    straight_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path, trained = straight_run
    out = tmp_path / "run"
    shutil.copytree(trained, out)  # evaluate.py writes beside the checkpoint: the shared run stays as it is
    deploy = load_checkpoint(out / "deploy.pth")
    assert deploy["kind"] == "deploy" and deploy["model_config"]["name"] == "hourglass"
    assert deploy["model_config"]["num_stacks"] == 2  # one shared + one branch stack

    def evaluated(checkpoint: Path) -> tuple[dict, str]:
        capsys.readouterr()
        code = guarded_main(
            evaluate_main, ["--config", str(config_path), "--checkpoint", str(checkpoint), "--json"]
        )
        stdout, stderr = capsys.readouterr()
        assert code == 0, stderr
        return json.loads(stdout.strip().splitlines()[-1]), stdout

    # evaluate.py on the training checkpoint prints the same tables as the run's last validation
    last_val = read_log(out / "log.jsonl")[-1]["val"]
    tables, stdout = evaluated(out / "last.pth")
    assert tables.keys() == last_val.keys() == {"branch0", "branch1", "ensemble"}
    for head in tables:
        assert tables[head] == pytest.approx(last_val[head], abs=1e-9)
    assert "Head" in stdout and "Mean@0.1" in stdout

    # the deploy network alone scores what its head scored in the best epoch
    table, _ = evaluated(out / "deploy.pth")
    assert table["Mean"] == pytest.approx(deploy["metric"], abs=1e-9)
    assert (out / "eval_deploy" / "branch0" / "pred.mat").is_file()


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_with_workers(
    straight_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = straight_run[0]
    out = tmp_path / "run"
    command = [
        sys.executable, "train_mpii.py", "--config", str(config_path), "--output-dir", str(out),
        "--set", "runtime.workers=2",
    ]  # fmt: skip
    threads = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the resume's, in this process
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=threads
    )
    deadline = time.time() + 120
    while not (out / "last.pth").is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(out / "last.pth")["epoch"]
    assert killed_at < 2, "the run finished before it could be killed"

    capsys.readouterr()
    assert guarded_main(train_mpii_main, [*command[2:], "--resume"]) == 0  # the same main, in this process
    assert f"resumed from {out / 'last.pth'} at epoch {killed_at + 1}" in capsys.readouterr().out
    assert [r["epoch"] for r in read_log(out / "log.jsonl")] == [0, 1, 2]
    # ... and ends with the weights of the module's uninterrupted run (in-process, without workers).
    straight = load_checkpoint(straight_run[1] / "last.pth")["model"]
    resumed = load_checkpoint(out / "last.pth")["model"]
    assert all(torch.equal(value, resumed[key]) for key, value in straight.items())


def fails_in_process(capsys: pytest.CaptureFixture, main, *args: str, expect: str) -> None:
    """Run an entry point's main in this process as its script does; exit 2 with one 'error:' paragraph."""
    capsys.readouterr()
    assert guarded_main(main, list(args)) == 2
    stderr = capsys.readouterr().err
    last_line = stderr.strip().splitlines()[-1]  # progress bars may precede it
    assert last_line.startswith("error: ") and expect in last_line, stderr


def train_mpii_main(argv):
    return train_main("mpii", argv)


def test_user_errors_are_one_paragraph(
    tiny_root: Path, straight_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = write_config(tmp_path, tiny_root, epochs=1)
    # the script itself, once: exit status 2 and one paragraph, no traceback
    result = run_cli("train_mpii.py", "--config", str(config_path), "--set", "train.lrr=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith("error: ") and "did you mean 'lr'" in result.stderr
    )

    # the rest through the same main and error guard in this process (an exception would fail the test)
    missing = tmp_path / "nowhere"
    fails_in_process(
        capsys,
        train_mpii_main,
        "--config",
        str(config_path),
        "--data-root",
        str(missing),
        expect=str(missing),
    )
    corrupt_root = tmp_path / "corrupt"
    shutil.copytree(tiny_root, corrupt_root)
    victim = sorted((corrupt_root / "images").glob("train_*.jpg"))[5]
    victim.write_bytes(b"this is not a jpeg")
    for workers in ("0", "2"):
        fails_in_process(
            capsys, train_mpii_main, "--config", str(config_path), "--data-root", str(corrupt_root),
            "--set", f"runtime.workers={workers}", "--output-dir", str(tmp_path / f"out{workers}"),
            expect=str(victim),
        )  # fmt: skip

    # a checkpoint of an OKDHP model (the module's run) evaluated with a single-network config
    out = straight_run[1]
    other = write_config(tmp_path, tiny_root, name="hourglass", num_stacks=2)
    for key in ("shared_stacks", "branch_stacks"):
        text = yaml.safe_load(other.read_text())
        text["model"].pop(key, None)
        other.write_text(yaml.safe_dump(text))
    fails_in_process(
        capsys,
        evaluate_main,
        "--config",
        str(other),
        "--checkpoint",
        str(out / "last.pth"),
        expect="does not fit",
    )
    fails_in_process(
        capsys, evaluate_main, "--checkpoint", str(tmp_path / "none.pth"), expect="checkpoint not found"
    )


def test_a_run_missing_its_validation_ground_truth_stops_before_the_first_step(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Found at start-up, not at the first validation after a whole epoch with nothing saved."""
    root = tmp_path / "no_gt"
    shutil.copytree(tiny_root, root)
    (root / "annot" / "gt_valid.mat").unlink()
    config_path = write_config(tmp_path, root, epochs=1)
    out = tmp_path / "run"
    fails_in_process(
        capsys, train_mpii_main, "--config", str(config_path), "--output-dir", str(out),
        expect=f"Put HRNet's gt_valid.mat at {root.resolve() / 'annot' / 'gt_valid.mat'}",
    )  # fmt: skip
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_names_the_set(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fails_in_process(
        capsys, train_mpii_main, "--config", str(write_config(tmp_path, tiny_root, epochs=1)),
        "--set", "runtime.device=cuda", "--output-dir", str(tmp_path / "run"),
        expect="--set runtime.device=cuda: runtime.device: 'cuda' was requested but CUDA is not available",
    )  # fmt: skip


def test_released_mode_evaluates_selects_and_deploys_the_official_heads(
    tiny_root: Path, tmp_path: Path
) -> None:
    # 1 shared + 2 x 2 stacks: stacks [s0, b0s0, b0s1, b1s0, b1s1]; the released outputs[-2:] = b1s0, b1s1
    config = load_config(
        write_config(tmp_path, tiny_root, epochs=2, branch_stacks=[2, 2], released_indices=True)
    )
    TrainingRun(config, tmp_path / "run").fit(log=lambda _: None)
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert all(set(r["metric"]) == {"branch1_stack0", "branch1", "ensemble"} for r in log)
    best = load_checkpoint(tmp_path / "run" / "best.pth")
    assert best["best_head"] in {"branch1_stack0", "branch1"}  # selection among the official heads
    deploy = load_checkpoint(tmp_path / "run" / "deploy.pth")
    assert deploy["source_head"] == best["best_head"]
    assert deploy["model_config"]["num_stacks"] == (2 if best["best_head"] == "branch1_stack0" else 3)

    from models.registry import build_model

    model = build_model({**config.model, "num_joints": 16})
    network, section = model.deploy("branch1_stack0")
    assert section["num_stacks"] == 2 and len(network.path.stacks) == 2
    model.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(network.eval()(images).final, model(images).heads()["branch1_stack0"])


def test_a_tie_goes_to_the_later_epoch(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    import engine.training.run as training
    from datasets.base import EvalResult

    run = TrainingRun(load_config(write_config(tmp_path, tiny_root, epochs=2)), tmp_path / "run")
    scores = {"branch0": 50.0, "branch1": 50.0, "ensemble": 60.0}
    fixed = {name: EvalResult(table={"Mean": v}, metric=v, text="") for name, v in scores.items()}
    monkeypatch.setattr(training, "validate", lambda predictor, loader: fixed)
    run.folder.path.mkdir()
    for epoch in (0, 1):
        summary = run._validate(epoch, {"total": 1.0}, {}, log=lambda _: None)
    assert summary["head"] == "branch0"  # equal branches: the first in output order, as max() over the list
    assert run.best_epoch == 1 and load_checkpoint(tmp_path / "run" / "best.pth")["epoch"] == 1
