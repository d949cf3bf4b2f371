"""Trusted training data and run folders: augmentation with (persistent) workers, one run per folder, a lock."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.registry import build_codec, build_dataset
from datasets.synthetic import make_synthetic_mpii
from engine.experiment.config import load_config
from engine.inference.evaluation import evaluate_checkpoint
from engine.runtime.distributed import EpochShuffleSampler
from engine.training.run import TrainingRun
from tests.test_training import fails_in_process, train_mpii_main, write_config
from utils.checkpoint import load_checkpoint
from utils.run_folder import RunFolderError, note_follow_up


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_mpii(
        tmp_path_factory.mktemp("folder_mpii"), num_train=12, num_valid=4, image_size=64
    )


def fingerprints(folder: Path) -> dict[str, str]:
    """sha256 and mtime of every file under a folder."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        + f"@{path.stat().st_mtime_ns}"
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def test_persistent_workers_draw_each_epochs_augmentation(tiny_root: Path, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tiny_root))
    codec = build_codec(config.data)
    dataset = build_dataset(config.data, split="train", train=True, seed=5, codec=codec)
    sampler = EpochShuffleSampler(len(dataset), seed=5)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=2, persistent_workers=True)
    draws = {}
    for epoch in (0, 1, 2):
        sampler.set_epoch(epoch)  # the dataset's own set_epoch is NOT called: workers must not need it
        for batch in loader:
            for i, index in enumerate(batch["meta"]["index"].tolist()):
                draws[epoch, index] = (
                    float(batch["meta"]["rotation"][i]),
                    float(batch["meta"]["scale"][i][0]),
                )
    for index in range(len(dataset)):
        # in a worker: epoch 1's draw is not epoch 0's, and every draw is the in-process one of (index, epoch)
        assert draws[0, index] != draws[1, index] or draws[1, index] != draws[2, index]
        for epoch in (0, 1, 2):
            meta = dataset[(index, epoch)]["meta"]
            assert draws[epoch, index] == (float(meta["rotation"]), float(meta["scale"][0]))
    rotations = np.array([[draws[e, i][0] for i in range(len(dataset))] for e in (0, 1, 2)])
    assert not np.array_equal(rotations[0], rotations[1])


def test_worker_count_does_not_change_a_deterministic_run(tiny_root: Path, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tiny_root, epochs=2))
    weights = []
    for workers in (0, 2):
        TrainingRun(config, tmp_path / f"w{workers}", workers=workers).fit(log=lambda _: None)
        weights.append(load_checkpoint(tmp_path / f"w{workers}" / "last.pth")["model"])
    assert all(torch.equal(value, weights[1][key]) for key, value in weights[0].items())


def test_a_second_fresh_run_into_a_run_folder_is_refused_and_changes_nothing(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = write_config(tmp_path, tiny_root, epochs=1)
    out = tmp_path / "run"
    TrainingRun(load_config(config_path), out).fit(log=lambda _: None)
    before = fingerprints(out)
    for expect in ("already holds a run", "--resume", "--overwrite"):
        fails_in_process(
            capsys, train_mpii_main, "--config", str(config_path), "--output-dir", str(out), expect=expect
        )
    assert fingerprints(out) == before
    # what was made from the run in its folder goes with it on --overwrite; a file of the user's stays
    evaluate_checkpoint(checkpoint=out / "deploy.pth", workers=0)  # eval_deploy/ beside it
    for name in ("pose.onnx", "pose.json"):  # as tools/export.py writes them
        note_follow_up(out / name)
        (out / name).write_text("{}")
    (out / "notes.txt").write_text("mine")
    # --overwrite starts over: one run in the log, not two
    with pytest.raises(RunFolderError, match="already holds a run"):
        TrainingRun(load_config(config_path), out).fit(log=lambda _: None)
    TrainingRun(load_config(config_path), out).fit(overwrite=True, log=lambda _: None)
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    assert not any((out / name).exists() for name in ("eval_deploy", "pose.onnx", "pose.json", ".follow_ups"))
    assert (out / "notes.txt").read_text() == "mine"


HOLD_LOCK = """
import fcntl, os, sys, time
handle = open(sys.argv[1], "a+")
fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a training process holds its run folder
handle.truncate(0)
handle.write(f"{os.getpid()}\\n")
handle.flush()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_concurrent_second_run_is_refused(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = write_config(tmp_path, tiny_root, epochs=1)
    out = tmp_path / "run"
    TrainingRun(load_config(config_path), out).fit(log=lambda _: None)
    before = fingerprints(out)
    # another process holds the folder's lock, as a training still running there does
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in (("--overwrite",), ("--resume",)):
            fails_in_process(
                capsys, train_mpii_main, "--config", str(config_path), "--output-dir", str(out), *extra,
                expect=f"another training (process {holder.pid}) is running in {out}",
            )  # fmt: skip
        assert holder.poll() is None, "the lock holder ended before the second run was tried"
    finally:
        holder.kill()
        holder.wait()
    assert fingerprints(out) == before  # the refused --overwrite / --resume changed nothing of the run


def test_resume_with_nothing_to_resume_says_what_is_true(tiny_root: Path, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tiny_root, epochs=1))
    with pytest.raises(RunFolderError, match=r"there is no run in .*\(the folder does not exist\)"):
        TrainingRun(config, tmp_path / "never").fit(resume=True, log=lambda _: None)
    assert not (tmp_path / "never").exists()
    # a run killed before its first checkpoint: config.yaml only, plus a stale temporary file of a save
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.yaml").write_text("experiment: tiny\n")
    (killed / ".last.pth.abc123.tmp").write_bytes(b"half a checkpoint")
    with pytest.raises(
        RunFolderError, match="stopped before its first epoch finished.*start it again with --overwrite"
    ):
        TrainingRun(config, killed).fit(resume=True, log=lambda _: None)
    assert (killed / "config.yaml").read_text() == "experiment: tiny\n"  # a failed resume rewrites nothing
    assert not (killed / ".last.pth.abc123.tmp").exists()


def test_ctrl_c_before_the_first_checkpoint_says_there_is_none(tiny_root: Path, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, tiny_root, epochs=2))
    run = TrainingRun(config, tmp_path / "run")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    run.loss_fn = interrupt
    with pytest.raises(KeyboardInterrupt, match="no checkpoint was written"):
        run.fit(log=lambda _: None)


def test_output_folder_that_is_a_file_or_unwritable(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path = write_config(tmp_path, tiny_root, epochs=1)
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    for target, expect in (
        (a_file, "is a file, not a folder"),
        (a_file / "sub", "cannot create the output folder"),
    ):
        fails_in_process(
            capsys, train_mpii_main, "--config", str(config_path), "--output-dir", str(target), expect=expect
        )
    assert a_file.read_text() == "keep me"
