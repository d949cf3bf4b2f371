"""A resume continues the run it finds: another config is refused key by key unless --allow-change names the key
(then the change is logged); a full disk is one paragraph and leaves every earlier checkpoint as it was."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import utils.disk
from datasets.synthetic import make_synthetic_mpii
from engine.training.log import read_log
from tests.test_run_folder import fingerprints
from tests.test_training import REPO, fails_in_process, train_mpii_main, write_config
from tests.test_training import guarded_main as run_main
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.disk import DiskFullError, human


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_mpii(
        tmp_path_factory.mktemp("resume_mpii"), num_train=8, num_valid=4, image_size=64
    )


@pytest.fixture(scope="module")
def finished(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny config (lr 1e-3) and the folder of its finished one-epoch run."""
    folder = tmp_path_factory.mktemp("finished")
    config_path = write_config(folder, tiny_root, epochs=1)
    assert run_main(train_mpii_main, ["--config", str(config_path), "--output-dir", str(folder / "run")]) == 0
    return config_path, folder / "run"


def last_error_line(capsys: pytest.CaptureFixture) -> str:
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: "), line
    return line


def test_resume_with_another_lr_or_data_root_is_refused_naming_each_key(
    finished: tuple[Path, Path], tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path, run = finished
    other_root = tmp_path / "same_images_elsewhere"
    shutil.copytree(tiny_root, other_root)
    before = fingerprints(run)
    capsys.readouterr()
    args = ["--config", str(config_path), "--output-dir", str(run), "--resume", "--set", "train.lr=0.5"]
    assert run_main(train_mpii_main, [*args, "--data-root", str(other_root)]) == 2
    error = last_error_line(capsys)
    assert f"data.root '{tiny_root}' -> '{other_root}'" in error and "train.lr 0.001 -> 0.5" in error
    assert "--allow-change data.root --allow-change train.lr" in error
    assert fingerprints(run) == before  # nothing written, the log untouched
    # an --allow-change that names no config key is refused too, with the closest key
    fails_in_process(
        capsys, train_mpii_main, *args, "--allow-change", "train.lrr", expect="did you mean 'train.lr'"
    )


def test_allow_change_continues_the_run_and_logs_the_change(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config_path, finished_run = finished
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    args = [
        "--config",
        str(config_path),
        "--output-dir",
        str(run),
        "--resume",
        "--allow-change",
        "train.epochs",
    ]
    new_lr = ["--set", "train.lr=2e-3", "--allow-change", "train.lr"]
    assert run_main(train_mpii_main, [*args, *new_lr, "--set", "train.epochs=2"]) == 0
    log = read_log(run / "log.jsonl")
    assert [record["epoch"] for record in log] == [0, 1] and "changed" not in log[0]
    assert log[1]["changed"] == {"train.epochs": [1, 2], "train.lr": [0.001, 0.002]}
    assert log[1]["lr"] == 0.002  # the new learning rate took effect (the checkpoint's optimizer had 1e-3)
    assert load_checkpoint(run / "last.pth")["config"]["train"]["epochs"] == 2

    # fewer epochs than the run has trained: said, and nothing changes
    before = fingerprints(run)
    fails_in_process(
        capsys,
        train_mpii_main,
        *args,
        *new_lr,
        "--set",
        "train.epochs=1",
        expect="has already trained 2 epochs",
    )
    assert fingerprints(run) == before


def test_a_full_disk_at_a_checkpoint_is_one_paragraph_and_resume_finishes_the_run(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = write_config(tmp_path, tiny_root, epochs=2)
    run = tmp_path / "run"
    real_save = torch.save
    kept: dict[str, bytes] = {}

    def disk_fills_in_epoch_1(state, name) -> None:
        if Path(name).name.startswith(".last.pth.") and state["epoch"] == 1:
            kept["last.pth"] = (run / "last.pth").read_bytes()  # the checkpoint after epoch 0
            Path(name).write_bytes(b"PK\x03\x04" + bytes(4096))  # the start of an archive, as torch leaves it
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(state, name)

    monkeypatch.setattr(torch, "save", disk_fills_in_epoch_1)
    args = ["--config", str(config_path), "--output-dir", str(run)]
    capsys.readouterr()
    assert run_main(train_mpii_main, args) == 2
    error = last_error_line(capsys)
    assert error.startswith(f"error: no room on the disk holding {run} (")
    assert f"for last.pth, which needs about {human(len(kept['last.pth']))}" in error
    assert "the previous last.pth is intact" in error and "with --resume" in error
    assert (run / "last.pth").read_bytes() == kept["last.pth"]
    # The epoch's log line is written before its checkpoint (a kill between the two must not leave a
    # checkpoint the log lacks); --resume drops the line of the epoch it trains again.
    assert not list(run.glob(".*.tmp")) and [r["epoch"] for r in read_log(run / "log.jsonl")] == [0, 1]

    monkeypatch.undo()  # the space is freed
    assert run_main(train_mpii_main, [*args, "--resume"]) == 0
    assert [r["epoch"] for r in read_log(run / "log.jsonl")] == [0, 1]
    assert load_checkpoint(run / "last.pth")["epoch"] == 1


def test_torchs_zip_writer_error_on_a_full_disk_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's writer says only 'unexpected pos ...': with less space free than the file needs, a full disk."""
    path = tmp_path / "last.pth"
    save_checkpoint({"model": {"w": torch.zeros(1000)}}, path)
    before = path.read_bytes()

    def zip_writer_fails(state, name) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", zip_writer_fails)
    monkeypatch.setattr(utils.disk, "free_bytes", lambda folder: 100)
    with pytest.raises(DiskFullError, match=r"\(100 B free\) for last.pth, which needs about 5\.\d kB"):
        save_checkpoint({"model": {"w": torch.ones(1000)}}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]
    monkeypatch.setattr(utils.disk, "free_bytes", lambda folder: 10**9)  # not full: torch's error as it is
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_checkpoint({"model": {"w": torch.ones(1000)}}, path)


FULL_TMPFS = textwrap.dedent(
    """
    import json, sys, torch
    from pathlib import Path
    from utils.checkpoint import save_checkpoint
    from utils.disk import DiskFullError
    from utils.run_folder import RunFolder

    folder, found = Path(sys.argv[1]), {}
    save_checkpoint({"model": {"w": torch.zeros(150_000)}}, folder / "last.pth")  # 600 kB of the 1 MB
    before = (folder / "last.pth").read_bytes()
    try:
        save_checkpoint({"model": {"w": torch.ones(150_000)}}, folder / "last.pth")
    except DiskFullError as error:
        found["save"] = str(error)
    found["intact"] = (folder / "last.pth").read_bytes() == before
    with open(folder / "filler", "wb", buffering=0) as filler:  # now fill the disk to the last byte
        try:
            while True:
                filler.write(bytes(4096))
        except OSError:
            pass
    try:
        with RunFolder(folder, ("last.pth",)).claim(resume=True, overwrite=False, needed=len(before)):
            pass
    except DiskFullError as error:
        found["lock"] = str(error)
    print(json.dumps(found))
    """
)


def test_a_real_full_disk_when_saving_and_when_locking(tmp_path: Path) -> None:
    """A 1 MB tmpfs in a mount namespace of its own (skipped where the system does not allow one)."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    script = f'mount -t tmpfs -o size=1m tmpfs "{mount}" && exec "{sys.executable}" -c "$0" "{mount}"'
    try:
        result = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, FULL_TMPFS],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if result.returncode != 0 and "mount" in result.stderr and "Traceback" not in result.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["intact"]
    assert f"no room on the disk holding {mount}" in found["save"] and "for last.pth" in found["save"]
    assert "the previous last.pth is intact" in found["save"]
    assert f"no room on the disk holding {mount} (0 B free)" in found["lock"]
