"""Weights of other code bases' stacked hourglasses -> this project's models, and init weights for training.

Three code bases build SPEC A's hourglass under other module names:

- ``bearpaw`` (bearpaw/pytorch-pose ``pose/models/hourglass.py``) and ``fpd``
  (ilovepose/fast-human-pose-estimation.pytorch ``lib/models/hourglass.py``, also the official OKDHP code's
  ``lib/models/hourglass.py``): one network, ``conv1 bn1 layer1-3`` (stem), then per stack ``hg.i`` (the
  hourglass, ``hg.i.hg.L.j``), ``res.i``, ``fc.i`` (conv+BN), ``score.i`` and between stacks ``fc_.i``,
  ``score_.i``.
- ``okdhp`` (the official OKDHP code, ``lib/models/hourglass_okd_share_less.py`` and ``hourglass_okd.py``):
  the same stem, the FAU as ``convs.k``, ``fc``, ``fcs.t``, shared stacks ``ind_s_i.{0,1,2}``, ``score_s_i``,
  ``_fc_s_i``, ``_score_s_i``, and per branch ``ind_b_b_s_k``, ``score_b_b_s_k``, ``_fc_b_b_s_k``,
  ``_score_b_b_s_k``. Its single-network ``hourglass.py`` files use the bearpaw / FPD names.

Every key is translated by a name rule (never by position); the architecture is read from the keys and
shapes first, so a file of another size is refused with one paragraph that says what it is and which config
builds it. After translation every parameter and buffer of the model must be filled exactly once, with the
right shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engine.convert.fill import BATCH_COUNTER, fill_model
from engine.experiment.catalogue import experiment_paths
from engine.experiment.config import load_config
from utils.checkpoint import (
    CHECKPOINT_KINDS,
    check_finite_weights,
    file_sha256,
    is_state_dict,
    strip_prefixes,
)
from utils.errors import CheckpointError, UserError
from utils.paths import REPO_ROOT

SOURCE_FORMATS = ("bearpaw", "okdhp", "fpd", "hrnet")  # hrnet: engine/convert/hrnet.py
HOURGLASS_FORMATS = ("bearpaw", "okdhp", "fpd")
FORMAT_LABELS = {"bearpaw": "a bearpaw", "fpd": "an FPD", "okdhp": "an official OKDHP"}
CONTAINER_ENTRIES = ("state_dict", "best_state_dict")  # bearpaw / FPD / OKDHP checkpoint.pth dicts

# ----------------------------------------------------------------------------------------- name rules
BOTTLENECK_PARTS = ("bn1", "conv1", "bn2", "conv2", "bn3", "conv3")
STEM_LAYERS = {"layer1": 3, "layer2": 5, "layer3": 6}  # positions of the Bottlenecks inside ``Stem``
HOURGLASS_ROLES = ("skip", "down", "up")  # hg.L.0 / .1 / .2; hg.0.3 is the innermost residual
PARAM = r"(?P<param>\w+)"


def bottleneck_key(rest: str) -> str | None:
    """``bn1.weight`` stays; ``downsample.0.weight`` (the shortcut conv) becomes ``shortcut.weight``."""
    if rest.startswith("downsample.0."):
        return "shortcut." + rest[len("downsample.0.") :]
    part = rest.split(".", 1)[0]
    return rest if part in BOTTLENECK_PARTS and "." in rest else None


def residual_key(block: str, rest: str) -> str | None:
    """Block ``block`` of a residual (an ``nn.Sequential`` of Bottlenecks in both code bases)."""
    inner = bottleneck_key(rest)
    return None if inner is None else f"{block}.{inner}"


def hourglass_key(level: int, role: int, block: str, rest: str, depth: int) -> str | None:
    """Their ``hg.L.j`` (L = 0 innermost, j = skip/down/up/innermost) -> our nested ``inner.`` path."""
    if level >= depth or (role == 3 and level != 0) or role > 3:
        return None
    inner = residual_key(block, rest)
    if inner is None:
        return None
    nesting = "inner." * (depth - 1 - level)
    return f"{nesting}{'inner' if role == 3 else HOURGLASS_ROLES[role]}.{inner}"


def stem_key(key: str) -> str | None:
    """conv1 / bn1 / layer1-3 -> the positions of ``Stem`` (an ``nn.Sequential``)."""
    if match := re.fullmatch(rf"conv1\.{PARAM}", key):
        return f"stem.0.{match['param']}"
    if match := re.fullmatch(rf"bn1\.{PARAM}", key):
        return f"stem.1.{match['param']}"
    if match := re.fullmatch(r"(?P<layer>layer[123])\.0\.(?P<rest>.+)", key):
        inner = bottleneck_key(match["rest"])
        return None if inner is None else f"stem.{STEM_LAYERS[match['layer']]}.{inner}"
    return None


def stack_part_key(part: str, rest: str, depth: int) -> str | None:
    """One stack's hourglass / residual / fc(conv+BN) under their names -> ``Stack``'s names."""
    if part == "hourglass":
        match = re.fullmatch(r"hg\.(?P<level>\d+)\.(?P<role>\d+)\.(?P<block>\d+)\.(?P<rest>.+)", rest)
        if match is None:
            return None
        inner = hourglass_key(int(match["level"]), int(match["role"]), match["block"], match["rest"], depth)
        return None if inner is None else f"hourglass.{inner}"
    if part == "residual":
        match = re.fullmatch(r"(?P<block>\d+)\.(?P<rest>.+)", rest)
        inner = None if match is None else residual_key(match["block"], match["rest"])
        return None if inner is None else f"residual.{inner}"
    match = re.fullmatch(rf"(?P<index>[01])\.{PARAM}", rest)  # fc: 0 = conv, 1 = BN (ReLU has no weights)
    return None if match is None else f"feature.{match['index']}.{match['param']}"


def single_key(key: str, depth: int) -> str | None:
    """A bearpaw / FPD key -> ``HourglassNet``'s key (None: no rule knows it)."""
    if key.startswith(("conv1.", "bn1.", "layer")):
        return stem_key(key)
    match = re.fullmatch(r"(?P<module>hg|res|fc|score|fc_|score_)\.(?P<stack>\d+)\.(?P<rest>.+)", key)
    if match is None:
        return None
    module, stack, rest = match["module"], match["stack"], match["rest"]
    if module in ("score", "fc_", "score_"):
        if not re.fullmatch(PARAM, rest):
            return None
        if module == "score":
            return f"path.stacks.{stack}.heatmap.{rest}"
        return f"path.reinjects.{stack}.{'feature' if module == 'fc_' else 'heatmap'}.{rest}"
    part = {"hg": "hourglass", "res": "residual", "fc": "feature"}[module]
    inner = stack_part_key(part, rest, depth)
    return None if inner is None else f"path.stacks.{stack}.{inner}"


