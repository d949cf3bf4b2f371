#!/usr/bin/env bash
# Reproduce the paper's runs, or try the whole pipeline on a CPU in a few minutes.
#
#   bash start.sh                      the paper's main run: 4-stack OKDHP, three branches, MPII
#   bash start.sh demo                 make a synthetic MPII-format set, train, extract, evaluate (CPU, minutes)
#   bash start.sh odkd-demo            ODKD on a synthetic COCO-format set: two teachers, then students without
#                                      KD, with heatmap KD and with ODKD over 3 seeds, one table (CPU, minutes)
#   bash start.sh <experiment> [ARGS]  any yaml under experiments/, e.g. mpii/hg2_okdhp or coco/hg4_okdhp;
#                                      ARGS go to the trainer (e.g. --resume, --overwrite, --set train.batch_size=32)
#   bash start.sh list                 the demos and the experiments
#   bash start.sh table [NAME] [ARGS]  one paper table: train what is missing (teachers first), resume, evaluate,
#                                      write output/tables/NAME.md; --quick (CPU, minutes), --collect, --list
#
# An experiment with frozen teachers (e.g. mpii/hg4_fpd) first trains each teacher whose checkpoint does not
# exist yet (the experiment named in teachers.<name>.experiment), then the student. The check sees the ARGS'
# overrides: with --set teachers.teacher.checkpoint=PATH of an existing file no teacher is trained. A
# teacher's own training gets only the ARGS about the machine and the data: every --set runtime.*, --set
# data.use_gt_boxes (the test boxes) and --data-root (and DATA_ROOT); the other ARGS are the student's. To
# train a teacher with other settings, run bash start.sh <its experiment> ARGS first.
# The dataset folder comes from the first of: DATA_ROOT=/path bash start.sh ..., the yaml's data.root.
# PYTHON selects the interpreter (default: python3). Outputs go to output/<experiment>/.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

experiment=${1:-mpii/hg4_okdhp}
[ $# -gt 0 ] && shift

if [ "$experiment" = list ]; then
    printf '%s\n' demo odkd-demo
    find experiments -name '*.yaml' ! -name '_*' ! -path 'experiments/tables/*' | sed 's|experiments/||; s|\.yaml$||' | sort
    exit 0
fi

if ! "$PYTHON" -c "import torch, torchvision, cv2, yaml, h5py, scipy, tqdm, matplotlib, pycocotools" 2>/dev/null; then
    echo "error: the requirements are not installed for $PYTHON. Run:" >&2
    echo "  $PYTHON -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt -c constraints.txt" >&2
    echo "(CPU only? install the CPU build of torch first: see 'Two commands' in README.md)" >&2
    exit 2
fi

extra_args=()
case "$experiment" in
table)
    exec "$PYTHON" tools/table.py ${DATA_ROOT:+--data-root "$DATA_ROOT"} "$@"
    ;;
odkd-demo)
    exec "$PYTHON" tools/odkd_demo.py "$@"
    ;;
demo)
    demo_root=${DATA_ROOT:-data/demo_mpii}
    if [ ! -f "$demo_root/annot/valid.json" ]; then
        "$PYTHON" tools/make_synthetic.py "$demo_root"
    fi
    experiment=mpii/demo
    export DATA_ROOT=$demo_root
    extra_args=(--overwrite) # a demo always starts over: running it twice gives the same numbers twice
    ;;
esac

config=experiments/${experiment%.yaml}.yaml
if [ ! -f "$config" ] || [[ "${config##*/}" == _* ]]; then
    # one line: the closest experiment's name, or why a shared base (_defaults.yaml) is not one
    "$PYTHON" -m engine.cli trainer "$experiment" >/dev/null || exit 2
fi
trainer=$("$PYTHON" -m engine.cli trainer "$config")

teacher_args=() # what a teacher's training shares with the student's: the machine (--set runtime.*), the data (test boxes too)
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
    --set | --data-root)
        next=${args[i + 1]:-}
        if [ "${args[i]}" = --data-root ] || [[ "$next" == runtime.* || "$next" == data.use_gt_boxes=* ]]; then
            teacher_args+=("${args[i]}" "$next")
        fi
        i=$((i + 1))
        ;;
    --set=runtime.* | --set=data.use_gt_boxes=* | --data-root=*) teacher_args+=("${args[i]}") ;;
    esac
done
for teacher in $("$PYTHON" -m engine.cli missing-teachers "$config" "$@"); do
    echo "== teacher first: $teacher"
    bash "$0" "$teacher" "${teacher_args[@]}"
done

name=$(echo "${experiment%.yaml}" | tr '/' '_')
output=output/$name
data_args=()
[ -n "${DATA_ROOT:-}" ] && data_args=(--data-root "$DATA_ROOT")

echo "== training $config -> $output"
"$PYTHON" "$trainer" --config "$config" --output-dir "$output" "${data_args[@]}" "${extra_args[@]}" "$@"

echo "== evaluating the extracted deployable network $output/deploy.pth"
# --overwrite: the run just (re)wrote deploy.pth, so an evaluation of an earlier deploy.pth is out of date
"$PYTHON" evaluate.py --config "$config" --checkpoint "$output/deploy.pth" "${data_args[@]}" --overwrite
