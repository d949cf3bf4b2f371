"""benchmarks/gpu_check.py: the device's peak table, the cost model of the estimates, and the whole check on a CPU.

No assertion is about speed (the machine is shared): only that each section runs and says what it did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import experiment_cost, peak_tflops
from engine.tables.spec import table_names

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_peaks_by_device_name() -> None:
    assert peak_tflops("NVIDIA H200", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 80GB HBM3", "tf32") == 494.7
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert peak_tflops("NVIDIA L4", "bf16") == 121.0 and peak_tflops("NVIDIA L40S", "bf16") == 362.0
    assert peak_tflops("Tesla V100-SXM2-32GB", "bf16") is None  # no bf16 on a V100
    assert peak_tflops("NVIDIA H100 NVL", "bf16") is None  # not in the table: "unknown", never a guess
    assert peak_tflops("Some Future GPU", "fp32") is None


def test_the_estimate_counts_the_papers_networks() -> None:
    # docs/models.md: the 4-stack hourglass is 15.357 G MACs at 256x256; MPII has 22,246 training persons
    cost = experiment_cost("mpii/hg4_baseline")
    assert cost["train_flops"] == pytest.approx(6 * 15.357e9, rel=1e-3)
    assert cost["val_flops"] == pytest.approx(4 * 15.357e9, rel=1e-3)
    assert (cost["epochs"], cost["validations"], cost["train_persons"]) == (150, 150, 22_246)


@pytest.mark.slow
def test_the_whole_check_prints_its_report_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "report"
    environment = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--out", str(out), "--tables", "okdhp_mobile",
         "--warmup", "0", "--iters", "1", "--torchrun-iters", "2"],  # the sections, not their timings
        cwd=REPO_ROOT, capture_output=True, text=True, env=environment, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout
    for title in (
        "### Machine",
        "### Train step: mpii/hg4_okdhp, batch 2, 64x64",
        "### torchrun, one process, gloo",
    ):
        assert title in report
    assert "### Demo recipe on the device: mpii/demo" in report and "### Estimated wall time" in report
    assert "| fp32 eager (released setup) | " in report and "| channels_last + bf16 | " in report
    assert "skipped: fp16 autocast + GradScaler needs CUDA" in report
    assert "NCCL needs CUDA" in report and "| gloo | 1 | DistributedDataParallel | 2 |" in report
    assert "| okdhp_mobile | 6 |" in report and "failed" not in report
    data = json.loads((out / "report.json").read_text())
    assert data["machine"]["driver"] == "n/a (CPU)" and data["demo"]["epochs"] == 2
    assert set(data["estimates"]["tables"]) == {"okdhp_mobile"} and "okdhp_mobile" in table_names()
    assert (out / "report.md").read_text() in report