OKDHP_WHERE = r"(?:s_(?P<shared>\d+)|b_(?P<branch>\d+)_s_(?P<stack>\d+))"


def _okdhp_place(match: re.Match[str], kind: str) -> str:
    """``shared.stacks.i`` / ``branches.b.stacks.k`` (kind 'stacks' or 'reinjects') for ``s_i`` / ``b_b_s_k``."""
    if match["shared"] is not None:
        return f"shared.{kind}.{match['shared']}"
    return f"branches.{match['branch']}.{kind}.{match['stack']}"


def okdhp_key(key: str, depth: int) -> str | None:
    """An official multi-branch OKDHP key -> ``OKDHPHourglass``'s key (None: no rule knows it)."""
    if key.startswith(("conv1.", "bn1.", "layer")):
        return stem_key(key)
    if match := re.fullmatch(rf"convs\.(?P<path>\d+)\.(?P<index>[01])\.{PARAM}", key):
        return f"fau.paths.{match['path']}.{match['index']}.{match['param']}"
    if match := re.fullmatch(rf"fc\.{PARAM}", key):
        return f"fau.squeeze.{match['param']}"
    if match := re.fullmatch(rf"fcs\.(?P<head>\d+)\.{PARAM}", key):
        return f"fau.heads.{match['head']}.{match['param']}"
    if match := re.fullmatch(rf"ind_{OKDHP_WHERE}\.(?P<part>[012])\.(?P<rest>.+)", key):
        part = ("hourglass", "residual", "feature")[int(match["part"])]
        inner = stack_part_key(part, match["rest"], depth)
        return None if inner is None else f"{_okdhp_place(match, 'stacks')}.{inner}"
    if match := re.fullmatch(rf"(?P<module>score|_fc|_score)_{OKDHP_WHERE}\.{PARAM}", key):
        if match["module"] == "score":
            return f"{_okdhp_place(match, 'stacks')}.heatmap.{match['param']}"
        role = "feature" if match["module"] == "_fc" else "heatmap"
        return f"{_okdhp_place(match, 'reinjects')}.{role}.{match['param']}"
    return None


