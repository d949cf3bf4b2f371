"""Convert a stacked-hourglass checkpoint of bearpaw/pytorch-pose, FPD or the official OKDHP code, or a
published HRNet pose checkpoint (for a network with a mask head, e.g. ODKD's senior teacher).

Usage (from the repository root)::

    python tools/convert_checkpoint.py SRC OUT --from bearpaw|fpd|okdhp|hrnet --config EXPERIMENT [--set KEY=VALUE]

SRC is read with ``torch.load(weights_only=True)`` (``--unsafe-unpickle`` for a trusted file that stores other
Python objects); its tensors are renamed onto the model the config's ``model:`` section builds, every
parameter and buffer filled exactly once with the right shape, and OUT is written as a checkpoint of this
project (kind ``converted``): evaluate it with ``python evaluate.py --config EXPERIMENT --checkpoint OUT`` or
start training from it. A file of another architecture is refused with one paragraph naming what it is.
See docs/convert.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import add_config_arguments, one_paragraph, overrides_from  # noqa: E402
from engine.convert.checkpoints import SOURCE_FORMATS, convert_checkpoint  # noqa: E402
from engine.experiment.catalogue import resolve_config_path  # noqa: E402
from engine.experiment.config import load_config  # noqa: E402
from utils.checkpoint import save_checkpoint  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.output_paths import prepare_outputs  # noqa: E402

BEARPAW_COLOR = "rgb_bearpaw_mpii"  # bearpaw/pytorch-pose input normalisation (datasets/transforms.py)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: SRC, OUT, the source format and the experiment config."""
    summary = " ".join(__doc__.split("\n\n")[0].split())  # the first paragraph: its sentence spans two lines
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("source", type=Path, metavar="SRC", help="the other code base's checkpoint file")
    parser.add_argument("output", type=Path, metavar="OUT", help="where to write this project's checkpoint")
    parser.add_argument(
        "--from",
        dest="source_format",
        required=True,
        choices=SOURCE_FORMATS,
        help="code base that wrote SRC: bearpaw (pytorch-pose), fpd, okdhp (official code, single or "
        "multi-branch), or hrnet (deep-high-resolution-net.pytorch's pose_hrnet_*.pth; a mask head is left at init)",
    )
    add_config_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument(
        "--unsafe-unpickle",
        action="store_true",
        help="load SRC with full unpickling (only for a file you trust: it can execute code)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit 0 on success, 2 with one ``error:`` paragraph otherwise."""
    args = parse_args(argv)
    overrides = overrides_from(args)
    colour_note = ""
    if args.source_format == "bearpaw" and not any(item.startswith("data.color=") for item in overrides):
        overrides.append(f"data.color={BEARPAW_COLOR}")
        colour_note = (
            f"note: data.color={BEARPAW_COLOR} (RGB minus bearpaw's MPII mean, no std: the input its networks "
            "were trained on) is saved with the checkpoint; --set data.color=... chooses another"
        )
    try:
        prepare_outputs([args.output], "OUT", inputs=[args.source], overwrite=args.overwrite)
        config_path = resolve_config_path(args.config)
        config = load_config(config_path, overrides)
        state = convert_checkpoint(
            args.source, args.source_format, config, unsafe_unpickle=args.unsafe_unpickle
        )
        save_checkpoint(state, args.output)
    except UserError as error:
        print(f"error: {one_paragraph(error)}", file=sys.stderr)
        return 2
    origin = state["converted_from"]
    print(
        f"{args.source} ({origin['architecture']}, weights from {origin['entry']}) -> {args.output}: "
        f"{len(state['model'])} tensors onto model '{state['model_config']['name']}' of {config_path}"
    )
    if origin["left_at_init"]:
        print(
            f"note: {len(origin['left_at_init'])} model weights are not in the file and keep their initial values "
            f"({', '.join(origin['left_at_init'])}): train them, e.g. with train.init_from: {args.output}"
        )
    if origin["filled_batch_counters"]:
        print(
            "note: the file has no BatchNorm num_batches_tracked counters (PyTorch < 0.4.1); they were set to 0"
        )
    if colour_note:
        print(colour_note)
    sets = "".join(f" --set {item}" for item in overrides)
    print(f"evaluate: python evaluate.py --config {args.config}{sets} --checkpoint {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
