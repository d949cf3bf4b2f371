"""Experiment configs: every yaml validates, misspelt keys are named, overrides and base files work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.experiment.catalogue import experiment_paths
from engine.experiment.config import load_config, read_yaml, save_config
from models.registry import build_model
from utils.errors import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
ALL_YAMLS = experiment_paths()  # the catalogue: experiments/tables/ holds tables, not experiments


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_validates_and_builds(path: Path) -> None:
    config = load_config(path)
    assert config.experiment == "_".join(path.relative_to(EXPERIMENTS).with_suffix("").parts)
    with torch.device("meta"):  # no memory, no initialisation cost: only the structure is checked
        model = build_model(config.model)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_released_recipe_is_the_mpii_default() -> None:
    config = load_config(EXPERIMENTS / "mpii" / "hg4_okdhp.yaml")
    assert config.train.lr == 2.5e-4 and config.train.lr_steps == [90, 120] and config.train.epochs == 150
    assert (
        config.train.batch_size == 16 and config.train.optimizer == "adam" and config.train.weight_decay == 0
    )
    assert config.loss == {
        "name": "okdhp", "alpha": 1.0, "beta": 2.0, "rampup_epochs": 90, "temperature": 1.0,
        "detach_ensemble": False,
    }  # fmt: skip
    assert config.model["shared_stacks"] == 2 and config.model["branch_stacks"] == [2, 2, 2]
    assert config.data["color"] == "bgr_imagenet" and config.test.select == "best_branch"


def test_base_files_merge_and_children_win() -> None:
    config = load_config(EXPERIMENTS / "mpii" / "hg4_okdhp_unbalanced.yaml")
    assert config.model["branch_stacks"] == [2, 4, 6]
    assert config.model["fau"] == "released"  # from hg4_okdhp.yaml
    assert config.train.lr_steps == [90, 120]  # from _defaults.yaml
    assert config.test.select == "branch0"


@pytest.mark.parametrize(
    ("override", "closest"),
    [
        ("train.lrr=0.1", "lr"),
        ("model.shared_stack=3", "shared_stacks"),
        ("data.sigmaa=3", "sigma"),
        ("loss.alphaa=2", "alpha"),
        ("tset.flip=false", "test"),
    ],
)
def test_misspelt_key_names_the_closest_valid_key(override: str, closest: str) -> None:
    with pytest.raises(ConfigError, match=f"did you mean '{closest}'"):
        load_config(EXPERIMENTS / "mpii" / "hg4_okdhp.yaml", [override])


def test_overrides_are_typed() -> None:
    config = load_config(
        EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["train.lr=1e-3", "train.epochs=3", "train.lr_steps=[2]"]
    )
    assert config.train.lr == pytest.approx(1e-3) and config.train.epochs == 3
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["train.epochs=three"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["train.epochs"])


@pytest.mark.parametrize("override", ["train.epochs=0", "test.batch_size=0", "runtime.workers=-1"])
def test_out_of_range_counts_are_config_errors(override: str) -> None:
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", [override])


def test_section_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="'model' must be a mapping"):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["model=3"])


def test_unknown_model_name_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="did you mean 'hourglass'"):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["model.name=hourglas"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(EXPERIMENTS / "mpii" / "no_such.yaml")


def test_saved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(
        EXPERIMENTS / "mpii" / "hg4_okdhp_released.yaml", ["train.epochs=2", "train.lr_steps=[1]"]
    )
    save_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config


def test_unusable_device_is_a_config_error() -> None:
    from engine.runtime.execution import make_runtime

    with pytest.raises(ConfigError, match="'gpu' is not a device"):
        make_runtime("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            make_runtime("cuda")


BASELINE = EXPERIMENTS / "mpii" / "hg4_baseline.yaml"


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("train.lr=-1", "-1.0"),
        ("train.lr=0", "0.0"),
        ("train.lr=.nan", "nan"),
        ("train.lr=nan", "nan"),
        ("train.lr=.inf", "inf"),
        ("train.weight_decay=-1e-4", "-0.0001"),
        ("train.weight_decay=.nan", "nan"),
        ("train.momentum=1.5", "1.5"),
        ("train.lr_factor=0", "0.0"),
        ("train.betas=[0.9]", "[0.9]"),
        ("train.betas=[0.9, 1.0]", "1.0"),
        ("train.lr_steps=[90, -1]", "-1"),
        ("train.epochs=0", "0"),
        ("train.epochs=-5", "-5"),
        ("train.batch_size=0", "0"),
        ("train.val_every=0", "0"),
        ("train.iters_per_epoch=0", "0"),
        ("seed=-1", "-1"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_value(override: str, shown: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as caught:
        load_config(BASELINE, [override])
    message = str(caught.value)
    assert message.startswith(f"--set {override}: {key}") and f"got {shown}" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("data.sigma=-1", "-1"),
        ("data.sigma=0", "0"),
        ("data.scale_factor=.nan", "nan"),
        ("data.scale_factor=1.5", "1.5"),
        ("data.rotation_factor=-30", "-30"),
        ("data.rotation_factor=.inf", "inf"),
        ("data.rotation_prob=1.2", "1.2"),
        ("data.rotation_prob=abc", "'abc'"),
        ("data.flip=yes please", "'yes please'"),
        ("data.input_size=[256, 0]", "[256, 0]"),
        ("data.color=rgb", "'rgb'"),
        ("train.lr_factor=2", "2.0"),
        ("train.lr_steps=[5, 2]", "[5, 2]"),
        ("train.lr_steps=[90, 90]", "[90, 90]"),
        ("train.lr_steps=[90, 150]", "150"),
        ("train.lr_steps=[0]", "0"),
    ],
)
def test_data_and_train_ranges_are_checked_at_load_time(override: str, shown: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as caught:
        load_config(BASELINE, [override])
    message = str(caught.value)
    assert message.startswith(f"--set {override}: {key}") and "\n" not in message
    assert f"got {shown}" in message or f"unknown colour mode {shown}" in message


def test_coco_probabilities_and_thresholds_are_checked() -> None:
    coco = EXPERIMENTS / "coco" / "hg2_baseline.yaml"
    for key in ("half_body_prob", "oks_threshold", "keypoint_score_threshold", "det_score_threshold"):
        with pytest.raises(ConfigError, match=rf"^--set data.{key}=-0.5: data.{key} must be a probability"):
            load_config(coco, [f"data.{key}=-0.5"])


def test_steps_past_a_shortened_run_name_both_origins() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(EXPERIMENTS / "mpii" / "demo.yaml", ["train.epochs=4"])
    message = str(caught.value)
    assert message.startswith(f"{EXPERIMENTS / 'mpii' / 'demo.yaml'}: train.lr_steps[0] must be an epoch")
    assert "train.epochs = 4, from --set train.epochs=4" in message and "got 8" in message


def test_a_checkpoints_saved_config_is_not_refused_for_its_schedule() -> None:
    from engine.experiment.config import config_from_dict, read_raw_config

    raw = read_raw_config(EXPERIMENTS / "mpii" / "demo.yaml")
    raw["train"]["epochs"] = 4  # as an older shortened run saved it: its step at epoch 8 never fired
    with pytest.raises(ConfigError, match="train.lr_steps"):
        config_from_dict(raw)
    assert config_from_dict(raw, schedule=False).train.lr_steps == [8]  # evaluate, demo, export read it
    raw["data"]["sigma"] = -1.0  # the pipeline is still checked
    with pytest.raises(ConfigError, match="data.sigma"):
        config_from_dict(raw, schedule=False)


def test_a_bad_data_value_in_the_file_stops_training_with_exit_2(tmp_path: Path, capsys) -> None:
    from engine.cli import run_cli, train_main

    path = write_child(tmp_path, "data:\n  sigma: -1\n")
    code = run_cli(
        lambda argv: train_main("mpii", argv), ["--config", str(path), "--output-dir", str(tmp_path / "run")]
    )
    stderr = capsys.readouterr().err
    assert code == 2 and stderr.startswith(f"error: {path}: data.sigma must be a positive finite number")
    assert not (tmp_path / "run").exists()


def write_child(tmp_path: Path, text: str) -> Path:
    """A yaml in tmp_path that starts from the baseline experiment."""
    path = tmp_path / "child.yaml"
    path.write_text(f"base: {BASELINE}\n{text}")
    return path


def test_a_bad_value_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = write_child(tmp_path, "train:\n  lr: -0.001\n")
    before = path.read_text()
    with pytest.raises(ConfigError, match=rf"^{path}: train.lr must be a positive finite number.*got -0.001"):
        load_config(path, ["train.epochs=3"])  # an override of another key does not take the blame
    assert path.read_text() == before


def test_override_errors_name_the_override_not_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(BASELINE, ["train.lr=abc"])
    assert str(caught.value) == "--set train.lr=abc: train.lr must be float, got 'abc'"
    with pytest.raises(ConfigError, match=r"^--set train.lrr=1: unknown key 'train.lrr' \(did you mean 'lr'"):
        load_config(BASELINE, ["train.lrr=1"])
    with pytest.raises(ConfigError, match=r"^--set model.name=hourglas: .*did you mean 'hourglass'"):
        load_config(BASELINE, ["model.name=hourglas"])
    with pytest.raises(ConfigError, match=r"^--set data.sigmaa=3: data.sigmaa: unknown key"):
        load_config(BASELINE, ["data.sigmaa=3"])
    with pytest.raises(ConfigError, match=r"^--set tset.flip=false: unknown top-level key 'tset'"):
        load_config(BASELINE, ["tset.flip=false"])
    with pytest.raises(ConfigError, match=r"^--set train.betas=\[0.9, x\]: train.betas\[1\] must be float"):
        load_config(BASELINE, ["train.betas=[0.9, x]"])
    with pytest.raises(ConfigError, match=r"^--set train.lr.x=1: 'train.lr' is a value"):
        load_config(BASELINE, ["train.lr.x=1"])
    path = write_child(tmp_path, "train:\n  lr: abc\n")  # the file's own bad value still names the file
    with pytest.raises(ConfigError, match=rf"^{path}: train.lr must be float"):
        load_config(path, ["train.epochs=3"])


def test_a_later_section_override_takes_the_blame() -> None:
    with pytest.raises(ConfigError, match=r"^--set train=\{lr: abc\}: train.lr must be float"):
        load_config(BASELINE, ["train.lr=1e-3", "train={lr: abc}"])
    with pytest.raises(ConfigError, match=r"^--set train=3: 'train' must be a mapping"):
        load_config(BASELINE, ["train=3"])


def test_builder_errors_can_be_blamed_on_their_override() -> None:
    config = load_config(BASELINE, ["model.num_stacks=0"])
    with pytest.raises(ConfigError) as caught:
        build_model(config.model)
    blamed = config.origin.blame(caught.value)
    assert str(blamed).startswith("--set model.num_stacks=0: model.num_stacks") and blamed.key == (
        "model.num_stacks"
    )
    from_file = load_config(BASELINE).origin.blame(ConfigError("model.depth: must be positive"))
    assert str(from_file) == f"{BASELINE}: model.depth: must be positive"


def test_overrides_on_the_command_line_are_one_paragraph(capsys: pytest.CaptureFixture) -> None:
    from engine.cli import run_cli, train_main

    status = run_cli(
        lambda argv: train_main("mpii", argv), ["--config", str(BASELINE), "--set", "train.lr=abc"]
    )
    stderr = capsys.readouterr().err
    assert status == 2 and stderr == "error: --set train.lr=abc: train.lr must be float, got 'abc'\n"


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("train:\n  lr: 1.0e-3\ntest:\n  flip: true\ntrain:\n  epochs: 3\n", "'train'", "lines 2 and 6"),
        ("train:\n  lr: 1.0e-3\n  epochs: 3\n  lr: 2.0e-3\n", "'train.lr'", "lines 3 and 5"),
        ("seed: 1\nseed: 2\nseed: 3\n", "'seed' is given 3 times", "lines 2, 3 and 4"),
        ("train:\n  betas: [0.9, 0.99]\ntest: {flip: true, flip: false}\n", "'test.flip'", "4:8 and 4:20"),
    ],
)
def test_a_key_given_twice_names_the_file_key_and_lines(
    tmp_path: Path, text: str, key: str, lines: str
) -> None:
    path = write_child(tmp_path, text)
    before = path.read_text()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}") and lines in message and "\n" not in message
    assert path.read_text() == before


def test_a_key_given_twice_in_a_base_file_names_the_base(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(
        BASELINE.read_text().replace("base: _defaults.yaml", f"base: {EXPERIMENTS / 'mpii'}/_defaults.yaml")
        + "loss:\n  name: mse\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\ntrain:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=rf"^{base}: 'loss' is given twice, on lines \d+ and \d+"):
        load_config(child)


def test_yaml_merge_keys_and_aliases_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "merged.yaml"
    path.write_text(
        "a: &common {flip: false, batch_size: 4}\nb:\n  <<: *common\n  batch_size: 8\nc: *common\n"
    )
    assert read_yaml(path) == {
        "a": {"flip": False, "batch_size": 4},
        "b": {"flip": False, "batch_size": 8},  # the merged key overridden: yaml's rule, not a duplicate
        "c": {"flip": False, "batch_size": 4},
    }


def test_start_sh_helpers_name_the_trainer_and_the_teachers_to_train_first(tmp_path: Path) -> None:
    from engine.experiment.catalogue import missing_teachers, trainer_for

    assert trainer_for("mpii/hg4_fpd") == "train_mpii.py" and trainer_for("coco/hg4_fpd") == "train_coco.py"
    assert missing_teachers("mpii/hg4_fpd") == ["mpii/hg8_baseline"]  # its deploy.pth does not exist here
    present = tmp_path / "teacher.pth"
    present.write_bytes(b"x")
    config = tmp_path / "fpd.yaml"
    config.write_text(
        f"base: {EXPERIMENTS / 'mpii' / 'hg4_fpd.yaml'}\nteachers:\n  teacher:\n    checkpoint: {present}\n"
    )
    assert missing_teachers(str(config)) == []
    # the run's --set overrides count: an existing teacher named by one needs no training
    assert missing_teachers("mpii/hg4_fpd", [f"teachers.teacher.checkpoint={present}"]) == []
