"""Evaluate a checkpoint of this project on its dataset: every head of a multi-branch model, or one network."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from datasets.coco import CocoDataset
from datasets.coco_eval import write_results_json
from datasets.codec import HeatmapCodec
from datasets.registry import DATASETS, build_codec, build_dataset, scoring_section, skeleton_of
from engine.experiment.checks import check_input_size
from engine.experiment.config import ExperimentConfig, load_config
from engine.inference.loops import evaluate_heads, predict
from engine.inference.networks import load_network
from engine.inference.pipeline import Pipeline
from engine.inference.predictor import HeadPredictions, Predictor
from engine.runtime.execution import runtime_from_config
from engine.runtime.loader import make_loader
from utils.errors import ConfigError
from utils.output_paths import prepare_outputs
from utils.run_folder import note_follow_up

SERVER_KEYS = ("image_id", "category_id", "keypoints", "score")  # a COCO keypoint results entry
PIPELINE_KEYS = (
    "input_size",
    "heatmap_size",
    "sigma",
    "color",
)  # what a checkpoint's network was trained with


def evaluate_checkpoint(
    checkpoint: Path,
    config_path: Path | None = None,
    overrides: list[str] | None = None,
    flip: bool | None = None,
    output_dir: Path | None = None,
    vis: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
    split: str = "valid",
) -> dict[str, Any]:
    """Print the table of every head and return them ({head: table}, or the table itself for one network).

    The config comes from ``config_path`` or, without one, from the checkpoint itself. A ``deploy.pth`` (or a
    converted file) carries the model section of its network, so any config of the same dataset evaluates
    it; the input pipeline (input and heatmap size, sigma, colour) is always the one the network was trained
    with, and a config that says otherwise gets a warning naming the differences. An earlier evaluation in
    ``output_dir`` (its ``tables.json``) is replaced only with ``overwrite``.

    ``split``: ``valid`` (the config's val_set) or ``test`` (its test_set). A split without ground truth (COCO
    test-dev) is predicted, not scored: each head's results go to ``<output_dir>/<head>/keypoints_<set>_
    results.json`` in the evaluation server's format, and the return value is {head: that file's path}.
    """
    overrides = overrides or []
    given = load_config(config_path, overrides) if config_path is not None else None
    loaded = load_network(checkpoint, config=given, overrides=overrides)
    if loaded.config is None:
        raise ConfigError(f"{checkpoint} carries no config: pass --config")
    config, state = loaded.config, loaded.state
    data = scoring_section(_pipeline_of_checkpoint(state, config))
    output_dir = output_dir or checkpoint.parent / f"eval_{checkpoint.stem}"
    codec = build_codec(data)
    dataset = build_dataset(data, split=split, train=False, seed=config.seed, codec=codec)
    if dataset.has_ground_truth:
        results_files = {}
        outputs = [output_dir / "tables.json"]
    else:  # nothing to score: the heads' results files are the outputs (heads read on the meta device)
        heads = check_input_size(loaded.section, codec).heads()
        results_files = {head: output_dir / head / server_results_name(dataset) for head in heads}
        outputs = list(results_files.values())
    prepare_outputs(outputs, "--output-dir", inputs=[checkpoint], overwrite=overwrite)
    note_follow_up(output_dir)

    runtime = runtime_from_config(config.runtime, config.origin)
    loader = make_loader(
        dataset, config.test.batch_size, config.runtime.workers if workers is None else workers, runtime
    )
    use_flip = config.test.flip if flip is None else flip
    pipeline = Pipeline(
        codec=codec,
        skeleton=skeleton_of(data),
        color=DATASETS.resolved(data)["color"],
        flip=use_flip,
        shift_heatmap=config.test.shift_heatmap,
    )
    predictor = Predictor(runtime.inference_model(runtime.prepare(loaded.model)), pipeline, runtime)
    predictions = predict(predictor, loader)  # every process gets every person's prediction
    if not runtime.is_main:
        return {}
    if results_files:
        return write_server_results(dataset, predictions, results_files)

    tables = {}
    for head, result in evaluate_heads(dataset, predictions, output_dir).items():
        label = head if len(predictions) > 1 else f"{checkpoint.name} ({loaded.section['name']})"
        print(f"== {label} ({'flip test' if use_flip else 'no flip'}) ==")
        print(result.text)
        tables[head] = result.table
    (output_dir / "tables.json").write_text(json.dumps(tables, indent=2))
    if vis > 0:
        from engine.inference.vis import draw_predictions

        head = "ensemble" if "ensemble" in predictions else next(iter(predictions))
        written = draw_predictions(dataset, predictions[head][0], output_dir / "vis", limit=vis)
        print(f"{len(written)} images with {head} predictions written to {output_dir / 'vis'}")
    return tables if len(tables) > 1 else next(iter(tables.values()))


def server_results_name(dataset: CocoDataset) -> str:
    """HRNet's name of a split's results file, ``keypoints_test-dev2017_results.json``."""
    return f"keypoints_{dataset.set_name}_results.json"


def write_server_results(
    dataset: CocoDataset, predictions: HeadPredictions, files: dict[str, Path]
) -> dict[str, str]:
    """Each head's results for the evaluation server: rescored, OKS-NMS per image, written as a JSON list of
    {image_id, category_id, keypoints [x, y, score] * J, score} (nothing else: the server's format)."""
    for head, (preds, maxvals) in predictions.items():
        results = [
            {key: entry[key] for key in SERVER_KEYS} for entry in dataset.keypoint_results(preds, maxvals)
        ]
        write_results_json(results, files[head])
        images = len({entry["image_id"] for entry in results})
        print(
            f"{head}: {len(results)} persons in {images} images of {dataset.set_name} (of {len(dataset)} "
            f"detector boxes, after OKS-NMS) written to {files[head]}: no ground truth here, so nothing is "
            "scored; upload the file to the COCO evaluation server (docs/coco.md, 'test-dev')"
        )
    return {head: str(path) for head, path in files.items()}


def _pipeline_of_checkpoint(state: dict[str, Any], config: ExperimentConfig) -> dict[str, Any]:
    """The config's data section with the checkpoint's input pipeline (warning about every difference)."""
    if "config" not in state:
        return dict(config.data)
    saved = state["config"]["data"]
    if saved.get("name") != config.data["name"]:
        return dict(
            config.data
        )  # another dataset (e.g. COCO-trained, evaluated on OCHuman): sizes still apply
    trained = DATASETS.resolved(saved)
    asked = DATASETS.resolved(config.data)
    if "codec" in state:
        trained.update(HeatmapCodec.from_dict(state["codec"]).to_dict())
    data = dict(config.data)
    differences = []
    for key in PIPELINE_KEYS:
        if _plain(trained[key]) != _plain(asked[key]):
            differences.append(f"data.{key} {_plain(asked[key])} -> {_plain(trained[key])}")
            data[key] = trained[key]
    if differences:
        print(
            "warning: the config's input pipeline differs from the one this checkpoint was trained with; "
            f"using the checkpoint's: {', '.join(differences)}",
            file=sys.stderr,
        )
    return data


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value
