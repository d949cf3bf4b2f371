#!/usr/bin/env bash
# The first thing to run on a machine with a GPU: one report of what this project does there, within 8 minutes
# (device, driver, versions; the 4-stack OKDHP's train step under each speed switch with memory and MFU; a
# one-process torchrun NCCL run; the CPU demo's recipe on the GPU; the estimated wall time of each paper table).
#
#   bash benchmarks/gpu_check.sh                 on the GPU (CUDA if present, else the CPU)
#   bash benchmarks/gpu_check.sh --device cpu    small, on the CPU: what CI runs
#   bash benchmarks/gpu_check.sh --help          the options (budget, output folder, compile time limit)
#
# PYTHON selects the interpreter (default: python3). The report goes to output/gpu_check/report.md; its place
# in the docs is docs/benchmarks.md, "GPU check".
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