# --------------------------------------------------------------------------- architecture of a file
@dataclass(frozen=True)
class SourceArchitecture:
    """What a foreign state_dict builds, read from its key names and tensor shapes."""

    layout: str  # "single" (bearpaw / FPD names) or "multi_branch" (official OKDHP names)
    num_joints: int
    num_features: int
    num_blocks: int
    depth: int
    num_stacks: int = 0  # single
    shared_stacks: int = 0  # multi_branch
    branch_stacks: tuple[int, ...] = ()
    fau_paths: int = 0
    fau_width: int = 0

    def section(self) -> dict[str, Any]:
        """The ``model:`` section of this project that builds the same network."""
        widths = {
            "num_joints": self.num_joints,
            "num_features": self.num_features,
            "num_blocks": self.num_blocks,
            "depth": self.depth,
        }
        if self.layout == "single":
            return {"name": "hourglass", "num_stacks": self.num_stacks, **widths}
        return {
            "name": "okdhp_hourglass",
            **widths,
            "shared_stacks": self.shared_stacks,
            "branch_stacks": list(self.branch_stacks),
            "fau": "released",
            "fau_width": self.fau_width,
        }

    def describe(self, source_format: str) -> str:
        """E.g. 'a bearpaw hourglass with 8 stacks, 256 features, 16 joints'."""
        extras = []
        if self.num_blocks != 1:
            extras.append(f"{self.num_blocks} blocks per residual")
        if self.depth != 4:
            extras.append(f"depth {self.depth}")
        widths = ", ".join([f"{self.num_features} features", f"{self.num_joints} joints", *extras])
        label = FORMAT_LABELS[source_format]
        if self.layout == "single":
            return f"{label} hourglass with {plural(self.num_stacks, 'stack')}, {widths}"
        counts = sorted(set(self.branch_stacks))
        if len(counts) == 1:
            per_branch = f"{plural(counts[0], 'stack')} each"
        else:
            per_branch = f"{list(self.branch_stacks)} stacks"
        return (
            f"{label} multi-branch hourglass with {plural(self.shared_stacks, 'shared stack')} and "
            f"{plural(len(self.branch_stacks), 'branch')} of {per_branch}, {widths}, FAU width {self.fau_width}"
        )


