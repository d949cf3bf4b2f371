"""Several processes: sharding by (seed, epoch, index), a 2-process gloo run equal to a 1-process run (float64,
20 steps, an uneven last batch) in every weight, buffer and logged term, resume across a change of world
size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from datasets.synthetic import make_synthetic_mpii
from engine.experiment.config import load_config
from engine.runtime.distributed import EpochShuffleSampler, ShardSampler, per_process_batch
from engine.training.log import read_log
from engine.training.run import TrainingRun
from utils.checkpoint import load_checkpoint
from utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_each_process_takes_its_slice_of_every_global_batch() -> None:
    one = EpochShuffleSampler(22, seed=4, global_batch=8)
    shards = [EpochShuffleSampler(22, seed=4, global_batch=8, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 3):
        for sampler in (one, *shards):
            sampler.set_epoch(epoch)
        order = [index for index, _ in one]
        mine = [[index for index, key_epoch in shard if key_epoch == epoch] for shard in shards]
        # global batches [0:8], [8:16], [16:22]: each process holds 4, 4, 3 of them, in order
        assert mine[0] == order[0:4] + order[8:12] + order[16:19]
        assert mine[1] == order[4:8] + order[12:16] + order[19:22]
    assert len(shards[0]) == len(shards[1]) == 11
    # a last global batch smaller than the number of processes is dropped so that every process steps alike
    tiny = [EpochShuffleSampler(9, seed=0, global_batch=8, rank=r, world_size=2) for r in range(2)]
    assert len(tiny[0]) == len(tiny[1]) == 4
    shares = [ShardSampler(7, r, 3).indices for r in range(3)]
    assert sorted(sum(shares, [])) == list(range(7))
    with pytest.raises(ConfigError, match="must divide evenly over the 3 processes"):
        per_process_batch(16, 3)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    # 19 persons in global batches of 4: 4 + 4 + 4 + 4 + 3, the last one split 2 + 1 over two processes
    root = make_synthetic_mpii(folder / "data", num_train=19, num_valid=6, image_size=64)
    section = {
        "name": "okdhp_hourglass",
        "num_features": 16,
        "depth": 2,
        "shared_stacks": 1,
        "branch_stacks": [1, 1],
    }
    config = {
        "experiment": "ddp",
        "seed": 3,
        "model": section,
        "data": {
            "name": "mpii",
            "root": str(root),
            "input_size": [64, 64],
            "heatmap_size": [16, 16],
            "sigma": 1.0,
        },
        "loss": {"name": "okdhp", "rampup_epochs": 2},
        "train": {
            "epochs": 4,
            "batch_size": 4,
            "lr": 1e-2,
            "optimizer": "sgd",
            "lr_steps": [2],
            "val_every": 4,
        },  # fmt: skip
        "runtime": {"workers": 0, "deterministic": True, "device": "cpu", "sync_batchnorm": True},
        "test": {"batch_size": 1},
    }
    path = folder / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_two_processes_equal_one_in_float64(tiny_config: Path, tmp_path: Path) -> None:
    """The same arithmetic in float64 (``runtime.precision: fp64``): 20 SGD steps at lr 0.01 through the
    learning-rate step and the loss's ramp, each epoch ending on a batch split 2 + 1. Two processes compute what
    one does to 1e-10 in every weight and buffer (rounding, amplified over the steps, stays near 1e-14; a
    difference of the method, e.g. the uneven batch weighed as two equal halves, is 1e-3), and log the same
    training terms: every process's samples, not the main process's."""
    fp64 = "runtime.precision=fp64"
    args = ("--config", str(tiny_config), "--set", fp64)
    result = torchrun("train_mpii.py", *args, "--output-dir", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-3000:]
    TrainingRun(load_config(tiny_config, [fp64]), tmp_path / "one").fit(log=lambda _: None)
    one = load_checkpoint(tmp_path / "one" / "last.pth")["model"]
    two = load_checkpoint(tmp_path / "two" / "last.pth")["model"]
    assert one.keys() == two.keys() and one["stem.0.weight"].dtype == torch.float64
    worst = max((one[k] - two[k]).abs().max().item() for k in one if one[k].is_floating_point())
    assert worst < 1e-10, worst
    log_one, log_two = read_log(tmp_path / "one" / "log.jsonl"), read_log(tmp_path / "two" / "log.jsonl")
    assert [r["epoch"] for r in log_two] == [r["epoch"] for r in log_one] == [0, 1, 2, 3]
    for record_one, record_two in zip(log_one, log_two):
        assert (
            record_one["lr"] == record_two["lr"] and record_one["train"].keys() == record_two["train"].keys()
        )
        for term, value in record_one["train"].items():
            assert record_two["train"][term] == pytest.approx(value, rel=1e-10, abs=1e-14), term
    assert set(log_two[-1]["val"]) == {"branch0", "branch1", "ensemble"}
    assert result.stdout.count("best: ") == 1  # the final lines come from the main process only

    # a run started with 2 processes continues with 1
    config = load_config(tiny_config, [fp64])
    config.train.epochs = 5
    TrainingRun(config, tmp_path / "two").fit(resume=True, allow_change=["train.epochs"], log=lambda _: None)
    assert [r["epoch"] for r in read_log(tmp_path / "two" / "log.jsonl")] == [0, 1, 2, 3, 4]
    assert torch.is_tensor(load_checkpoint(tmp_path / "two" / "deploy.pth")["model"]["stem.0.weight"])


def test_sharded_validation_scores_every_person_exactly_once(tiny_config: Path) -> None:
    """Two shares predicted as two processes would, then merged: exactly the one-process predictions."""
    from engine.inference.loops import merge_shares, predict, predict_share
    from engine.runtime.loader import make_loader

    run = TrainingRun(load_config(tiny_config), tiny_config.parent / "unused")
    full = predict(run.predictor, run.val_loader)

    def share(rank: int) -> DataLoader:
        return make_loader(run.val_set, 1, 0, run.runtime, ShardSampler(len(run.val_set), rank, 2))

    shares = [predict_share(run.predictor, share(rank)) for rank in (0, 1)]
    merged = merge_shares(shares, len(run.val_set))
    assert merged.keys() == full.keys()
    for head in full:
        assert np.array_equal(merged[head][0], full[head][0]) and np.array_equal(
            merged[head][1], full[head][1]
        )
    with pytest.raises(RuntimeError, match="3 persons never and 3 more than once"):
        merge_shares([shares[0], shares[0]], len(run.val_set))
