"""Parameters and conv/linear MACs, per part, of the network a config's ``model:`` section describes.

Usage (from the repository root)::

    python tools/model_summary.py CONFIG.yaml [--input-size H W] [--branch I] [--json]

Parts: stem, shared stacks, each branch, FAU, total and the deployable branch for a multi-branch network;
stem, stacks and total for a single one. MACs count Conv2d / ConvTranspose2d / Linear multiply-accumulates per
image (BN, ReLU, pooling, upsampling excluded; see ``utils/flops.py``). The network is built on PyTorch's
meta device, so even the largest configs are counted in seconds without memory. With ``--json`` the last line
of stdout is one JSON object with ``params, macs, deploy_params, deploy_macs, parts, ...``. A distillation
config adds its teachers (epochs and forward cost); a config with a ``loss:`` section adds the loss with every
default filled in from the loss code (``loss``), e.g. ODKD's.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.cli import one_paragraph  # noqa: E402
from engine.experiment.config import read_yaml  # noqa: E402
from models.registry import build_model  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.flops import count_params, layer_macs, part_counts, without_batch_norm  # noqa: E402


def read_teachers(path: Path) -> dict[str, dict[str, Any]]:
    """The frozen teachers of a distillation config: {name: {model section, start, end, fraction of epochs}}.

    A teacher's network is its ``model:`` entry, else the model section of the experiment that trains it
    (``teachers.<name>.experiment``); its checkpoint need not exist to be counted. Its epochs are the resolved
    config's (a teacher without ``start``/``end`` gets the loss's schedule, e.g. ODKD's orderly one).
    """
    from engine.experiment.catalogue import resolve_config_path
    from engine.experiment.config import load_config, read_raw_config

    if not read_raw_config(path).get("teachers"):
        return {}
    teachers = {}
    for name, teacher in load_config(path).teachers.items():
        section = teacher.model
        if section is None and teacher.experiment:
            section, _ = read_config(resolve_config_path(teacher.experiment))
        if section is None:
            raise UserError(
                f"{path}: teacher '{name}' has neither a model section nor an experiment to count"
            )
        teachers[name] = {
            "model": section,
            "start": teacher.start,
            "end": teacher.end,
            "fraction": teacher.end - teacher.start,
        }
    return teachers


def read_loss(path: Path) -> dict[str, Any] | None:
    """The ``loss:`` section of a config with every default of its loss filled in (the loss code holds them:
    ``LOSSES.resolved``), or None for a yaml without one."""
    from engine.experiment.config import read_raw_config
    from losses.registry import LOSSES

    section = read_raw_config(path).get("loss")
    if section is None:
        return None
    LOSSES.check(section, "loss")  # an unknown key or loss: a ConfigError naming it
    return {"name": section["name"], **LOSSES.resolved(section)}


def read_config(path: Path) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """The ``model:`` section of a yaml config and its ``data.input_size`` as (height, width), if any.

    A yaml that starts from another one (``base: other.yaml``) is resolved by the project's config loader;
    any other yaml is read as it is, so a file with only a ``model:`` section works too.
    """
    if not path.is_file():
        raise UserError(f"config not found: {path}")
    config = read_yaml(path) or {}  # invalid yaml or a key given twice: a ConfigError naming the file
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    if "base" in config:
        from engine.experiment.config import load_config

        resolved = load_config(path)
        config = {"model": resolved.model, "data": resolved.data}
    if "model" not in config:
        raise UserError(f"{path}: no 'model:' section")
    input_size = (config.get("data") or {}).get("input_size")
    if input_size is None:
        return config["model"], None
    width, height = input_size
    return config["model"], (int(height), int(width))


def summarize(section: dict[str, Any], height: int, width: int, branch: int = 0) -> dict[str, Any]:
    """Per-part, total and deployable-branch parameter and MAC counts of a model section.

    Counted once per process for each (section, size, branch): a teacher shared by several experiments
    (ODKD's two HRNets) is not counted again."""
    key = json.dumps(section, sort_keys=True)
    return copy.deepcopy(_counted_summary(key, height, width, branch))


@functools.lru_cache(maxsize=64)
def _counted_summary(section_json: str, height: int, width: int, branch: int) -> dict[str, Any]:
    section = json.loads(section_json)
    images = torch.zeros(1, 3, height, width, device="meta")
    with torch.device(
        "meta"
    ):  # built shape-only; counted outside the context (its per-op hook is slow), without BatchNorm
        model = build_model(section)
        head = (
            model.deployable_heads()[branch] if branch < len(model.deployable_heads()) else f"branch{branch}"
        )
        deploy, deploy_section = model.deploy(head)
    parts = part_counts(model, model.parts(), images, macs_of=without_batch_norm(copy.deepcopy(model)))
    multi = len(model.deployable_heads()) > 1
    return {
        "model": section["name"],
        "input_size": [height, width],
        "params": count_params(model),
        "macs": sum(part["macs"] for part in parts.values()),
        "deploy_branch": branch if multi else None,
        "deploy_config": deploy_section,
        "deploy_params": count_params(deploy),
        "deploy_macs": sum(layer_macs(without_batch_norm(copy.deepcopy(deploy)), images).values()),
        "parts": parts,
    }


def add_teachers(summary: dict[str, Any], teachers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each frozen teacher's forward cost, and the MACs of one training image (student + teachers' forwards,
    each teacher weighted by the fraction of the epochs it runs)."""
    height, width = summary["input_size"]
    counted = {}
    for name, teacher in teachers.items():
        teacher_summary = summarize(teacher["model"], height, width)
        counted[name] = {
            "model": teacher["model"]["name"],
            "params": teacher_summary["params"],
            "macs": teacher_summary["macs"],
            "start": teacher["start"],
            "end": teacher["end"],
            "fraction": teacher["fraction"],
        }
    summary["teachers"] = counted
    summary["training_macs"] = summary["macs"] + sum(t["macs"] * t["fraction"] for t in counted.values())
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table: one row per part, then total and the deployable network."""
    total_macs = summary["macs"]
    height, width = summary["input_size"]
    lines = [
        f"{summary['model']} at {height}x{width} (MACs: Conv2d/ConvTranspose2d/Linear only, per image)",
        f"{'part':<18}{'params':>14}{'GMACs':>10}{'% MACs':>9}",
    ]

    def row(name: str, params: int, macs: int) -> str:
        return f"{name:<18}{params:>14,}{macs / 1e9:>10.3f}{100 * macs / total_macs:>8.1f}%"

    lines += [row(name, part["params"], part["macs"]) for name, part in summary["parts"].items()]
    lines.append(row("total", summary["params"], total_macs))
    if summary["deploy_branch"] is not None:
        name = f"deploy (branch{summary['deploy_branch']})"
        lines.append(row(name, summary["deploy_params"], summary["deploy_macs"]))
    for name, teacher in summary.get("teachers", {}).items():
        share = (
            "" if teacher["fraction"] == 1.0 else f", epochs [{teacher['start']:g}, {teacher['end']:g}) x E"
        )
        lines.append(
            f"teacher {name} ({teacher['model']}, frozen, forward only{share}): {teacher['params']:,} params, "
            f"{teacher['macs'] / 1e9:.3f} GMACs"
        )
    if summary.get("teachers"):
        lines.append(
            f"per training image (student + teachers' forwards): {summary['training_macs'] / 1e9:.3f} GMACs"
        )
    if summary.get("loss"):
        keys = ", ".join(f"{key}={value}" for key, value in summary["loss"].items() if key != "name")
        lines.append(f"loss {summary['loss']['name']} (defaults filled in): {keys or 'no keys'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="experiment yaml with a 'model:' section")
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="input height and width (default: data.input_size of the config, else 256 256)",
    )
    parser.add_argument("--branch", type=int, default=0, help="branch to deploy (default 0)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    try:
        section, config_size = read_config(args.config)
        height, width = args.input_size or config_size or (256, 256)
        summary = add_teachers(summarize(section, height, width, args.branch), read_teachers(args.config))
        summary["loss"] = read_loss(args.config)
    except (UserError, ValueError) as error:
        print(f"error: {one_paragraph(error)}", file=sys.stderr)
        return 2
    print(format_table(summary))
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