def plural(count: int, word: str) -> str:
    """'1 stack', '2 stacks', '3 branches'."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}es" if word.endswith("ch") else f"{count} {word}s"


def _indices(keys: list[str], pattern: str, group: str = "index") -> dict[str, set[int]]:
    """For each key matching ``pattern``: the values of ``group``, grouped by the rest of the match."""
    found: dict[str, set[int]] = {}
    for key in keys:
        if match := re.fullmatch(pattern, key):
            owner = match.groupdict().get("owner") or ""
            found.setdefault(owner, set()).add(int(match[group]))
    return found


def _count(found: dict[str, set[int]], what: str, source_name: str) -> int:
    """The one count (0..n-1 present) shared by every owner, or a CheckpointError naming the gap."""
    counts = {owner: len(values) for owner, values in found.items() if values == set(range(len(values)))}
    if not found or len(counts) != len(found) or len(set(counts.values())) != 1:
        raise CheckpointError(
            f"{source_name} has an irregular number of {what} (found {sorted(map(sorted, found.values()))}): "
            "it is not a complete stacked hourglass state_dict"
        )
    return next(iter(counts.values()))


def infer_architecture(state: Mapping[str, Tensor], source_name: str = "the file") -> SourceArchitecture:
    """Read stacks, features, joints, blocks, depth and branches from the key names and shapes."""
    keys = list(state)
    if "score.0.weight" in state:
        layout, score = "single", state["score.0.weight"]
        hourglass, residual = r"hg\.0\.hg\.", r"res\.0\."
    else:
        score = next((state[k] for k in keys if re.fullmatch(rf"score_{OKDHP_WHERE}\.weight", k)), None)
        if score is None or "conv1.weight" not in state:
            sample = ", ".join(keys[:4]) or "no keys at all"
            raise CheckpointError(
                f"{source_name} does not look like a stacked hourglass of bearpaw/pytorch-pose, FPD or the "
                f"official OKDHP code (its first keys: {sample})"
            )
        layout = "multi_branch"
        first = next((k.split(".")[0] for k in keys if re.match(rf"ind_{OKDHP_WHERE}\.0\.hg\.", k)), "?")
        hourglass, residual = rf"{re.escape(first)}\.0\.hg\.", rf"{re.escape(first)}\.1\."
    if score.dim() != 4:
        raise CheckpointError(
            f"{source_name}: the heatmap conv has shape {tuple(score.shape)}, not a 1x1 conv"
        )
    num_joints, num_features = int(score.shape[0]), int(score.shape[1])
    depth = _count(_indices(keys, rf"{hourglass}(?P<index>\d+)\..*"), "hourglass levels", source_name)
    blocks = _count(_indices(keys, rf"{residual}(?P<index>\d+)\..*"), "residual blocks", source_name)
    widths = {"num_joints": num_joints, "num_features": num_features, "num_blocks": blocks, "depth": depth}
    if layout == "single":
        stacks = _count(_indices(keys, r"score\.(?P<index>\d+)\.weight"), "stacks", source_name)
        return SourceArchitecture("single", num_stacks=stacks, **widths)
    shared = _indices(keys, r"score_s_(?P<index>\d+)\.weight")
    shared_stacks = _count(shared, "shared stacks", source_name) if shared else 0
    per_branch = _indices(keys, r"score_b_(?P<owner>\d+)_s_(?P<index>\d+)\.weight")
    branches = sorted(int(b) for b in per_branch)
    if branches != list(range(len(branches))):
        raise CheckpointError(f"{source_name} has branches {branches}: not numbered 0..T-1")
    branch_stacks = []
    for branch in branches:
        values = per_branch[str(branch)]
        if values != set(range(len(values))):
            raise CheckpointError(f"{source_name}: branch {branch} has stacks {sorted(values)}, not 0..n-1")
        branch_stacks.append(len(values))
    fau_paths = len(_indices(keys, r"convs\.(?P<index>\d+)\.0\.weight").get("", set()))
    fau_width = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 0
    return SourceArchitecture(
        "multi_branch",
        shared_stacks=shared_stacks,
        branch_stacks=tuple(branch_stacks),
        fau_paths=fau_paths,
        fau_width=fau_width,
        **widths,
    )


# ----------------------------------------------------------------------------- fit to a config
ARCHITECTURE_KEYS = {
    "hourglass": ("num_stacks", "num_features", "num_joints", "num_blocks", "depth"),
    "okdhp_hourglass": (
        "shared_stacks",
        "branch_stacks",
        "num_features",
        "num_joints",
        "num_blocks",
        "depth",
        "fau",
        "fau_width",
    ),
}


KEY_PHRASES = {
    "num_stacks": "{} stacks",
    "num_features": "{} features",
    "num_joints": "{} joints",
    "num_blocks": "{} blocks per residual",
    "depth": "depth {}",
    "shared_stacks": "{} shared stacks",
    "branch_stacks": "branches of {} stacks",
    "fau": "the '{}' FAU",
    "fau_width": "FAU width {}",
}


def full_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """A model section with every builder default filled in (sequences as lists), without building it."""
    from models.registry import MODELS

    MODELS.check(section, "model")
    defaults = {key: p.default for key, p in MODELS.parameters(section["name"]).items()}
    merged = {"name": section["name"], **defaults, **{k: v for k, v in section.items() if k != "name"}}
    return {k: list(v) if isinstance(v, tuple | list) else v for k, v in merged.items()}


def matching_experiments(section: Mapping[str, Any], family: str | None = None) -> list[str]:
    """The experiment yamls whose model builds the same weights as ``section`` (``family`` first)."""
    keys = ARCHITECTURE_KEYS[section["name"]]
    found = []
    for path in experiment_paths():
        try:
            candidate = load_config(path).model
        except UserError:
            continue
        if candidate.get("name") != section["name"]:
            continue
        candidate = full_section(candidate)
        if all(candidate[k] == section[k] for k in keys):
            found.append(str(path.relative_to(REPO_ROOT)))
    return sorted(found, key=lambda name: family is None or not name.startswith(f"experiments/{family}/"))


def fit_hint(wanted: Mapping[str, Any], built: Mapping[str, Any], family: str | None = None) -> str:
    """How to get a config that builds ``wanted``: matching experiments, else --set overrides."""
    experiments = matching_experiments(wanted, family)
    if experiments:
        return f"use {' or '.join(experiments[:3])}"
    if wanted["name"] == built["name"]:
        keys = ARCHITECTURE_KEYS[wanted["name"]]
        changes = [f"--set model.{k}={_yaml_value(wanted[k])}" for k in keys if wanted[k] != built[k]]
        return "no experiment builds it; add " + " ".join(changes)
    inline = ", ".join(f"{k}: {_yaml_value(v)}" for k, v in wanted.items())
    return f"no experiment builds it; use a config whose model section is {{{inline}}}"


def _yaml_value(value: Any) -> str:
    return "[" + ",".join(str(v) for v in value) + "]" if isinstance(value, list | tuple) else str(value)


def check_fits(
    arch: SourceArchitecture,
    source_format: str,
    model: nn.Module,
    source_name: str,
    family: str | None = None,
) -> None:
    """Refuse, in one paragraph, a file whose architecture is not the one the config builds."""
    looks = f"{source_name} looks like {arch.describe(source_format)}"
    if arch.layout == "multi_branch" and source_format != "okdhp":
        raise CheckpointError(
            f"{source_name} looks like {arch.describe('okdhp')}, not {FORMAT_LABELS[source_format]} "
            "network: convert it with --from okdhp"
        )
    if arch.layout == "multi_branch" and arch.fau_paths != 3:
        raise CheckpointError(
            f"{looks} but {arch.fau_paths} FAU conv paths; the released FAU has 3 (kernels 3, 5, 7)"
        )
    built = model.config_section() if hasattr(model, "config_section") else {"name": type(model).__name__}
    wanted = arch.section()
    if built["name"] not in ARCHITECTURE_KEYS:
        raise CheckpointError(
            f"{looks}; the config builds model '{built['name']}', which has no counterpart there: "
            f"{fit_hint(wanted, {'name': ''}, family)}"
        )
    keys = ARCHITECTURE_KEYS[wanted["name"]]
    if built["name"] == wanted["name"] and all(built[k] == wanted[k] for k in keys):
        return
    if built["name"] != wanted["name"]:
        what = (
            "a multi-branch okdhp_hourglass" if built["name"] == "okdhp_hourglass" else "a single hourglass"
        )
        if wanted["name"] == "okdhp_hourglass":
            tail = " (to keep one branch: convert the whole file, then deploy that branch)"
        else:
            tail = ""
        raise CheckpointError(f"{looks}; the config builds {what}: {fit_hint(wanted, built, family)}{tail}")
    differences = ", ".join(
        KEY_PHRASES[k].format(_yaml_value(built[k])) for k in keys if built[k] != wanted[k]
    )
    raise CheckpointError(f"{looks}; the config builds {differences}: {fit_hint(wanted, built, family)}")


# --------------------------------------------------------------------------------- the conversion
def convert_state_dict(
    source_state: Mapping[str, Tensor],
    source_format: str,
    model: nn.Module,
    *,
    source_name: str = "the file",
    family: str | None = None,
) -> dict[str, Tensor]:
    """Translate a foreign state_dict into ``model``'s keys; every parameter and buffer filled exactly once.

    ``model`` is checked and filled (strict ``load_state_dict``); the returned state_dict is in its key order.
    A file of PyTorch < 0.4.1 has no BN ``num_batches_tracked`` counters: when ALL of them are absent they
    are set to 0 (they only matter for BN with momentum=None, which no model here uses).
    """
    if source_format not in HOURGLASS_FORMATS:
        raise CheckpointError(
            f"unknown hourglass source format '{source_format}'; choose one of {', '.join(HOURGLASS_FORMATS)}"
        )
    state = strip_prefixes(source_state, source_name)
    arch = infer_architecture(state, source_name)
    check_fits(arch, source_format, model, source_name, family)
    rule: Callable[[str, int], str | None] = single_key if arch.layout == "single" else okdhp_key

    own = model.state_dict()
    translated: dict[str, Tensor] = {}
    source_of: dict[str, str] = {}
    unknown, twice = [], []
    for key, tensor in state.items():
        target = rule(key, arch.depth)
        if target is None or target not in own:
            unknown.append(key)
        elif target in translated:
            twice.append(f"{source_of[target]} and {key} -> {target}")
        else:
            translated[target], source_of[target] = tensor, key
    also_wrong = []
    if unknown:
        also_wrong.append(f"{len(unknown)} keys no rule maps onto the model (e.g. {', '.join(unknown[:3])})")
    if twice:
        also_wrong.append(f"{len(twice)} weights filled twice (e.g. {twice[0]})")
    return fill_model(
        model,
        translated,
        problem=f"{source_name} looks like {arch.describe(source_format)}, but its tensors do not map one to "
        "one onto the model",
        also_wrong=also_wrong,
    )


# ------------------------------------------------------------------------------------- reading SRC
def read_foreign_file(path: Path, unsafe_unpickle: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True``; full unpickling only when the user asks for it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"source checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe_unpickle)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, KeyError, EOFError, ...
        text = str(error)
        if found := re.search(r"Unsupported global: GLOBAL (\S+)", text):
            raise CheckpointError(
                f"{path} cannot be read safely: besides tensors it stores a Python object ({found[1]}). If "
                "you trust the file, run again with --unsafe-unpickle (full unpickling can execute code "
                "stored in the file)"
            ) from None
        if "Weights only load failed" in text:
            operand = re.search(r"Unsupported operand \d+", text)
            reason = operand[0] if operand else "not a pickle of tensors"
        else:
            first_line = text.strip().splitlines()[0] if text.strip() else ""
            reason = f"{type(error).__name__} {first_line}".strip()
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint ({reason}): expected a file written by torch.save, "
            "e.g. bearpaw's model_best.pth.tar or FPD / OKDHP's final_state.pth"
        ) from None


def extract_state_dict(loaded: Any, source_name: str) -> tuple[dict[str, Tensor], str]:
    """The state_dict inside a loaded file and where it was: the file itself or its 'state_dict' entry."""
    if is_state_dict(loaded):
        return dict(loaded), "the whole file"
    if isinstance(loaded, Mapping):
        if loaded.get("kind") in CHECKPOINT_KINDS and "model" in loaded:
            raise CheckpointError(
                f"{source_name} is already a checkpoint of this project (kind '{loaded['kind']}'): "
                "evaluate or fine-tune it directly, no conversion needed"
            )
        for entry in CONTAINER_ENTRIES:
            if is_state_dict(loaded.get(entry)):
                return dict(loaded[entry]), f"'{entry}'"
        keys = ", ".join(map(str, list(loaded)[:6]))
        raise CheckpointError(
            f"{source_name} holds no state_dict: its entries are {keys or 'none'}; expected tensors or a "
            f"'state_dict' entry of tensors"
        )
    raise CheckpointError(
        f"{source_name} holds a {type(loaded).__name__}, not a state_dict (a mapping of names to tensors)"
    )


def convert_checkpoint(
    source: Path,
    source_format: str,
    config: Any,
    *,
    unsafe_unpickle: bool = False,
) -> dict[str, Any]:
    """Read a foreign file and return the project checkpoint (kind 'converted') of ``config``'s model."""
    from models.registry import build_model

    source = Path(source)
    loaded = read_foreign_file(source, unsafe_unpickle)
    state, entry = extract_state_dict(loaded, str(source))
    check_finite_weights(state, str(source))
    model = build_model(config.model)
    if source_format == "hrnet":
        from engine.convert.hrnet import convert_hrnet_state_dict, hrnet_architecture

        converted, left_at_init = convert_hrnet_state_dict(state, model, source_name=str(source))
        found = hrnet_architecture(strip_prefixes(state))
        architecture = f"a published HRNet-W{found['width']} for {found['num_joints']} joints"
    else:
        converted = convert_state_dict(
            state, source_format, model, source_name=str(source), family=config.data.get("name")
        )
        architecture = infer_architecture(strip_prefixes(state)).describe(source_format)
        left_at_init = []
    return {
        "kind": "converted",
        "model": converted,
        "model_config": model.config_section(),
        "config": config.to_dict(),
        "converted_from": {
            "format": source_format,
            "path": str(source.resolve()),
            "sha256": file_sha256(source),
            "entry": entry,
            "architecture": architecture,
            "filled_batch_counters": not any(k.endswith(BATCH_COUNTER) for k in state),
            "left_at_init": left_at_init,  # model weights the file lacks (hrnet: a mask head), kept at init
        },
    }
