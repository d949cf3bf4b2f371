"""Training curves: the loss terms and the validation score of every head over epochs, as one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from engine.training.log import read_log  # noqa: E402


def plot_curves(log_path: Path, out_path: Path) -> None:
    """Draw ``log.jsonl`` into a two-panel figure (loss terms; metric per head) saved as ``out_path``."""
    log_path, out_path = Path(log_path), Path(out_path)
    if not log_path.is_file():
        return
    records = read_log(log_path)
    if not records:
        return
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    terms = [k for k in records[0]["train"] if "/" not in k and k != "kl_weight"]
    for term in terms:
        ax_loss.plot([r["epoch"] for r in records], [r["train"].get(term) for r in records], label=term)
    ax_loss.set(xlabel="epoch", ylabel="loss (per sample)", title="training loss terms", yscale="log")
    ax_loss.legend(fontsize=8)
    validated = [r for r in records if "metric" in r]
    heads = list(validated[0]["metric"]) if validated else []
    for head in heads:
        ax_metric.plot(
            [r["epoch"] for r in validated], [r["metric"][head] for r in validated], label=head, marker="."
        )
    ax_metric.set(xlabel="epoch", ylabel="validation score", title="validation (PCKh Mean or AP) per head")
    if heads:
        ax_metric.legend(fontsize=8)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
