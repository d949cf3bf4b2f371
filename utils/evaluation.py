"""Evaluate a checkpoint of this project on its dataset: every head of a multi-branch model, or one network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets.registry import build_dataset
from models.registry import build_model
from utils.checkpoint import load_checkpoint, load_model_weights
from utils.config import apply_override, config_from_dict, load_config
from utils.engine import evaluate_heads, predict
from utils.errors import ConfigError
from utils.runtime import make_runtime
from utils.training import make_loader


def evaluate_checkpoint(
    checkpoint: Path,
    config_path: Path | None = None,
    overrides: list[str] | None = None,
    flip: bool | None = None,
    output_dir: Path | None = None,
    vis: int = 0,
    workers: int | None = None,
) -> dict[str, Any]:
    """Print the table of every head and return them ({head: table}, or the table itself for one network).

    The config comes from ``config_path`` or, without one, from the checkpoint itself. A ``deploy.pth`` carries
    the model section of its extracted network, so any config of the same dataset evaluates it.
    """
    state = load_checkpoint(checkpoint)
    if config_path is not None:
        config = load_config(config_path, overrides or [])
    elif "config" in state:
        raw = dict(state["config"])
        for item in overrides or []:
            apply_override(raw, item)
        config = config_from_dict(raw, source=f"config saved in {checkpoint}")
    else:
        raise ConfigError(f"{checkpoint} carries no config: pass --config")

    runtime = make_runtime(config.train.device, deterministic=False)
    model_section = state["model_config"] if state.get("kind") == "deploy" else config.model
    model = build_model(model_section).to(runtime.device)
    load_model_weights(model, state["model"], str(checkpoint))

    dataset = build_dataset(config.data, split="valid", train=False, seed=config.seed)
    loader = make_loader(
        dataset, config.test.batch_size, config.train.workers if workers is None else workers, runtime
    )
    use_flip = config.test.flip if flip is None else flip
    predictions = predict(model, loader, runtime, flip=use_flip, shift_heatmap=config.test.shift_heatmap)

    output_dir = output_dir or checkpoint.parent / f"eval_{checkpoint.stem}"
    tables = {}
    for head, result in evaluate_heads(dataset, predictions, output_dir).items():
        label = head if len(predictions) > 1 else f"{checkpoint.name} ({model_section['name']})"
        print(f"== {label} ({'flip test' if use_flip else 'no flip'}) ==")
        print(result.text)
        tables[head] = result.table
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "tables.json").write_text(json.dumps(tables, indent=2))
    if vis > 0:
        from utils.vis import draw_predictions

        head = "ensemble" if "ensemble" in predictions else "branch0"
        written = draw_predictions(dataset, predictions[head][0], output_dir / "vis", limit=vis)
        print(f"{len(written)} images with {head} predictions written to {output_dir / 'vis'}")
    return tables if len(tables) > 1 else next(iter(tables.values()))
