"""The one way from a checkpoint file to a network: every command that loads one comes here.

``load_network`` reads the file (``utils.checkpoint``: missing, empty, truncated, foreign), rebuilds the
network from its model section (the file's, or one the caller names), checks it against the skeleton and
the input size, fills it strictly and reads the pipeline it was trained with. ``deployable`` then picks one
head of a multi-branch network as a standalone network. Evaluation, the predictor, the demo, the ONNX export,
the inspection pictures, the frozen teachers and ``train.init_from`` all use these two functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets.registry import skeleton_of
from engine.experiment.checks import check_input_size, model_section_for
from engine.experiment.config import ExperimentConfig, config_with_overrides
from engine.inference.pipeline import Pipeline
from models.output import PoseModel
from models.registry import build_model
from utils.checkpoint import (
    DEFAULT_ADVICE,
    check_checkpoint,
    check_finite_weights,
    is_state_dict,
    load_checkpoint,
    load_model_weights,
    read_torch_file,
)
from utils.errors import CheckpointError, ConfigError, UserError

PLAIN_CONTAINER = "state_dict"  # {'state_dict': {...}}: how several code bases wrap a plain state_dict


@dataclass
class LoadedNetwork:
    """A network rebuilt from a file, weights loaded, with what the file says about how it was trained."""

    model: PoseModel
    section: dict[str, Any]  # the model section that rebuilds it
    source: Path
    config: ExperimentConfig | None  # the experiment config (the file's, or the caller's); None: a plain file
    pipeline: Pipeline | None  # the input pipeline it was trained with; None: a plain state_dict
    state: dict[str, Any]  # the file's contents

    def require_pipeline(self) -> Pipeline:
        """The pipeline, or one paragraph saying the file cannot tell it."""
        if self.pipeline is None:
            raise CheckpointError(
                f"{self.source} carries no experiment config (input size, colour, skeleton): use a checkpoint "
                "written by this project's training (deploy.pth, best.pth, last.pth) or "
                "tools/convert_checkpoint.py"
            )
        return self.pipeline


def load_network(
    checkpoint: str | Path,
    *,
    contents: Any = None,
    config: ExperimentConfig | None = None,
    overrides: Sequence[str] = (),
    section: Mapping[str, Any] | None = None,
    plain_ok: bool = False,
    label: str | None = None,
    advice: str = DEFAULT_ADVICE,
) -> LoadedNetwork:
    """Rebuild and fill the network of ``checkpoint``.

    ``contents``: what the file holds, when the caller has read it already (it is checked all the same). The
    experiment config is ``config`` if given, else the one saved in the file (with ``overrides``); the
    pipeline is always the file's own (what the network was trained with). The model section is ``section``
    if given, else the file's own (``model_config`` of a deploy or converted file), else the config's.
    ``plain_ok`` also accepts a plain state_dict (``{'state_dict': ...}`` too), such as a published HRNet file,
    which needs ``section``. ``label`` names the file in errors (e.g. ``teachers.pt``); ``advice`` ends a
    weights-mismatch error.
    """
    source = Path(checkpoint).expanduser()
    if contents is None:
        contents = read_torch_file(source) if plain_ok else load_checkpoint(source)
    name = f"{label} ({source})" if label else str(source)
    if plain_ok and not (isinstance(contents, dict) and "model" in contents):
        return _plain_network(contents, source, name, section, advice)
    state = check_checkpoint(contents, source)
    saved = None
    if "config" in state:
        saved = config_with_overrides(
            dict(state["config"]), overrides, source=f"config saved in {source}", schedule=False
        )
    config = config or saved
    chosen = section or state.get("model_config") or (config.model if config is not None else None)
    if chosen is None:
        raise CheckpointError(f"{name} carries neither a model section nor a config: pass --config")
    pipeline = None if saved is None else Pipeline.from_checkpoint(state, saved, str(source))
    try:
        if config is not None:
            chosen = model_section_for(chosen, skeleton_of(config.data).num_joints)
        if pipeline is not None:
            check_input_size(chosen, pipeline.codec)
    except ConfigError as error:
        if label:
            raise ConfigError(f"{label}: {error}") from None
        raise (config.origin.blame(error) if config.origin is not None else error) from None
    model = build_model(chosen)
    load_model_weights(model, state["model"], name, advice=advice)
    return LoadedNetwork(model.eval(), dict(chosen), source, config, pipeline, state)


def _plain_network(
    contents: Any, source: Path, name: str, section: Mapping[str, Any] | None, advice: str
) -> LoadedNetwork:
    """A plain state_dict file (or ``{'state_dict': ...}``) filled into the network ``section`` builds."""
    weights = contents.get(PLAIN_CONTAINER, contents) if isinstance(contents, Mapping) else contents
    if not is_state_dict(weights):
        raise CheckpointError(f"{name}: {source} does not hold a state_dict (a mapping of names to tensors)")
    if section is None:
        raise CheckpointError(
            f"{name}: {source} is a plain state_dict with no model description; say which network it holds "
            "(e.g. a model section {name: hrnet, width: 32})"
        )
    check_finite_weights(weights, name)
    model = build_model(section)
    load_model_weights(model, dict(weights), name, advice=advice)
    return LoadedNetwork(model.eval(), dict(section), source, None, None, {"model": weights})


def heads_paragraph(model: PoseModel, hint: str = "") -> str:
    """The deployable heads of a model, as the end of an error message."""
    return f"deployable heads: {', '.join(model.deployable_heads())}" + (f" ({hint})" if hint else "")


@dataclass
class DeployedNetwork:
    """One standalone network (a single network, or one branch of a multi-branch one) and its pipeline."""

    model: PoseModel
    section: dict[str, Any]  # the model section that rebuilds it
    head: str  # the head of the file's network it computes
    pipeline: Pipeline
    source: Path


def deployable(loaded: LoadedNetwork, head: str | None = None, *, hint: str = "") -> DeployedNetwork:
    """The standalone network of a loaded file: a single network as it is, or its branch ``head``.

    A multi-branch network without ``head`` (or with a head it lacks) is a UserError listing the heads it can
    deploy, followed by ``hint`` (the caller's other choices).
    """
    model = loaded.model
    heads = model.deployable_heads()
    if head is None:
        if len(heads) > 1:
            raise UserError(
                f"{loaded.source} holds a multi-branch network ({loaded.section['name']}), not a single "
                f"network: name the branch to use with --head; {heads_paragraph(model, hint)}"
            )
        head = heads[0]
    if head not in heads:
        raise UserError(
            f"--head {head}: {loaded.source} has no such deployable head; {heads_paragraph(model, hint)}"
        )
    network, section = model.deploy(head)
    return DeployedNetwork(network.eval(), section, head, loaded.require_pipeline(), loaded.source)
