#!/usr/bin/env bash
# Reproduce the paper's runs, or try the whole pipeline on a CPU in a few minutes.
#
#   bash start.sh                      the paper's main run: 4-stack OKDHP, three branches, MPII
#   bash start.sh demo                 make a synthetic MPII-format set, train, extract, evaluate (CPU, minutes)
#   bash start.sh <experiment> [ARGS]  any yaml under experiments/, e.g. mpii/hg2_okdhp or coco/hg4_okdhp;
#                                      ARGS go to the trainer (e.g. --resume, --set train.batch_size=32)
#   bash start.sh list                 the experiments
#
# The dataset folder comes from the first of: DATA_ROOT=/path bash start.sh ..., the yaml's data.root.
# PYTHON selects the interpreter (default: python3). Outputs go to output/<experiment>/.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c "import torch, torchvision, cv2, yaml, h5py, scipy, tqdm, matplotlib" 2>/dev/null; then
    echo "error: the requirements are not installed for $PYTHON. Run:" >&2
    echo "  $PYTHON -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt" >&2
    exit 2
fi

experiment=${1:-mpii/hg4_okdhp}
[ $# -gt 0 ] && shift

case "$experiment" in
list)
    find experiments -name '*.yaml' ! -name '_*' | sed 's|experiments/||; s|\.yaml$||' | sort
    exit 0
    ;;
demo)
    demo_root=${DATA_ROOT:-data/demo_mpii}
    if [ ! -f "$demo_root/annot/valid.json" ]; then
        "$PYTHON" tools/make_synthetic.py "$demo_root"
    fi
    experiment=mpii/demo
    export DATA_ROOT=$demo_root
    ;;
esac

config=experiments/${experiment%.yaml}.yaml
if [ ! -f "$config" ]; then
    echo "error: no experiment '$experiment' (looked for $config). Try: bash start.sh list" >&2
    exit 2
fi
family=${experiment%%/*}
case "$family" in
mpii) trainer=train_mpii.py ;;
coco) trainer=train_coco.py ;;
*)
    echo "error: '$experiment' is not under experiments/mpii or experiments/coco" >&2
    exit 2
    ;;
esac

name=$(echo "${experiment%.yaml}" | tr '/' '_')
output=output/$name
data_args=()
[ -n "${DATA_ROOT:-}" ] && data_args=(--data-root "$DATA_ROOT")

echo "== training $config -> $output"
"$PYTHON" "$trainer" --config "$config" --output-dir "$output" "${data_args[@]}" "$@"

echo "== evaluating the extracted deployable network $output/deploy.pth"
"$PYTHON" evaluate.py --config "$config" --checkpoint "$output/deploy.pth" "${data_args[@]}"
